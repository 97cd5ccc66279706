"""The pages in a real browser: Debian's headless Chromium driven by Selenium against the live stack.

Each test saves a screenshot under ``.screens/`` (or ``$VIDSEARCH_SCREENS``): look at them. Without
Chromium the tests skip, naming the packages to install.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.local.processes import ROOT
from tests.media import make_png, make_video
from tests.web.conftest import WebStack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MISSING = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"no {', '.join(MISSING)}: apt-get install -y chromium chromium-driver "
                                              "fonts-noto-cjk"),
]
SCREENS = Path(os.environ.get("VIDSEARCH_SCREENS", ROOT / ".screens"))
KOREAN = "스튜디오에서 전화를 받는 남자"


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator:
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (a dev dependency)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
                 "--lang=ko-KR", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "intl.accept_languages": "ko-KR,ko",
                                              "download.prompt_for_download": False})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def page(driver, web: WebStack, request: pytest.FixtureRequest) -> Iterator[Callable[[str], None]]:
    """Opens a page of the app; the test's screenshot is saved when it ends, pass or fail."""
    driver.set_window_size(1280, 900)

    def open_page(path: str) -> None:
        driver.get(web.url + path)

    yield open_page
    SCREENS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENS / f"{request.node.name}.png"))


def wait(driver, condition: Callable[[], object], timeout: float = 60, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    status = driver.execute_script("return (document.getElementById('status') || {}).textContent")
    raise AssertionError(f"timed out waiting for {what or condition} (page status: {status!r})")


def hits(driver) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#results .hit")


def thumbnails_loaded(driver) -> bool:
    return driver.execute_script(
        "const imgs = [...document.querySelectorAll('#results .hit img')];"
        "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);")


def scores(driver) -> list[float]:
    from selenium.webdriver.common.by import By

    return [float(e.text) for e in driver.find_elements(By.CSS_SELECTOR, "#results .hit .score")]


def test_korean_query_shows_ranked_thumbnails(driver, page) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page("/search")
    box = driver.find_element(By.ID, "q")
    assert box.get_attribute("placeholder").startswith("장면을 설명하세요")  # Korean UI for a Korean browser
    box.send_keys(KOREAN, Keys.ENTER)
    wait(driver, lambda: len(hits(driver)) >= 10, what="hits")
    wait(driver, lambda: thumbnails_loaded(driver), what="thumbnails")
    assert scores(driver) == sorted(scores(driver), reverse=True)
    assert urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query)["q"] == [KOREAN]
    first = hits(driver)[0]
    assert first.find_element(By.CSS_SELECTOR, ".rank").text == "#1"
    assert re.fullmatch(r"\d\d:\d\d:\d\d[:;.]\d\d\d?", first.find_element(By.CSS_SELECTOR, ".tc").text)


def test_ime_composition_never_fires_a_search(driver, page) -> None:
    page("/search")
    driver.execute_script("""
        const q = document.getElementById('q');
        q.dispatchEvent(new CompositionEvent('compositionstart', {data: ''}));
        q.value = '스튜디';
        q.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', keyCode: 229, isComposing: true, bubbles: true}));
        document.getElementById('search-form').requestSubmit();
    """)
    time.sleep(1.0)
    assert hits(driver) == [] and "q=" not in driver.current_url
    driver.execute_script("""
        const q = document.getElementById('q');
        q.value = '스튜디오';
        q.dispatchEvent(new CompositionEvent('compositionend', {data: '오'}));
        document.getElementById('search-form').requestSubmit();
    """)
    wait(driver, lambda: len(hits(driver)) > 0, what="hits after the composition ended")


def test_a_result_list_is_addressable_by_its_url(driver, page) -> None:
    from selenium.webdriver.common.by import By

    page("/search?" + urllib.parse.urlencode({"q": "뉴스", "programme": "Drama", "collapse": "1", "k": "10"}))
    wait(driver, lambda: len(hits(driver)) == 1, what="one collapsed Drama hit")
    assert driver.find_element(By.ID, "programme").get_attribute("value") == "Drama"
    assert driver.find_element(By.ID, "collapse").is_selected()
    assert "Studio call" in hits(driver)[0].text


def test_pick_an_image(driver, page, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    page("/search")
    image = make_png(tmp_path / "query.png", size=(160, 120))
    driver.find_element(By.ID, "file").send_keys(str(image))
    wait(driver, lambda: len(hits(driver)) >= 10, what="hits for the image")
    wait(driver, lambda: thumbnails_loaded(driver), what="thumbnails")
    assert "query.png" in driver.find_element(By.ID, "drop-text").text


def test_open_a_hit_and_the_video_plays(driver, page) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page("/search?" + urllib.parse.urlencode({"q": "tape", "video": "tape-mxf", "k": "3"}))
    wait(driver, lambda: len(hits(driver)) == 3, what="hits")
    driver.execute_script("arguments[0].focus()", hits(driver)[0])
    driver.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)  # keyboard: arrows move between hits, Enter plays
    assert driver.switch_to.active_element.get_attribute("data-index") == "1"
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait(driver, lambda: driver.execute_script("return document.getElementById('player').open"), what="player")
    wait(driver, lambda: driver.execute_script("return document.getElementById('video').currentTime") > 0.5,
         timeout=30, what="the video to play")
    info = driver.find_element(By.ID, "player-info").text
    assert re.match(r"10:00:0\d:00 – 10:00:0\d:00", info), info
    state = driver.execute_script("const v = document.getElementById('video');"
                                  "return [v.error, v.videoWidth, v.duration];")
    assert state[0] is None and state[1] > 0 and 1.5 < state[2] < 2.5


def test_upload_shows_progress_until_done_then_search_finds_it(driver, page, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    page("/ingest")
    video = make_video(tmp_path / "브라우저 업로드.mp4", seconds=4, fps=10, size=(96, 64), pattern="smptebars")
    driver.find_element(By.ID, "title").send_keys("브라우저 업로드")
    driver.find_element(By.ID, "programme").send_keys("WebUpload")
    driver.find_element(By.ID, "files").send_keys(str(video))
    driver.find_element(By.ID, "upload").click()
    row = wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "#job-rows tr"), what="a job row")[0]
    wait(driver, lambda: row.get_attribute("data-state") in ("SUCCEEDED", "FAILED"), timeout=180, what="done")
    assert row.get_attribute("data-state") == "SUCCEEDED", row.text
    assert driver.execute_script("const p = arguments[0].querySelector('.stage-bar'); return p.value === p.max "
                                 "&& p.max > 0", row)
    assert "완료" in row.text  # state in Korean
    SCREENS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENS / "test_upload_ingest_page_done.png"))
    page("/search?" + urllib.parse.urlencode({"q": "업로드", "programme": "WebUpload"}))
    wait(driver, lambda: hits(driver), what="the uploaded video's clips")
    assert all("브라우저 업로드" in h.text for h in hits(driver))


def test_export_edl_and_parse_it_back(driver, page, downloads: Path) -> None:
    from selenium.webdriver.common.by import By

    page("/search?" + urllib.parse.urlencode({"q": KOREAN, "video": "tape-mxf", "k": "3"}))
    wait(driver, lambda: len(hits(driver)) == 3, what="hits")
    driver.find_element(By.ID, "export-edl").click()
    edl_file = downloads / "vidsearch.edl"
    wait(driver, edl_file.exists, timeout=30, what="the EDL download")
    time.sleep(0.5)
    text = edl_file.read_text(encoding="utf-8")
    events = re.findall(r"^(\d{3})  (\S+)\s+V\s+C\s+(\S+) (\S+) (\S+) (\S+)\r?$", text, re.M)
    shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#results .hit .tc")]
    assert [e[2] for e in events] == shown  # the same hits, in the same order, in source timecode
    assert [e[0] for e in events] == ["001", "002", "003"] and events[0][4] == "01:00:00:00"
    assert all(e[1] == "TAPE_MXF" for e in events)


def test_phone_width_stays_usable(driver, page) -> None:
    driver.set_window_size(390, 844)
    page("/search?" + urllib.parse.urlencode({"q": KOREAN, "k": "5"}))
    wait(driver, lambda: len(hits(driver)) == 5, what="hits")
    wait(driver, lambda: thumbnails_loaded(driver), what="thumbnails")
    widths = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth,"
                                   "document.querySelector('#results .hit').getBoundingClientRect().width]")
    assert widths[0] <= widths[1] and widths[2] >= widths[1] * 0.8  # no sideways scroll; one column
    # The filters fold away on a phone, so the hits are near the top.
    assert driver.execute_script("return document.getElementById('filters-box').open") is False


def test_the_ui_switches_to_english_and_remembers_it(driver, page) -> None:
    from selenium.webdriver.common.by import By

    page("/search?" + urllib.parse.urlencode({"q": "studio", "k": "4"}))
    wait(driver, lambda: len(hits(driver)) == 4, what="hits")
    driver.find_element(By.ID, "lang-switch").click()
    assert driver.find_element(By.ID, "q").get_attribute("placeholder").startswith("Describe a scene")
    assert hits(driver)[0].find_element(By.CSS_SELECTOR, ".play").text == "Play"
    assert driver.find_element(By.ID, "status").text.startswith("4 clips")
    page("/ingest")
    assert driver.find_element(By.ID, "upload").text == "Upload"
    driver.execute_script("localStorage.removeItem('vidsearch.lang')")
