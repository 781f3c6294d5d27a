"""A bounded load test of the inspector's JSON APIs: N requests, C at a time, to a real `tinylm serve`.

    python benchmarks/inspector_load.py                              # tiny random model, 200 requests, 20 at a time
    python benchmarks/inspector_load.py --set n_layer=6 --set n_embed=384 --set n_heads=6 --set block_size=256
    python benchmarks/inspector_load.py --url http://127.0.0.1:8000  # a server you started (its model)

Without ``--url`` it writes a run directory with seeded random weights (latency does not depend on
what the weights learned), starts ``tinylm serve`` on a free port of 127.0.0.1, and stops it after.
The requests cycle through attention, logit lens, sampling knobs, embeddings and model info; it
prints the latency percentiles per endpoint and overall, the throughput, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TEXT = "the quick brown fox jumps over the lazy dog. "
REQUESTS = [  # (name, path, body or None for GET)
    ("attention", "/api/inspect/attention", {"text": TEXT}),
    ("logit-lens", "/api/inspect/logit-lens", {"text": TEXT, "k": 5}),
    ("sampling", "/api/inspect/sampling", {"text": TEXT, "temperature": 0.8, "top_k": 10}),
    ("embeddings", "/api/inspect/embeddings", None),
    ("model", "/api/inspect/model", None),
]


def one_request(url: str, index: int) -> tuple[str, float, int]:
    """(endpoint name, seconds, HTTP status) of request number ``index``."""
    name, path, body = REQUESTS[index % len(REQUESTS)]
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    return name, time.perf_counter() - began, status


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_load(url: str, total: int = 200, concurrency: int = 20) -> dict:
    """Send ``total`` requests, ``concurrency`` at a time; latency statistics in milliseconds."""
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: one_request(url, i), range(total)))
    wall = time.perf_counter() - began
    stats = {"requests": total, "concurrency": concurrency, "wall_s": wall, "per_s": total / wall,
             "errors": sum(status != 200 for _, _, status in results), "endpoints": {}}
    groups = {"all": [s for _, s, _ in results]}
    for name, seconds, _ in results:
        groups.setdefault(name, []).append(seconds)
    for name, seconds in groups.items():
        stats["endpoints"][name] = {q: 1000 * percentile(seconds, p) for q, p in
                                    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)]}
    return stats


def random_run(path: Path, overrides: list[str]) -> Path:
    import torch

    from tinylm.config import RunConfig, apply_overrides
    from tinylm.data import CharTokenizer
    from tinylm.model import build_model
    from tinylm.training.rundir import RunDir

    cfg = RunConfig()
    apply_overrides(cfg, overrides)
    tok = CharTokenizer.from_text(TEXT + "ABCDEFGHIJKLMNOPQRSTUVWXYZ!?,;:'-\n")
    torch.manual_seed(0)
    model = build_model(cfg.model, tok.vocab_size)
    RunDir(path).start(cfg, tok)
    RunDir(path).save({"config": cfg.to_dict(), "tokenizer": tok.to_dict(), "model": model.state_dict(), "step": 0}, [])
    return path


def start_server(run: Path) -> tuple[str, subprocess.Popen]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tinylm", "serve", "--run", str(run), "--port", str(port),
                             "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/api/inspect/model", timeout=5).read()
            return url, proc
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("the server did not come up")


def print_table(stats: dict) -> None:
    print(f"{stats['requests']} requests, {stats['concurrency']} at a time: {stats['wall_s']:.2f} s, "
          f"{stats['per_s']:.1f} requests/s, {stats['errors']} errors; load {os.getloadavg()[0]:.2f}")
    print("| endpoint | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    for name, row in stats["endpoints"].items():
        print(f"| {name} | {row['p50']:.1f} | {row['p90']:.1f} | {row['p99']:.1f} | {row['max']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an inspector already running (default: start one on a random model)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model shape of the random run")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    if args.url:
        print_table(run_load(args.url, args.requests, args.concurrency))
        return
    shape = dict(item.split("=", 1) for item in ["n_layer=2", "n_embed=32", "n_heads=2", "block_size=16"] + args.set)
    shape = [f"{key}={value}" for key, value in shape.items()]
    with tempfile.TemporaryDirectory() as tmp:
        url, proc = start_server(random_run(Path(tmp) / "run", shape))
        try:
            print("model:", " ".join(shape))
            run_load(url, 20, args.concurrency)  # warm-up: imports, first allocations
            print_table(run_load(url, args.requests, args.concurrency))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
