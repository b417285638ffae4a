"""The page at /, in a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium): typing shows the nearest questions, adding works with the key, texts stay text.

DUPFINDER_SCREENSHOT=docs/screenshot.png also saves the page at phone and desktop width, side by side.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and DRIVER.exists()):
    pytest.skip("no /usr/bin/chromium and /usr/bin/chromedriver: apt-get install chromium chromium-driver", allow_module_level=True)
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
pytest.importorskip("selenium", reason="selenium is not installed: pip install selenium")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from server_process import KEY, Server, build_index, pairs_questions  # noqa: E402

N = len(pairs_questions())
PHONE, DESKTOP = (390, 844), (1280, 900)
WAIT_S = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    index = tmp_path_factory.mktemp("page") / "index"
    build_index(index)
    s = Server(index, tmp_path_factory.mktemp("home"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, server):
    browser.set_window_size(*PHONE)
    browser.get(server.url + "/")
    wait(browser, lambda d: "questions ·" in d.find_element(By.ID, "info").text)
    return browser


def wait(driver, condition):
    return WebDriverWait(driver, WAIT_S).until(condition)


def hits(driver) -> list[dict]:
    """The results as shown, read in one script (the list is redrawn as the answers come)."""
    rows = driver.execute_script("""return [...document.querySelectorAll('#hits li')].map(li => ({
        badge: li.querySelector('.badge').innerText, score: li.querySelector('.score').innerText,
        id: li.querySelector('.id').innerText, text: li.querySelector('.text').innerText}))""")
    return [row | {"score": float(row["score"])} for row in rows]


def type_question(driver, text: str) -> None:
    box = driver.find_element(By.ID, "q")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)  # as a person erases: clear() would fire no input event
    box.send_keys(text)


def searches(server) -> int:
    import httpx

    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith('dupfinder_http_requests_total{method="POST",route="/v1/search",status="200"}'):
            return int(line.split()[-1])
    return 0


def test_typing_shows_the_nearest_questions(page, server):
    assert page.find_element(By.ID, "info").text.startswith(f"{N} questions · model default (")
    before = searches(server)
    type_question(page, "How old are you?")
    wait(page, lambda d: hits(d) and hits(d)[0]["text"] == "How old are you?")
    found = hits(page)
    assert found[0] == {"badge": "DUPLICATE", "score": 1.0, "id": "#q1", "text": "How old are you?"}
    with server.client() as c:  # the page marks what the API calls duplicates
        api = c.post("/v1/search", json={"question": "How old are you?", "k": len(found)}).json()["hits"]
    assert [h["text"] for h in found if h["badge"] == "DUPLICATE"] == [h["text"] for h in api if h["duplicate"]]
    assert [h["score"] for h in found] == sorted((h["score"] for h in found), reverse=True)
    assert "already asked" in page.find_element(By.ID, "status").text
    assert 1 <= searches(server) - before < len("How old are you?")  # debounced: not one search per keystroke
    # on a phone-sized screen nothing runs off the side
    assert page.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    type_question(page, "")
    wait(page, lambda d: not hits(d))


def test_no_duplicate_says_so(page):
    type_question(page, "What is a good pancake recipe without eggs or milk for breakfast?")
    wait(page, lambda d: "No duplicate" in d.find_element(By.ID, "status").text or "already asked" in d.find_element(By.ID, "status").text)
    status = page.find_element(By.ID, "status").text
    if "No duplicate" in status:
        assert all(h["badge"] == "DIFFERENT" for h in hits(page))


def test_add_a_question_with_the_key(page, server):
    question = "Can a goldfish remember its owner's face?"
    type_question(page, question)
    wait(page, lambda d: hits(d))
    page.find_element(By.CSS_SELECTOR, "#add-panel summary").click()
    page.find_element(By.ID, "add-id").send_keys("web-1")
    key = page.find_element(By.ID, "add-key")
    key.clear()
    key.send_keys("wrong")
    page.find_element(By.ID, "add-button").click()
    wait(page, lambda d: "wrong API key" in d.find_element(By.ID, "add-result").text)
    key.clear()
    key.send_keys(KEY)
    page.find_element(By.ID, "add-button").click()
    wait(page, lambda d: d.find_element(By.ID, "add-result").text.startswith("Added as web-1"))
    assert page.find_element(By.ID, "add-result").text == f"Added as web-1; {N + 1} questions in the index."
    wait(page, lambda d: hits(d)[0]["id"] == "#web-1")
    assert hits(page)[0] == {"badge": "DUPLICATE", "score": 1.0, "id": "#web-1", "text": question}
    assert page.find_element(By.ID, "info").text.startswith(f"{N + 1} questions")
    page.find_element(By.ID, "add-button").click()
    wait(page, lambda d: d.find_element(By.ID, "add-result").text.startswith("Not added"))
    assert page.find_element(By.ID, "add-result").text == "Not added: already indexed with this id and text."


def test_question_texts_are_shown_as_text(page, server):
    import httpx

    nasty = 'Is <img src=x onerror="window.pwned=1"> <b>bold</b> safe?'
    r = httpx.post(server.url + "/v1/questions", json={"questions": [{"id": "html", "text": nasty}]},
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200
    type_question(page, nasty)
    wait(page, lambda d: hits(d) and hits(d)[0]["id"] == "#html")
    assert hits(page)[0]["text"] == nasty
    assert page.execute_script("return window.pwned === undefined && document.querySelectorAll('#hits img, #hits b').length === 0")


def test_docs_page_lists_the_api(browser, server):
    browser.set_window_size(*DESKTOP)
    browser.get(server.url + "/docs")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "section.op")) >= 8)
    paths = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "section.op h2 code")]
    assert "/v1/search" in paths and "/v1/questions/{id}" in paths


@pytest.mark.skipif(not os.environ.get("DUPFINDER_SCREENSHOT"), reason="set DUPFINDER_SCREENSHOT=PATH to save a screenshot")
def test_screenshot(browser, server):
    from PIL import Image

    shots = []
    for width, height in (DESKTOP, PHONE):
        browser.set_window_size(width, height)
        browser.get(server.url + "/")
        wait(browser, lambda d: "questions ·" in d.find_element(By.ID, "info").text)
        type_question(browser, "How old are you?")
        wait(browser, lambda d: len(hits(d)) >= 5)
        time.sleep(0.3)  # the last paint
        path = Path(tempfile.mkdtemp()) / f"{width}.png"
        browser.save_screenshot(str(path))
        shots.append(Image.open(path).convert("RGB"))
    gap = 24
    out = Image.new("RGB", (sum(s.width for s in shots) + gap * 3, max(s.height for s in shots) + gap * 2), (200, 200, 205))
    x = gap
    for shot in shots:
        out.paste(shot, (x, gap))
        x += shot.width + gap
    out.save(os.environ["DUPFINDER_SCREENSHOT"])
