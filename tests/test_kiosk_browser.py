"""The kiosk's page in headless chromium (selenium): sign-in, the clinician's label, and the issue's page fixes
(a PDF or text file is "not a photo", one MB unit, the overlay's PNG time listed, the heatmap legend).
Skips with the reason without chromium, chromedriver or selenium, like tests/test_serve_browser.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from headless import WAIT_S, start_chromium  # skips this module, saying why, without chromium or selenium
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from skinedge import Classifier
from skinedge.kiosk.auth import Authenticator
from skinedge.kiosk.caselog import CaseLog
from skinedge.kiosk.web import Kiosk
from skinedge.serve import ServeOptions, make_server, running

TOKEN = "browser-test-token-0123456789"


@pytest.fixture(scope="module")
def kiosk_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("kiosk-page")
    with Classifier(num_threads=2) as clf:
        log = CaseLog(d / "cases.sqlite", labels=clf.labels)
        kiosk = Kiosk(auth=Authenticator(TOKEN), case_log=log)
        with running(make_server(clf, "127.0.0.1", 0, ServeOptions(), kiosk=kiosk)) as srv:
            yield srv
        log.close()


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium()
    yield driver
    driver.quit()


def _shot(browser, name: str) -> None:
    """``SKINEDGE_SCREENSHOT_DIR=docs`` refreshes the screenshots docs/kiosk.md shows."""
    folder = os.environ.get("SKINEDGE_SCREENSHOT_DIR")
    if folder:
        browser.save_screenshot(str(Path(folder) / name))


def _visible(browser, element_id: str) -> bool:
    return browser.find_element(By.ID, element_id).is_displayed()


def _upload(browser, path: Path) -> None:
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, WAIT_S).until(lambda d: _visible(d, "result") or _visible(d, "error"))


def test_sign_in_classify_and_label(browser, kiosk_server, skin6_dir: Path, tmp_path: Path) -> None:
    browser.get(kiosk_server.url)
    WebDriverWait(browser, WAIT_S).until(lambda d: _visible(d, "signin-panel"))
    assert not _visible(browser, "app")  # nothing but the sign-in before the token
    _shot(browser, "kiosk_signin.png")
    browser.find_element(By.ID, "token").send_keys("not-the-token-at-all")
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: _visible(d, "signin-error"))
    assert "Not signed in" in browser.find_element(By.ID, "signin-error").text
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "model-line").text.strip())
    assert _visible(browser, "app") and _visible(browser, "session-line")
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies["skinedge_session"]["httpOnly"] and cookies["skinedge_session"]["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # the page's script cannot read it

    # The page fixes: one MB unit, "not a photo" for a PDF or a text file.
    assert browser.find_element(By.ID, "max-size").text == "20 MB"
    assert "its result (not the photo) is kept" in browser.find_element(By.ID, "storage-note").text
    for name, data in (("notes.txt", b"hello"), ("scan.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")):
        (tmp_path / name).write_bytes(data)
        _upload(browser, tmp_path / name)
        assert browser.find_element(By.ID, "error").text.startswith("This file is not a photo"), name
    assert kiosk_server.kiosk.case_log.list_cases().total == 0  # nothing was sent

    photo = sorted((skin6_dir / "test" / "Psoriasis").glob("*.jpg"))[0]
    _upload(browser, photo)
    assert _visible(browser, "result") and _visible(browser, "case")
    timings = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#timings dt")]
    assert "heatmap overlay (PNG)" in timings and "case log" in timings and "other server work" in timings
    values = {dt.text: float(dd.text.split()[0]) for dt, dd in zip(
        browser.find_elements(By.CSS_SELECTOR, "#timings dt"), browser.find_elements(By.CSS_SELECTOR, "#timings dd"))}
    steps = sum(v for k, v in values.items() if k not in ("on the server, in all", "round trip"))
    assert steps == pytest.approx(values["on the server, in all"], abs=0.3)  # the listed steps add up
    WebDriverWait(browser, WAIT_S).until(lambda d: _visible(d, "overlay"))
    assert _visible(browser, "legend") and "more weight" in browser.find_element(By.ID, "legend").text

    case_id = kiosk_server.kiosk.case_log.list_cases().cases[0].case_id
    assert browser.find_element(By.ID, "case-id").text == f"#{case_id}"
    Select(browser.find_element(By.ID, "case-label")).select_by_value("Psoriasis")
    browser.find_element(By.ID, "case-save").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: "Saved" in d.find_element(By.ID, "case-status").text)
    _shot(browser, "kiosk_page.png")
    assert kiosk_server.kiosk.case_log.get(case_id).clinician_label == "Psoriasis"

    browser.find_element(By.ID, "signout").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: _visible(d, "signin-panel"))
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "401" not in e["message"]]
    assert not errors, errors
