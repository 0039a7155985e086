"""The report and the dashboard in a real browser: Debian's headless Chromium, driven by selenium.

They must open with no console errors, show their key sections, and give a screenshot. .ci/run installs
chromium and chromium-driver; elsewhere the test skips when they are missing, except under CI=true, where
a missing browser is a failure rather than a silent pass.
"""

import os
import shutil

import pytest
from fake_records import decode_record, prefill_record

from nvila_bench.cli import main
from nvila_bench.core.measuring.result_files import ResultWriter

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        pytest.fail("CI=true but chromium / chromedriver are missing (.ci/run installs them)", pytrace=False)
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
pytestmark = pytest.mark.usefixtures("declared_suites")  # `nvila-bench report / dashboard` read them


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def full_page_screenshot(driver, path) -> None:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, min(max(height, 800), 16000))
    assert driver.save_screenshot(str(path))


def test_console_errors_are_caught(browser, tmp_path):
    """The check below can fail: a page that logs an error is seen."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('boom'); undefinedFunction();</script></body></html>")
    browser.get(page.as_uri())
    errors = console_errors(browser)
    assert any("boom" in e for e in errors) and any("undefinedFunction" in e for e in errors)


def test_report_and_dashboard_open_cleanly(browser, tmp_path):
    history = tmp_path / "history"
    for day, ttft in (("2026-11-01", 0.1), ("2026-11-02", 0.13)):
        writer = ResultWriter(history / day)
        writer.write(prefill_record("nvila-tiny", ttft, run_id=day))
        writer.write(prefill_record("vila-tiny", 0.05, run_id=day))
        writer.write(decode_record("nvila-tiny", run_id=day))
    report, site = tmp_path / "report.html", tmp_path / "site"
    assert main(["report", str(history / "2026-11-02"), "--out", str(report)]) == 0
    assert main(["dashboard", str(history), "--out", str(site)]) == 0
    shots = tmp_path / "screenshots"
    shots.mkdir()

    browser.get(report.as_uri())
    assert console_errors(browser) == []
    for section in (
        "headline",
        "claims",
        "stages",
        "stc",
        "roofline",
        "distributions",
        "training",
        "accuracy",
        "environment",
    ):
        assert browser.find_element("id", section).is_displayed()
    assert browser.find_elements("css selector", "#stages svg") and browser.find_elements(
        "css selector", "#claims td.verdict"
    )
    full_page_screenshot(browser, shots / "report.png")

    browser.get((site / "index.html").as_uri())
    assert console_errors(browser) == []
    assert browser.find_element("id", "flags").is_displayed() and browser.find_elements("css selector", "#trends svg")
    link = browser.find_element("css selector", "#runs a")
    link.click()  # a run's report opens from the index
    assert browser.find_element("id", "headline").is_displayed() and console_errors(browser) == []
    full_page_screenshot(browser, shots / "dashboard-run.png")
    for png in shots.iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    keep = os.environ.get("NVILA_BENCH_SCREENSHOTS")  # CI uploads these
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)


WIDTHS = """
const page = document.documentElement;
const out = {page: page.scrollWidth, window: window.innerWidth, tables: []};
for (const table of document.querySelectorAll("section table")) {
  const section = table.closest("section");
  const style = getComputedStyle(section);
  out.tables.push({
    section: section.id,
    table: Math.ceil(table.getBoundingClientRect().width),
    content: table.scrollWidth,
    room: section.clientWidth,
    right: Math.ceil(section.getBoundingClientRect().right),
    scrolls: ["auto", "scroll"].includes(getComputedStyle(table).overflowX),
    section_scrolls: ["auto", "scroll"].includes(style.overflowX),
  });
}
return out;
"""


def test_wide_tables_fit_or_scroll_inside_their_section_at_1400_px(browser, tmp_path):
    """At a 1400-px window nothing widens the page: each table fits its section or scrolls inside it (the
    deployment ladder's and the peers' tables are the widest), and the sources line names files, not paths."""
    from fake_records import RTX4090_ENV, rung_record

    results = tmp_path / ("a-long-folder-name-" * 8) / "results"
    ladder = [
        rung_record("nvila-8b-scaled-only", 0.3, 40.0, "scaled-only bf16", formats={}),
        rung_record("nvila-8b", 0.2, 50.0, "bf16", formats={}),
        rung_record("nvila-8b", 0.15, 120.0, "w4a16-llm"),
        rung_record("qwen2-vl-7b", 0.25, 45.0, "bf16", formats={}),
    ]
    records = [
        prefill_record("nvila-tiny", 0.2, env=RTX4090_ENV),
        prefill_record("qwen2-vl-tiny", 0.3, env=RTX4090_ENV),
    ]
    writer = ResultWriter(results)
    for r in ladder + records + [decode_record("nvila-tiny", env=RTX4090_ENV)]:
        writer.write(r)
    report = tmp_path / "report.html"
    assert main(["report", str(results), "--out", str(report)]) == 0
    browser.set_window_size(1400, 1000)
    browser.get(report.as_uri())
    widths = browser.execute_script(WIDTHS)
    assert widths["page"] <= widths["window"], widths["page"]  # no sideways scroll of the whole page
    tables = widths["tables"]
    assert all(t["right"] <= widths["window"] for t in tables)
    assert all(t["table"] <= t["room"] or t["section_scrolls"] for t in tables)  # each fits in its section ...
    wide = [t for t in tables if t["content"] > t["table"]]
    assert {t["section"] for t in wide} >= {"deployment"} and all(t["scrolls"] for t in wide)  # ... or scrolls itself
    sources = browser.find_element("css selector", "p.muted code").text
    assert sources == f"{results.parent.name}/results" and str(tmp_path) not in browser.page_source
