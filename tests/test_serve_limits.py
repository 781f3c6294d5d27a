"""``tinylm serve`` under hostile or heavy use (issue 17), through a real server process on 127.0.0.1.

The server runs with ``--max-generations 2 --queue 4 --threads 1``, so 45 concurrent requests keep
at most 6 generations admitted; everything is bounded in time and stays on this machine. Requests
go over raw sockets where the test needs to send a lying header or drop a connection mid-request.
"""

import json
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import TINY, free_port
from tinylm.config import load_config
from tinylm.training.run import train_run

LONG = json.dumps({"prompt": "the ", "max_new_tokens": 2000}).encode()

pytestmark = pytest.mark.serial  # its latency bounds assume the machine is not running other tests


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_cache):
    pytest.importorskip("fastapi", reason="needs tinylm[serve]")
    from test_serve import wait_until_up

    text = tmp_path_factory.mktemp("text") / "t.txt"
    text.write_text("ROMEO: the quick brown fox jumps over the lazy dog.\n" * 100, encoding="utf-8")
    run = tmp_path_factory.mktemp("runs") / "r"
    train_run(load_config(overrides=TINY + ["max_iters=2", "eval_interval=2", f"data={text}"]), run,
              progress=False, log=lambda _: None)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tinylm", "serve", "--run", str(run), "--port", str(port),
                             "--device", "cpu", "--threads", "1", "--max-generations", "2", "--queue", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def send(port: int, path: str, body: bytes = b"", headers: dict | None = None, method: str = "POST",
         receive_buffer: int | None = None) -> socket.socket:
    """Open a connection and send one request; the caller reads (or drops) the answer.

    A small ``receive_buffer`` makes an unread stream push back on the server (TCP flow control)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    head = {"Host": "127.0.0.1", "Connection": "close", "Content-Length": str(len(body)), **(headers or {})}
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in head.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


def answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    """(status, lower-cased headers, body) read until the server closes the connection."""
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def info(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=30) as response:
        return json.loads(response.read())["generations"]


def wait_idle(port: int, timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        g = info(port)
        if g["running"] == 0 and g["waiting"] == 0:
            return time.monotonic() - began
        time.sleep(0.05)
    pytest.fail(f"generations still running after {timeout} s: {info(port)}")


def test_docstring_curl_examples_work_as_written(server):
    """The playground's and the inspector's: curl -d sends a form content type, and both read JSON anyway."""
    from tinylm.serve import app, inspector

    lines = (app.__doc__ + inspector.__doc__).splitlines()
    examples = [line.split("   #")[0].strip() for line in lines
                if line.strip().startswith("curl") and "/api/live" not in line]  # a stream never ends
    assert len(examples) == 8
    for example in examples:
        argv = shlex.split(example.replace("localhost:8000", f"127.0.0.1:{server}"))
        done = subprocess.run(argv + ["--max-time", "60", "-w", "\n%{http_code}"], capture_output=True,
                              text=True, timeout=90)
        body, code = done.stdout.rsplit("\n", 1)
        error = "event: error" in body if "-sN" in argv else json.loads(body).get("error") is not None
        assert code == "200" and not error, (example, code, body[:200])


@pytest.mark.parametrize("path, body, fragment", [
    ("/api/generate", b'{"prompt": "the", "max_new_tokens": "5"}', "max_new_tokens"),
    ("/api/generate", b'{"prompt": "the", "max_new_tokens": true}', "max_new_tokens"),
    ("/api/generate", b'{"prompt": "the", "colour": "red"}', "colour: unknown field"),
    ("/api/generate", b'{"prompt": "the", "temperature": 1e-40}', "temperature"),
    ("/api/generate", b'{"prompt": "the", "temperature": NaN}', "NaN"),
    ("/api/generate", b'{"prompt": "the", "seed": 18446744073709551616}', "seed"),
    ("/api/generate", b'{"prompt": "th\xff\xfe"}', "not UTF-8"),
    ("/api/generate", b'["the"]', "JSON object"),
    ("/api/generate", b'{"prompt": "the"', "not valid JSON"),
    ("/api/next-char", b'{"text": "the", "k": true}', "k"),
    ("/api/generate", b"[" * 50_000 + b"]" * 50_000, "nests too deeply"),  # 100 KB: under the size cap
    ("/api/inspect/attention", b"[" * 50_000 + b"]" * 50_000, "nests too deeply"),
])
def test_every_bad_request_is_400_with_one_error(server, path, body, fragment):
    status, headers, payload = answer(send(server, path, body, {"Content-Type": "application/json"}))
    assert status == 400 and headers["content-type"] == "application/json", (status, payload)
    assert list(json.loads(payload)) == ["error"] and fragment in json.loads(payload)["error"], payload


def test_a_huge_body_is_refused_before_it_is_sent(server):
    sock = socket.create_connection(("127.0.0.1", server), timeout=10)
    sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" + b"{" * 1000)
    status, _, payload = answer(sock)  # 100 MB announced, 1 KB sent: the answer cannot wait for the rest
    assert status == 413 and "larger than" in json.loads(payload)["error"]


def test_45_long_generations_leave_page_and_info_responsive_and_drops_stop_them(server):
    began = time.monotonic()
    status, _, _ = answer(send(server, "/api/generate", LONG))
    alone = time.monotonic() - began  # one 2000-token generation with the server to itself
    assert status == 200
    socks = [send(server, "/api/generate", LONG) for _ in range(45)]
    deadline = time.monotonic() + 30
    while info(server) != {"running": 2, "waiting": 4, "max_running": 2, "max_waiting": 4}:
        assert time.monotonic() < deadline, info(server)
    for path in ["/api/info", "/", "/api/info"]:
        t0 = time.monotonic()
        urllib.request.urlopen(f"http://127.0.0.1:{server}{path}", timeout=30).read()
        print(path, f"{time.monotonic() - t0:.3f} s")
        assert time.monotonic() - t0 < 1.0, (path, time.monotonic() - t0)
    busy = []
    for sock in socks:  # the 39 beyond 2 running + 4 waiting were answered 503 at once
        sock.settimeout(0.2)
        try:
            head = sock.recv(4096)
        except TimeoutError:
            continue
        busy.append(head)
    assert len(busy) == 39 and all(h.startswith(b"HTTP/1.1 503") and b"retry-after: 2" in h.lower() for h in busy)
    for sock in socks:
        sock.close()  # six clients give up: their generations must stop, not run 3 x `alone` seconds
    drained = wait_idle(server, timeout=60)
    print(f"alone {alone:.2f} s, drained {drained:.2f} s")
    assert drained < max(alone, 0.5), (drained, alone)


def test_a_dropped_stream_stops_its_generation(server):
    body = json.dumps({"prompt": "the ", "max_new_tokens": 2000, "stream": True}).encode()
    sock = send(server, "/api/generate", body, receive_buffer=1024)  # unread, the stream stalls: still running
    first = sock.recv(4096)
    assert first.startswith(b"HTTP/1.1 200") and re.search(rb"text/event-stream", first)
    # The answer's head can come before a worker thread picks the generation up (waiting, then running).
    deadline = time.monotonic() + 5
    while info(server)["running"] != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    generations = info(server)
    assert (generations["running"], generations["waiting"]) == (1, 0), generations
    sock.close()
    wait_idle(server, timeout=5)


def test_a_body_that_trickles_is_refused_with_408():
    """uvicorn waits for a body forever; the middleware gives it ``timeout_s`` in all (here 0.2 s, the
    server's default is 10 s), then answers 408 without calling the app. Driven as ASGI, in-process."""
    import asyncio

    from tinylm.serve.limits import BodyLimit

    called, sent = [], []

    async def app(scope, receive, send):
        called.append(scope["path"])

    async def trickle():  # one byte every 50 ms, never the last
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"{", "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/generate", "headers": [(b"content-length", b"1000")]}
    began = time.monotonic()
    asyncio.run(BodyLimit(app, timeout_s=0.2)(scope, trickle, send))
    assert time.monotonic() - began < 2 and called == []
    assert sent[0]["status"] == 408 and "within 0.2 s" in json.loads(sent[1]["body"])["error"]
