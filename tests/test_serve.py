"""``tinylm serve``: the JSON API through a real server process on 127.0.0.1, and the playground page
in a real headless Chromium (Debian's ``chromium``) driven by Playwright for Python."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import TINY, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def served_run(tmp_path_factory, data_cache) -> Path:
    from conftest import run_cli

    pytest.importorskip("fastapi", reason="needs tinylm[serve]")
    text = tmp_path_factory.mktemp("text") / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 100, encoding="utf-8")
    run = tmp_path_factory.mktemp("runs") / "r"
    sets = [arg for item in TINY + ["max_iters=30", "eval_interval=30"] for arg in ("--set", item)]
    done = run_cli("train", *sets, "--data", str(text), "--out", str(run), "--device", "cpu", "--quiet",
                   "--sample-chars", "0")
    assert done.returncode == 0, done.stderr
    return run


@contextlib.contextmanager
def serving(run: Path, *options: str):
    """A real ``tinylm serve`` process for ``run`` on a free port; yields its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tinylm", "serve", "--run", str(run), "--port", str(port),
                             "--device", "cpu", *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(served_run):
    with serving(served_run) as url:
        yield url


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            urllib.request.urlopen(url + "/api/info", timeout=5).read()
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    pytest.fail("server did not come up")


def post(url: str, payload: dict) -> tuple[int, str, str]:
    """(status, content type, body) of a JSON POST."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def parse_events(body: str) -> list[tuple[str, dict]]:
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_generate_plain_and_streamed_agree_with_a_seed(server):
    request = {"prompt": "the ", "max_new_tokens": 40, "temperature": 0.9, "top_k": 10, "seed": 5}
    status, kind, body = post(server + "/api/generate", request)
    assert status == 200 and kind.startswith("application/json")
    plain = json.loads(body)
    assert plain["prompt"] == "the " and len(plain["text"]) == 40
    status, kind, body = post(server + "/api/generate", {**request, "stream": True})
    assert status == 200 and kind.startswith("text/event-stream")
    events = parse_events(body)
    assert [name for name, _ in events] == ["char"] * 40 + ["done"]
    assert "".join(data["char"] for _, data in events[:-1]) == events[-1][1]["text"] == plain["text"]


@pytest.mark.slow
def test_compiled_server_gives_the_same_texts_to_concurrent_requests(server, served_run):
    """``--compile``: generations run in worker threads through the one compiled step, at the same time."""
    requests = [{"prompt": "the ", "max_new_tokens": 30, "temperature": 0.9, "top_k": 10, "seed": seed}
                for seed in (1, 2, 3, 4)]
    expected = [json.loads(post(server + "/api/generate", request)[2])["text"] for request in requests]
    with serving(served_run, "--compile") as url, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda request: post(url + "/api/generate", request), requests))
    assert [status for status, _, _ in answers] == [200] * 4
    assert [json.loads(body)["text"] for _, _, body in answers] == expected


def test_stop_and_next_char_probabilities(server):
    status, _, body = post(server + "/api/generate", {"prompt": "the ", "max_new_tokens": 300, "stop": "o", "seed": 1})
    text = json.loads(body)["text"]
    assert status == 200 and text.endswith("o") and text.count("o") == 1
    status, _, body = post(server + "/api/next-char", {"text": "the quick brown fox jumps over the lazy do"})
    probs = json.loads(body)["probs"]
    assert status == 200 and len(probs) == 15
    values = [item["p"] for item in probs]
    assert values == sorted(values, reverse=True) and 0 < sum(values) <= 1.0 + 1e-6
    assert len({item["char"] for item in probs}) == 15


@pytest.mark.parametrize("path, payload, fragment", [
    ("/api/generate", {"prompt": "THE"}, "never saw"),
    ("/api/generate", {"prompt": "the", "temperature": -1}, "temperature"),
    ("/api/generate", {"prompt": "the", "max_new_tokens": 100000}, "max_new_tokens"),
    ("/api/generate", {"prompt": "the", "top_p": 1.5}, "top_p"),
    ("/api/generate", {"prompt": "the", "top_k": 0, "stream": True}, "top_k"),
    ("/api/generate", {"prompt": "the", "temperature": "hot"}, "temperature"),
    ("/api/next-char", {"text": "the", "k": 0}, "k must be"),
    ("/api/next-char", {"text": "@"}, "never saw"),
])
def test_bad_requests_get_400_with_a_message(server, path, payload, fragment):
    status, kind, body = post(server + path, payload)
    assert status == 400 and kind.startswith("application/json"), (status, body)
    assert fragment in json.loads(body)["error"]


def launch_chromium(playwright):
    if not Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is None:
        message = f"Chromium not found at {CHROMIUM} (Debian package `chromium`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must run the browser test")
        pytest.skip(message)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.mark.slow
def test_playground_page_in_headless_chromium(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        outside = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server) else None)
        page.goto(server + "/")
        page.fill("#prompt", "the ")
        page.fill("#max-new-tokens", "60")
        page.click("#generate")
        page.wait_for_function("document.querySelectorAll('#output .ch').length >= 1", timeout=60_000)
        page.wait_for_function("!document.getElementById('generate').disabled", timeout=120_000)
        assert page.locator("#output .ch").count() == 60
        assert page.inner_text("#output").startswith("the ")
        page.locator("#output .ch").nth(10).click()
        page.wait_for_selector("#chart .bar-row", timeout=60_000)
        assert page.locator("#chart .bar-row").count() == 15
        assert page.locator("#chart .bar-row.picked").count() <= 1
        page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
        shutil.copyfile(tmp_path / "playground.png", Path(os.environ.get("TINYLM_SCREENSHOT", tmp_path / "copy.png")))
        page.fill("#prompt", "THE")
        page.click("#generate")
        page.wait_for_function("document.getElementById('error').textContent.includes('never saw')", timeout=60_000)
        browser.close()
    assert outside == []  # nothing loaded from outside the server


def test_a_taken_port_is_a_one_line_error(server, capsys):
    from tinylm.cli import main

    port = server.rsplit(":", 1)[1]
    assert main(["serve", "--run", "never-read", "--port", port]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tinylm: error: cannot listen on 127.0.0.1:{port}") and err.count("\n") == 1
