"""peftbench: a fair tournament of parameter-efficient fine-tuning techniques.

Every technique runs on the same base model, data, training code, hardware and tuning budget,
and is measured on many axes (test score, memory, time, checkpoint size, forgetting, ...).
"""

import logging

__version__ = "0.1.0"

# bitsandbytes (imported by PEFT whenever it is installed) warns on every import that an optional
# CPU kernel package is absent; it changes nothing peftbench measures, and it would be the only
# line on stderr of a user's mistake, which must be one clear line.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
