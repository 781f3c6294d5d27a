"""``tinylm serve`` under load: do the page and /api/info still answer while long generations run?

    tinylm serve --run runs/a1 --port 8000 &            # any server, any version
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --requests 45 --tokens 2000

First one generation alone (its seconds), then ``--requests`` long non-streaming generations at once
over raw sockets; while they are in flight, the seconds /api/info and / take (3 tries each, the
worst shown); then how many were answered 503 right away. Finally every client hangs up and, where
the server reports its generations in /api/info, the seconds until none runs. One markdown row.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import time
import urllib.parse
import urllib.request


def send(host: str, port: int, body: bytes) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=600)
    head = (f"POST /api/generate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n")
    sock.sendall(head.encode() + body)
    return sock


def timed_get(url: str, timeout: float) -> float:
    began = time.monotonic()
    try:
        urllib.request.urlopen(url, timeout=timeout).read()
    except OSError:
        return float("inf")
    return time.monotonic() - began


def generations(url: str) -> dict | None:
    with urllib.request.urlopen(url + "/api/info", timeout=60) as response:
        return json.loads(response.read()).get("generations")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=45)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--prompt", default="the ")
    parser.add_argument("--timeout", type=float, default=120, help="give up on one GET after this many seconds")
    args = parser.parse_args()
    where = urllib.parse.urlsplit(args.url)
    body = json.dumps({"prompt": args.prompt, "max_new_tokens": args.tokens}).encode()

    began = time.monotonic()
    with send(where.hostname, where.port, body) as sock:
        while sock.recv(65536):
            pass
    alone = time.monotonic() - began

    socks = [send(where.hostname, where.port, body) for _ in range(args.requests)]
    time.sleep(1.0)  # let the server admit them
    info_s = max(timed_get(args.url + "/api/info", args.timeout) for _ in range(3))
    page_s = max(timed_get(args.url + "/", args.timeout) for _ in range(3))
    ready, _, _ = select.select(socks, [], [], 0.5)
    busy = sum(sock.recv(64).startswith(b"HTTP/1.1 503") for sock in ready)
    for sock in socks:
        sock.close()
    dropped = time.monotonic()
    drain = "n/a (no generation count in /api/info)"
    if generations(args.url) is not None:
        while (g := generations(args.url))["running"] or g["waiting"]:
            time.sleep(0.05)
        drain = f"{time.monotonic() - dropped:.2f}"
    print("| requests | tokens | one alone s | /api/info s | / s | 503 at once | s until idle after hang-up |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.requests} | {args.tokens} | {alone:.2f} | {info_s:.3f} | {page_s:.3f} | {busy} | {drain} |")


if __name__ == "__main__":
    main()
