"""A real browser (headless Chromium via Playwright) against the dashboard and the HTML report.

Uses the system Chromium (Debian's ``chromium`` package); under CI a missing browser is a
failure, never a skip. Every request to anything but the local server is blocked and recorded:
the app and the report must work offline. The screenshot is kept under ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from result_fixtures import suite_memory_accuracy_frontier, write_our_results

from peftbench.analysis.pareto import TIE_TOLERANCE

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} missing (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def offline_page(browser) -> Iterator:
    """A page whose requests outside localhost/file are aborted and recorded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.external = []

    def guard(route) -> None:
        url = urlparse(route.request.url)
        if url.scheme in ("file", "data", "blob") or url.hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            page.external.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    yield page
    page.close()


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory, peft_reference: Path) -> Iterator[str]:
    from peftbench.analysis.app import serve

    ours = write_our_results(tmp_path_factory.mktemp("ours"))
    demo, url = serve([peft_reference / "MetaMathQA" / "results", ours], port=0, block=False)
    yield url
    demo.close()


def _pick(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=value, exact=True).click()


def _axis_titles(page) -> tuple[str, str]:
    plot = page.locator("#pareto-plot")
    return plot.locator(".xtitle").text_content(), plot.locator(".ytitle").text_content()


def _headers(page) -> list[str]:
    cells = page.locator("#summary-table thead th").all_text_contents()
    return [re.sub(r"[\s⋮]+", " ", c).strip() for c in cells]


def _frontier_text(page) -> set[str]:
    text = page.locator("#status").inner_text()
    line = next(x for x in text.splitlines() if x.startswith("Frontier"))
    return {name.strip() for name in line.split(": ", 1)[1].split(", ")}


def test_app_updates_plot_and_table_when_the_metric_pair_changes(
        served_app: str, offline_page, peft_reference: Path) -> None:
    page = offline_page
    assert served_app.startswith("http://127.0.0.1:")
    page.goto(served_app)
    page.wait_for_selector("#pareto-plot .js-plotly-plot .ytitle", timeout=TIMEOUT_MS)
    assert _axis_titles(page) == ("peak memory ↓", "test score ↑")
    expected = suite_memory_accuracy_frontier(peft_reference / "MetaMathQA" / "results",
                                              memory_tie=TIE_TOLERANCE["peak_memory"])
    page.wait_for_selector("#status:has-text('Frontier')", timeout=TIMEOUT_MS)
    assert _frontier_text(page) == expected
    assert _headers(page)[4:6] == ["peak memory", "test score"]

    _pick(page, "y-metric", "train_time")
    page.wait_for_function(
        "() => document.querySelector('#pareto-plot .ytitle')?.textContent === 'train time ↓'",
        timeout=TIMEOUT_MS)
    _pick(page, "x-metric", "file_size")
    page.wait_for_function(
        "() => document.querySelector('#pareto-plot .xtitle')?.textContent"
        " === 'checkpoint size ↓'", timeout=TIMEOUT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#summary-table thead th')]"
        ".some(th => th.textContent.includes('checkpoint size'))", timeout=TIMEOUT_MS)
    assert _axis_titles(page) == ("checkpoint size ↓", "train time ↓")
    assert _headers(page)[4:6] == ["checkpoint size", "train time"]
    assert _frontier_text(page) != expected
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-metric-pair.png"), full_page=True)
    assert (ARTIFACTS / "app-metric-pair.png").stat().st_size > 20_000
    assert page.external == []


def test_app_free_text_filter_shows_an_error_not_a_crash(served_app: str, offline_page) -> None:
    page = offline_page
    page.goto(served_app)
    page.wait_for_selector("#pareto-plot .js-plotly-plot", timeout=TIMEOUT_MS)
    box = page.locator("#filter textarea, #filter input").first
    box.fill("__import__('os').system('id')")
    box.press("Enter")
    page.wait_for_selector("#status:has-text('cannot parse filter clause')", timeout=TIMEOUT_MS)
    box.fill("peak_memory < 21GB")
    box.press("Enter")
    page.wait_for_selector("#status:has-text('Filtered out')", timeout=TIMEOUT_MS)
    assert page.external == []


def test_report_renders_offline(tmp_path: Path, offline_page, peft_reference: Path) -> None:
    from peftbench.analysis.report import write_report

    write_report([peft_reference / "MetaMathQA" / "results"], tmp_path)
    page = offline_page
    page.goto((tmp_path / "report.html").as_uri())
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length === 3",
                           timeout=TIMEOUT_MS)
    assert page.locator(".js-plotly-plot .ytitle").first.text_content() == "test score ↑"
    assert page.external == []
