"""The page to try a model, in a real headless Chromium (Debian's `chromium`, driven by Playwright): type a
text, submit, read the bars and the words coloured by /explain; two text boxes for a pair model; the key
field when the server needs one; the bars alone, with a note, when the server cannot explain."""

from __future__ import annotations

import re
import sys
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


def read_tokens(page) -> list[tuple[str, float, tuple[int, ...], float]]:
    """(characters, attribution, colour's red-green-blue, colour's alpha) of each coloured token, in order."""
    page.wait_for_selector("#explanation .tok")
    found = []
    for span in page.query_selector_all("#explanation .tok"):
        colour = span.evaluate("span => getComputedStyle(span).backgroundColor")
        *rgb, alpha = (float(part) for part in re.findall(r"[\d.]+", colour))
        found.append((span.inner_text(), float(span.get_attribute("data-attribution")), tuple(rgb), alpha))
    return found


def check_colours(tokens: list[tuple[str, float, tuple[int, ...], float]], record: dict) -> None:
    """Each token's attribution is the record's; green towards the label, red against; the strongest the most
    opaque, and opacity growing with the attribution's size."""
    assert [value for _, value, *_ in tokens] == record["attributions"]
    for _, value, (red, green, _), _ in tokens:
        if value != 0:
            assert (green > red) == (value > 0), (value, red, green)
    sizes = [abs(value) for _, value, *_ in tokens]
    alphas = [alpha for *_, alpha in tokens]
    assert alphas[sizes.index(max(sizes))] == pytest.approx(0.85, abs=0.01)
    assert [alphas[index] for index in sorted(range(len(sizes)), key=sizes.__getitem__)] == sorted(alphas)


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
    # then the words, coloured by what /explain answers for the same text
    tokens = read_tokens(page)
    record = httpx.post(server.url + "/explain", json={"inputs": "a brilliant superb film"}).json()[0]
    assert [characters for characters, *_ in tokens] == ["a", "brilliant", "superb", "film"] == record["tokens"]
    check_colours(tokens, record)
    assert page.inner_text("#explanation .why") == "a brilliant superb film"
    assert f"towards {record['target']}" in page.inner_text("#explanation .legend") and page.is_hidden("#explain-note")
    assert server.url + "/explain" in requests
    assert all(url.startswith(server.url) for url in requests)  # self-contained: nothing from elsewhere
    page.close()


def test_typed_markup_is_shown_as_text_and_cut_at_the_offsets(browser, start_server) -> None:
    server = start_server("single")
    page = browser.new_page()
    page.goto(server.url + "/ui")
    text = 'a <img src=x onerror="window.hit = 1">good film 🎬 <b>superb</b>  end'
    page.fill("#text", text)
    page.click("#submit")
    tokens = read_tokens(page)
    record = httpx.post(server.url + "/explain", json={"inputs": text}).json()[0]
    assert [characters for characters, *_ in tokens] == [text[start:end] for start, end in record["offsets"]]
    assert page.inner_text("#explanation .why") == text  # every character, once, in order (the emoji too)
    assert page.query_selector("#explanation img, #explanation b") is None
    assert page.evaluate("window.hit") is None
    page.close()


def test_without_captum_the_page_shows_the_answer_and_a_note(browser, start_server, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "captum", None)  # what `import captum` finds when it is not installed
    server = start_server("single")
    page = browser.new_page()
    page.goto(server.url + "/ui")
    page.fill("#text", "a dull film")
    page.click("#submit")
    assert {label for label, *_ in read_bars(page)} == {"negative", "positive"}
    page.wait_for_selector("#explain-note:not([hidden])")
    assert "pip install 'textclf[explain]'" in page.inner_text("#explain-note")
    assert page.query_selector("#explanation .tok") is None and page.is_hidden("#error")
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
    tokens = read_tokens(page)
    record = httpx.post(server.url + "/explain", json=payload).json()[0]
    check_colours(tokens, record)
    assert [paragraph.inner_text() for paragraph in page.query_selector_all("#explanation .why")] == [
        "a good film",
        "an awful plot",
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
