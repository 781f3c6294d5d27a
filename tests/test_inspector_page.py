"""The inspector page in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Each view renders for a tiny model; the attention values the page shows equal the API's and
``tinylm.inspect.probe``'s; the Training tab follows ``metrics.jsonl`` and a replaced ``ckpt.pt``.
"""

import json
import time

import pytest

from runs_helper import append_metric, replace_checkpoint
from test_inspector import api, serve_random_run
from test_serve import launch_chromium
from tinylm.inspect import probe
from tinylm.training.rundir import load_run

pytestmark = pytest.mark.slow
TEXT = "the quick brown fox"


@pytest.fixture(scope="module")
def served(tmp_path_factory):  # the last test replaces the checkpoint: the others run first
    pytest.importorskip("fastapi", reason="needs tinylm[serve]")
    yield from serve_random_run(tmp_path_factory)


@pytest.fixture
def page_of(served):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    url = served[0]
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        outside, errors = [], []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        yield page
        browser.close()
    assert outside == [] and errors == []  # nothing from outside the server; no script errors


def inspect_text(page, view: str, rendered: str) -> None:
    """Open a text view's tab, inspect TEXT, and wait until the view shows ``rendered``."""
    page.click(f"#tab-{view}")
    page.fill("#inspect-text", TEXT)
    page.click("#inspect-run")
    page.wait_for_selector(rendered)


def test_attention_on_the_page_equals_the_api_and_probe(served, page_of):
    url, run = served
    page = page_of
    inspect_text(page, "attention", "#attn-text .tok")
    page.select_option("#attn-layer", "1")
    page.select_option("#attn-head", "1")
    query = 7
    page.hover(f"#attn-text .tok >> nth={query}")
    shown = [float(w) for w in page.eval_on_selector_all("#attn-text .tok", "spans => spans.map(s => s.dataset.w)")]
    from_api = api(url + "/api/inspect/attention", {"text": TEXT, "layer": 1, "head": 1})["weights"][0][0][query]
    model, tok, _, _ = load_run(run)
    from_probe = probe.attention_maps(model, tok, TEXT)[1, 1, query].tolist()  # the last 16 characters
    assert shown == from_api == from_probe
    assert sum(shown) == pytest.approx(1.0, abs=1e-5) and shown[query + 1:] == [0.0] * (15 - query)
    assert page.inner_text("#attn-readout").startswith(f"'{TEXT[-16:][query]}' (position {query}) attends most to")


def test_lens_knobs_embeddings_and_generate_render(served, page_of):
    url, run = served
    page = page_of
    inspect_text(page, "lens", "#lens-table .lens-row")
    assert page.locator("#lens-table .lens-row").count() == 3  # embeddings + 2 blocks
    lens = api(url + "/api/inspect/logit-lens", {"text": TEXT, "k": 5})
    expected = [item["p"] for layer in lens["layers"] for item in layer["top"]]
    # the tab may first render the text it held before the fill: wait for the render of TEXT
    deadline, cells = time.monotonic() + 30, None
    while cells != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        cells = page.eval_on_selector_all("#lens-table td", "tds => tds.map(td => Number(td.dataset.p))")
    assert cells == expected
    page.click("#tab-knobs")
    page.fill("#knob-top-k", "3")
    page.dispatch_event("#knob-top-k", "change")
    page.hover("#knob-text .tok >> nth=4")
    page.wait_for_function("document.getElementById('knob-summary').textContent.includes(\"here is 'q'\")")
    sampled = page.eval_on_selector_all("#knob-table .knob-row td:nth-child(4)",
                                        "tds => tds.map(td => Number(td.dataset.p))")
    assert len(sampled) == 15 and sum(p > 0 for p in sampled) == 3
    page.click("#tab-embeddings")
    page.wait_for_selector("#emb-svg .point")
    vocab = api(url + "/api/inspect/sampling", {"text": ""})["rows"]
    assert page.locator("#emb-svg .point").count() == len(load_run(run)[1].chars) >= len(vocab)
    page.hover("#emb-svg .point >> nth=3 >> circle")
    assert page.inner_text("#emb-readout").startswith(f"'{load_run(run)[1].chars[3]}' at (")
    page.click("#tab-generate")
    page.fill("#prompt", "the ")
    page.fill("#max-new-tokens", "20")
    page.click("#generate")
    page.wait_for_function("document.querySelectorAll('#output .ch').length === 20", timeout=60_000)


def test_the_training_tab_follows_metrics_and_checkpoints(served, page_of):
    url, run = served
    page = page_of
    page.click("#tab-live")
    page.wait_for_function("document.getElementById('live-status').textContent.startsWith('2 evaluations')")
    page.wait_for_function("document.getElementById('live-ckpt').dataset.step === '100'")
    assert page.get_attribute("#live-chart polyline[data-key=val_loss]", "data-points") == "2"
    assert len(page.inner_text("#live-sample")) > 0
    append_metric(run, 150)
    page.wait_for_function("document.getElementById('live-status').textContent === '3 evaluations, latest at step 150'")
    assert page.get_attribute("#live-chart polyline[data-key=train_loss]", "data-points") == "3"
    page.click("#tab-embeddings")
    page.wait_for_selector("#emb-svg .point")
    before = page.get_attribute("#emb-svg .point >> nth=0", "transform")
    replace_checkpoint(run, seed=5, step=300)
    page.wait_for_function("document.getElementById('live-ckpt').dataset.step === '300'")
    model, tok, _, _ = load_run(run)
    x, y = probe.embedding_pca(model)[0].tolist()
    page.wait_for_function("t => document.querySelector('#emb-svg .point').getAttribute('transform') !== t", arg=before)
    page.hover("#emb-svg .point >> nth=1 >> circle")
    page.hover("#emb-svg .point >> nth=0 >> circle")
    assert page.inner_text("#emb-readout") == f"'{tok.chars[0]}' at ({x:.3f}, {y:.3f})".replace("'\n'", "'\u21b5'")
    assert json.loads(json.dumps(api(url + "/api/inspect/sampling", {"text": "the"})))["step"] == 300
