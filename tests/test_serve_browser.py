"""The ``skinedge serve`` page in a real browser: headless Debian chromium driven by selenium.

The page loads, a real skin6 photo is uploaded through its file input, and what the page shows is
checked against an in-process ``Classifier.classify`` of the same photo: the label, a bar per class
whose length is its score, the "no confident answer" wording, the heatmap overlay and its toggle,
the not-a-diagnosis notice. Screenshots go to pytest's tmp folder, or to ``SKINEDGE_SCREENSHOT_DIR``
(``docs/`` to refresh the ones the docs show).

Skips with the reason when chromium, chromedriver or selenium is missing
(``apt-get install chromium chromium-driver``; ``pip install -e ".[test]"``).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import pytest
from headless import WAIT_S, start_chromium  # skips this module, saying why, without chromium or selenium
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from skinedge import DISCLAIMER, Classifier
from skinedge.serve import ServeOptions, make_server, running
from skinedge.serve.payload import supports_heatmap


@pytest.fixture(scope="module")
def clf() -> Classifier:
    with Classifier(num_threads=2) as c:
        yield c


@pytest.fixture(scope="module")
def url(clf: Classifier) -> str:
    with running(make_server(clf, "127.0.0.1", 0, ServeOptions())) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    chosen = os.environ.get("SKINEDGE_SCREENSHOT_DIR")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def photos(skin6_dir: Path, clf: Classifier) -> dict[str, Path]:
    """A confidently scored photo and an uncertain one, chosen by in-process classification."""
    chosen: dict[str, Path] = {}
    for path in sorted((skin6_dir / "test").rglob("*.jpg")):
        result = clf.classify(path)
        key = "uncertain" if result.uncertain else "confident"
        if key not in chosen and (result.uncertain or result.score > 0.9):
            chosen[key] = path
        if len(chosen) == 2:
            return chosen
    pytest.fail("skin6 test set has no photo for both cases")


def _open_page(browser, url: str) -> None:
    browser.get(url)
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "model-line").text.strip())


def _upload(browser, path: Path) -> None:
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.ID, "result").is_displayed() or d.find_element(By.ID, "error").is_displayed())


def _shot(browser, shots: Path, name: str) -> Path:
    """The whole page, beyond the window (Chrome DevTools' full-page capture)."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = browser.execute_cdp_cmd("Page.captureScreenshot",
                                   {"format": "png", "captureBeyondViewport": True, "clip": clip})
    path = shots / name
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000
    return path


def test_page_shows_the_result_of_an_upload(browser, url: str, clf: Classifier, photos, shots: Path) -> None:
    path = photos["confident"]
    expected = clf.classify(path)
    _open_page(browser, url)
    notice = browser.find_element(By.ID, "notice")
    assert notice.is_displayed() and DISCLAIMER in notice.text and "Not a diagnosis" in notice.text
    camera = browser.find_element(By.ID, "camera")  # the phone/tablet camera path
    assert camera.get_attribute("accept") == "image/*" and camera.get_attribute("capture") == "environment"

    _upload(browser, path)
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
    assert browser.find_element(By.ID, "label").text == expected.label
    assert browser.find_element(By.ID, "verdict").text == expected.label
    assert not browser.find_element(By.ID, "uncertain").is_displayed()
    assert browser.find_element(By.ID, "score").text == f"{100 * expected.score:.1f}%"

    rows = browser.find_elements(By.CSS_SELECTOR, "#bars .bar-row")
    assert [r.get_attribute("data-label") for r in rows] == sorted(
        clf.labels, key=lambda lab: -expected.scores[clf.labels.index(lab)])
    for row in rows:
        score = expected.scores[clf.labels.index(row.get_attribute("data-label"))]
        assert float(row.get_attribute("data-score")) == pytest.approx(score, abs=1e-6)
        track = row.find_element(By.CSS_SELECTOR, ".bar-track").size["width"]
        fill = row.find_element(By.CSS_SELECTOR, ".bar-fill").size["width"]
        assert fill / track == pytest.approx(score, abs=0.01), row.text  # the bar's length is the score
        assert row.find_element(By.CSS_SELECTOR, ".bar-value").text == f"{100 * score:.1f}%"
    timing_names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#timings dt")]
    assert timing_names[:3] == ["decode", "preprocess", "model (invoke)"] and "round trip" in timing_names
    assert ("heatmap" in timing_names) == supports_heatmap(clf)

    if supports_heatmap(clf):
        overlay = browser.find_element(By.ID, "overlay")
        WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script(
            "const i = document.getElementById('overlay'); return i.complete && i.naturalWidth > 0;"))
        assert overlay.is_displayed() and not browser.find_element(By.ID, "photo").is_displayed()
        note = browser.find_element(By.ID, "overlay-note")
        assert note.is_displayed() and f"in the score of {expected.label}" in note.text
        _shot(browser, shots, "serve_page.png")
        browser.find_element(By.ID, "show-overlay").click()  # the toggle: back to the plain photo
        assert browser.find_element(By.ID, "photo").is_displayed() and not overlay.is_displayed()
        browser.find_element(By.ID, "show-overlay").click()
        assert overlay.is_displayed()
    else:
        assert not browser.find_element(By.ID, "overlay-toggle").is_displayed()
        _shot(browser, shots, "serve_page.png")

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors  # no script error, no blocked (external) resource


def test_uncertain_result_says_why_and_shows_no_label(browser, url: str, clf: Classifier, photos, shots) -> None:
    path = photos["uncertain"]
    expected = clf.classify(path)
    assert expected.reason is not None
    _open_page(browser, url)
    _upload(browser, path)
    verdict = browser.find_element(By.ID, "verdict")
    assert verdict.text == expected.to_dict()["reason_text"] and verdict.get_attribute("data-reason") == expected.reason
    assert not browser.find_element(By.ID, "top-line").is_displayed()  # no label where an answer would be
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar-row")
    if expected.reason == "low_confidence":  # the scores, dimmed and titled as not an answer
        assert len(bars) == len(clf.labels)
        assert browser.find_element(By.ID, "bars-title").get_attribute("textContent") == "Class scores (not an answer)"
    else:
        assert not browser.find_element(By.ID, "bars").is_displayed()
    _shot(browser, shots, "serve_uncertain.png")


@pytest.mark.parametrize(("image", "reason", "words"), [
    ("cat.bmp", "not_skin", "This does not look like a skin photo."),
    ("hot_dog.jpg", "not_skin", "This does not look like a skin photo."),
])
def test_a_photo_that_is_not_skin_says_so(browser, url: str, clf: Classifier, reference_dir: Path, shots: Path,
                                         image: str, reason: str, words: str) -> None:
    expected = clf.classify(reference_dir / "images" / image)
    assert expected.reason == reason  # the model's answer, in process: the page must say the same
    _open_page(browser, url)
    _upload(browser, reference_dir / "images" / image)
    page = browser.find_element(By.TAG_NAME, "main").text
    assert browser.find_element(By.ID, "verdict").text == words
    for label in clf.labels:  # not one class name anywhere on the page, the heatmap's note included
        assert label not in page
    _shot(browser, shots, f"serve_{reason}.png")


def test_dropping_a_photo_classifies_it(browser, url: str, clf: Classifier, photos) -> None:
    """Drag and drop: a real drop event on the drop zone, carrying the photo as a File."""
    path = photos["confident"]
    expected = clf.classify(path)
    assert expected.reason is None
    _open_page(browser, url)
    browser.execute_script(
        """
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        """,
        base64.b64encode(path.read_bytes()).decode("ascii"),
    )
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "result").is_displayed())
    assert browser.find_element(By.ID, "label").text == expected.label
    assert browser.find_element(By.ID, "score").text == f"{100 * expected.score:.1f}%"


def test_a_broken_file_shows_the_servers_reason(browser, url: str, shots: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    _open_page(browser, url)
    _upload(browser, broken)
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    assert error.text.startswith("Could not score this photo: ") and "image" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert not browser.find_element(By.ID, "photo").is_displayed()  # no broken-image icon
    _shot(browser, shots, "serve_error.png")


def test_narrow_screen_layout(browser, url: str, photos, shots: Path) -> None:
    """A phone-width window: one column, nothing wider than the screen."""
    browser.set_window_size(420, 900)
    try:
        _open_page(browser, url)
        _upload(browser, photos["confident"])
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"page is {overflow} px wider than the window"
        _shot(browser, shots, "serve_phone.png")
    finally:
        browser.set_window_size(1280, 1100)


def test_live_view_panel(clf: Classifier, browser, photos, shots: Path, tmp_path: Path) -> None:
    """With a camera (here a real video file written with OpenCV), the page shows the stream and the smoothed label."""
    cv2 = pytest.importorskip("cv2", reason="the live view needs OpenCV (pip install -e '.[camera]')")
    pytest.importorskip("skinedge.video", reason="skinedge.video (the video pipeline) is not in this tree")
    from PIL import Image

    from skinedge.serve.live import LiveFeed

    rgb = np.asarray(Image.open(photos["confident"]).convert("RGB").resize((480, 360)))
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (480, 360))
    for i in range(100):  # 10 s at the feed's 10 frames/s: still running while the page is checked
        writer.write(np.ascontiguousarray(np.roll(rgb, 3 * i, axis=1)[:, :, ::-1]))
    writer.release()
    live = LiveFeed(clf, str(clip))
    try:
        with running(make_server(clf, "127.0.0.1", 0, live=live)) as srv:
            _open_page(browser, srv.url)
            WebDriverWait(browser, WAIT_S).until(ec.visibility_of_element_located((By.ID, "live-panel")))
            WebDriverWait(browser, WAIT_S).until(
                lambda d: d.find_element(By.ID, "live-label").text in clf.labels)
            WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script(
                "return document.getElementById('live-view').naturalWidth") == 480)
            assert browser.find_element(By.ID, "live-meta").text.startswith("frame ")
            _shot(browser, shots, "serve_live.png")
            browser.get("about:blank")  # close the stream before the server stops
    finally:
        live.stop()
