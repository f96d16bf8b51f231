"""The page to try a model, in a real headless Chromium (Debian's `chromium`, driven by Playwright): type a
text, submit, read the bars; two text boxes for a pair model; the key field when the server needs one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import CHROMIUM, CHROMIUM_FLAGS

pytestmark = [
    pytest.mark.slow,  # a browser
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def read_bars(page) -> list[tuple[str, float, bool]]:
    """(label, score shown, chosen) of each bar, top to bottom."""
    page.wait_for_selector("#answer .row")
    rows = page.query_selector_all("#answer .row")
    return [
        (
            row.get_attribute("data-label"),
            float(row.query_selector(".score").inner_text()),
            "chosen" in row.get_attribute("class"),
        )
        for row in rows
    ]


def test_the_page_classifies_what_is_typed(browser, start_server) -> None:
    server = start_server("single")
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(server.url + "/")  # a browser asks for text/html: the page, not the JSON
    page.wait_for_selector("#form:not([hidden])")
    assert page.is_hidden("#text_pair") and "negative, positive" in page.inner_text("#about")
    page.fill("#text", "a brilliant superb film")
    page.click("#submit")
    bars = read_bars(page)
    expected = httpx.post(server.url, json={"inputs": "a brilliant superb film"}).json()[0]
    assert [(label, score) for label, score, _ in bars] == [
        (item["label"], round(item["score"], 4)) for item in expected
    ]
    assert [chosen for *_, chosen in bars] == [True, False]
    width = page.eval_on_selector("#answer .row .bar", "bar => bar.style.width")
    assert float(width.removesuffix("%")) == pytest.approx(expected[0]["score"] * 100, abs=0.06)
    assert all(url.startswith(server.url) for url in requests)  # self-contained: nothing from elsewhere
    page.close()


def test_a_pair_model_gets_two_text_boxes(browser, start_server) -> None:
    server = start_server("pair")
    page = browser.new_page()
    page.goto(server.url + "/ui")
    page.wait_for_selector("#text_pair", state="visible")
    page.fill("#text", "a good film")
    page.fill("#text_pair", "an awful plot")
    page.click("#submit")
    bars = read_bars(page)
    payload = {"inputs": {"text": "a good film", "text_pair": "an awful plot"}}
    expected = httpx.post(server.url, json=payload).json()[0]
    assert [(label, score) for label, score, _ in bars] == [
        (item["label"], round(item["score"], 4)) for item in expected
    ]
    page.close()


def test_with_an_api_key_the_page_asks_for_it(browser, start_server) -> None:
    server = start_server("single", api_key="s3cret")
    page = browser.new_page()
    page.goto(server.url + "/ui")
    page.wait_for_selector("#key", state="visible")
    page.fill("#text", "a dull film")
    page.fill("#key", "wrong")
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])")
    assert "API key" in page.inner_text("#error")
    page.fill("#key", "s3cret")
    page.click("#submit")
    assert {label for label, *_ in read_bars(page)} == {"negative", "positive"}
    page.close()
