"""Screenshots of the inspector's views (docs/inspector-*.png), from a real headless Chromium.

    tinylm train --set n_layer=2 --set n_embed=64 --set n_heads=4 --set block_size=32 --set max_iters=1500 \\
        --set eval_interval=100 --set eval_iters=20 --out /tmp/demo --serve 8790 &
    python docs/screenshots.py --url http://127.0.0.1:8790 --out docs

The Training tab is taken while the run is still training; the other views once it has finished.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

TEXT = "ROMEO:\nWhat light through yonder window breaks?"


def step(url: str) -> int:
    with urllib.request.urlopen(url + "/api/inspect/model", timeout=30) as response:
        return json.loads(response.read())["step"]


def views(page, out: Path) -> None:
    page.click("#tab-attention")
    page.fill("#inspect-text", TEXT)
    page.click("#inspect-run")
    page.wait_for_selector("#attn-text .tok")
    page.select_option("#attn-layer", "1")
    page.hover("#attn-text .tok >> nth=28")
    page.screenshot(path=str(out / "inspector-attention.png"), full_page=True)
    page.click("#tab-lens")
    page.wait_for_selector("#lens-table .lens-row")
    page.click("#lens-text .tok >> nth=31")
    page.wait_for_timeout(800)
    page.screenshot(path=str(out / "inspector-logit-lens.png"), full_page=True)
    page.click("#tab-knobs")
    page.fill("#knob-top-p", "0.9")
    page.dispatch_event("#knob-top-p", "change")
    page.hover("#knob-text .tok >> nth=29")
    page.wait_for_timeout(800)
    page.screenshot(path=str(out / "inspector-sampling.png"), full_page=True)
    page.click("#tab-embeddings")
    page.wait_for_selector("#emb-svg .point")
    page.hover("#emb-svg .point >> nth=40 >> circle")
    page.screenshot(path=str(out / "inspector-embeddings.png"), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--final-step", type=int, default=1500)
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 980, "height": 760})
        while True:  # the server starts once the run's first checkpoint exists
            try:
                step(args.url)
                break
            except OSError:
                time.sleep(1)
        page.goto(args.url + "/")
        page.click("#tab-live")
        page.wait_for_function("document.querySelectorAll('#live-table tr').length > 0 && "
                               "Number((document.getElementById('live-status').textContent.match(/step (\\d+)/) "
                               "|| [0, 0])[1]) >= 600", timeout=600_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(args.out / "inspector-training.png"), full_page=True)
        while step(args.url) < args.final_step:
            time.sleep(2)
        page.reload()
        views(page, args.out)
        browser.close()


if __name__ == "__main__":
    main()
