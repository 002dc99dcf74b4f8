"""The web page: routes answered from hand-written outputs (Flask's test client), bad input shown
as a message, and a real browser (headless Chromium via Selenium) through search → similar titles
→ a fold-in with three ratings → recommendations."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from batchml.catalog import Catalog
from batchml.config import build_config
from batchml.web.app import create_app, warm_up
from handmade_outputs import write_handmade_outputs

TWO_TOWERS = "The Lord of the Rings: The Two Towers"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return write_handmade_outputs(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def client(outputs):
    cat = Catalog(build_config({}).recommend, model=str(outputs / "model"), dataset=str(outputs / "ds"),
                  similar=str(outputs / "sim"))
    warm_up(cat)
    return create_app(cat).test_client()


def _page(resp) -> str:
    text = resp.get_data(as_text=True)
    assert "Traceback" not in text and "File \"" not in text
    return text


def test_home_shows_the_popular_list(client):
    text = _page(client.get("/"))
    assert "Plain Movie" in text and "shrunk mean" in text
    assert text.index("Plain Movie") < text.index("Obscure Movie")   # shrunk mean, not raw mean


def test_search_is_case_insensitive_and_goes_to_the_item(client):
    resp = client.get("/search", query_string={"q": "the lord of the RINGS:  the two towers"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/item/101")
    text = _page(client.get("/item/101"))
    assert TWO_TOWERS in text and "2001" in text
    assert text.index("Return of the King") < text.index("Fellowship") < text.index("WrestleMania")
    assert "0.900" in text and ">40<" in text                          # similarity and co-count


def test_search_did_you_mean_and_unknown(client):
    text = _page(client.get("/search", query_string={"q": "Lord of the Rings: The Two Tower"}))
    assert "Did you mean" in text and TWO_TOWERS in text
    resp = client.get("/search", query_string={"q": "Zzzyzx Qqq"})
    assert resp.status_code == 404 and 'no such title &#34;Zzzyzx Qqq&#34;' in _page(resp)
    resp = client.get("/search", query_string={"q": "  "})
    assert resp.status_code == 400 and "type a title" in _page(resp)


def test_html_in_the_query_is_escaped(client):
    resp = client.get("/search", query_string={"q": "<script>alert(1)</script>"})
    text = _page(resp)
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_user_page_and_unknown_ids(client):
    text = _page(client.get("/user/alice"))
    assert "Return of the King" in text and "2 titles they rated are left out" in text
    assert "Fellowship" not in text
    assert client.get("/user", query_string={"id": "alice"}).headers["Location"].endswith("/user/alice")
    for url, what in (("/user/mallory", 'no such user id &#34;mallory&#34;'),
                      ("/item/999", 'no item with id &#34;999&#34;'), ("/nowhere", "404")):
        resp = client.get(url)
        assert resp.status_code == 404 and what in _page(resp)


def test_fold_in_form(client):
    resp = client.post("/foldin", data={"title": ["100", "battlestar galactica: season 1",
                                                  "WWE: WrestleMania XX", ""],
                                        "rating": ["5", "5", "1", ""]})
    text = _page(resp)
    assert resp.status_code == 200 and "Recommended for you" in text
    top = text[text.index("Recommended for you"):]
    assert top.index("Two Towers") < top.index("Plain Movie") and top.index("Season 2") < top.index("Plain Movie")
    assert top.index("Plain Movie") < top.index("WWE")


@pytest.mark.parametrize("titles, ratings, message", [
    ([""] * 5, [""] * 5, "rate at least one title"),
    (["Obscure Movie"], ["9"], "row 1: rating 9 is outside 1..5"),
    (["Obscure Movie"], ["lots"], "row 1: rating &#39;lots&#39; is not a number"),
    (["Obscure Movie"], [""], "row 1: give a rating for Obscure Movie"),
    (["Battlestar Galactica Season 3"], ["4"], "did you mean: &#39;Battlestar Galactica: Season 2&#39;"),
    (["<b>bold</b>"], ["4"], "no such item id or title &#34;&lt;b&gt;bold&lt;/b&gt;&#34;"),
])
def test_fold_in_bad_input_is_a_message(client, titles, ratings, message):
    resp = client.post("/foldin", data={"title": titles, "rating": ratings})
    text = _page(resp)
    assert resp.status_code == 400 and message in text and "<b>bold" not in text


# ------------------------------------------------------------------------------ a real browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(outputs, tmp_path_factory):
    """``python -m batchml.web`` on 127.0.0.1, a free port; its base URL."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "batchml.web", "--dataset", str(outputs / "ds"),
                             "--model", str(outputs / "model"), "--similar", str(outputs / "sim"),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, open(log.name).read()
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _chromium():
    webdriver = pytest.importorskip("selenium.webdriver")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver; "
                    ".ci/run does it)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900"):
        opts.add_argument(arg)
    from selenium.webdriver.chrome.service import Service
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def _navigate(browser, action) -> None:
    """Run ``action`` (a click or submit that loads a page) and wait for the new page: a click
    returns before the browser has replaced the old document."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(browser, 60).until(EC.staleness_of(old))
    WebDriverWait(browser, 60).until(lambda b: b.execute_script("return document.readyState") == "complete")


def test_browser_search_similar_fold_in(server, tmp_path):
    from selenium.webdriver.common.by import By

    shots = tmp_path / "screenshots"
    shots.mkdir()
    extra = os.environ.get("BATCHML_SCREENSHOTS")
    browser = _chromium()

    def shot(name):
        browser.save_screenshot(str(shots / f"{name}.png"))
        if extra:
            os.makedirs(extra, exist_ok=True)
            browser.save_screenshot(os.path.join(extra, f"web_{name}.png"))

    try:
        browser.get(server + "/")
        assert "Plain Movie" in browser.find_element(By.TAG_NAME, "body").text
        shot("1_home")
        box = browser.find_element(By.CSS_SELECTOR, "h1 + form input[name=q]")
        box.send_keys("the two towers")
        _navigate(browser, box.submit)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Did you mean" in body and TWO_TOWERS in body
        shot("2_search")
        _navigate(browser, browser.find_element(By.LINK_TEXT, TWO_TOWERS).click)  # an exact title: its page
        assert browser.current_url.endswith("/item/101")
        rows = browser.find_elements(By.CSS_SELECTOR, "table tr")[1:]
        assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows][:2] == [
            "The Lord of the Rings: The Return of the King", "The Lord of the Rings: The Fellowship of the Ring"]
        assert rows[0].find_elements(By.TAG_NAME, "td")[3].text == "0.900"
        shot("3_similar")
        _navigate(browser, browser.find_element(By.LINK_TEXT, "Rate a few titles").click)
        titles = browser.find_elements(By.NAME, "title")
        ratings = browser.find_elements(By.NAME, "rating")
        mine = [("the lord of the rings: the fellowship of the ring", "5"),
                ("Battlestar Galactica: Season 1", "5"), ("wwe: wrestlemania xx", "1")]
        for t, r, (title, rating) in zip(titles, ratings, mine):
            t.send_keys(title)
            r.send_keys(rating)
        _navigate(browser, browser.find_element(By.CSS_SELECTOR, "form[method=post] button").click)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Recommended for you" in body
        recs = body[body.index("Recommended for you"):]
        assert recs.index("Two Towers") < recs.index("Plain Movie") < recs.index("WWE")
        shot("4_foldin")
        browser.get(server + "/search?q=%3Cscript%3Ealert(1)%3C/script%3E")
        assert "<script>alert(1)</script>" in browser.find_element(By.TAG_NAME, "body").text
        shot("5_bad_query")
    finally:
        browser.quit()
    assert all((shots / f).stat().st_size > 1000 for f in os.listdir(shots))
