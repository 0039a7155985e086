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
from nvila_bench.core.measuring.results import ResultWriter

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        pytest.fail("CI=true but chromium / chromedriver are missing (.ci/run installs them)", pytrace=False)
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")


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
