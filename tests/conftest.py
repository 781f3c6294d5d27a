"""Shared fixtures: the Tiny Shakespeare cache, tiny configs and models, one torch thread, a runner for the real CLI.

The project's data cache (``$TINYLM_DATA_DIR``) points at a temp dir holding a copy of
``../shared/data/tinyshakespeare/input.txt``, so nothing is downloaded. In CI (``CI=true``) a
missing copy fails the Shakespeare tests instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
TINY = ["n_layer=2", "n_embed=32", "n_heads=2", "block_size=16", "batch_size=8", "eval_iters=2"]


def tiny_gpt(**options):
    """A 2-layer, n_embed 32, block 16 transformer over 65 tokens, seeded, in eval mode."""
    import torch

    from tinylm import TransformerLanguageModel

    torch.manual_seed(0)
    # PyTorch's default init gives well-separated logits, so greedy choices are not near-ties.
    model = TransformerLanguageModel(65, n_embed=32, block_size=16, n_layer=2, n_heads=2, init="pytorch", **options)
    return model.eval()


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models are overhead-bound, and on a busy 2-core machine
    two OpenMP threads per process (torchrun gives each rank one) can be many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    """A port nothing listens on: bind to 0 on 127.0.0.1, read it back, release it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("tinylm-cache")
    if SHARED_TEXT.is_file():
        shutil.copyfile(SHARED_TEXT, cache / "tinyshakespeare.txt")
    os.environ["TINYLM_DATA_DIR"] = str(cache)
    return cache


@pytest.fixture
def shakespeare(data_cache) -> str:
    path = data_cache / "tinyshakespeare.txt"
    if not path.is_file():
        message = f"Tiny Shakespeare not found at {SHARED_TEXT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must run the Shakespeare tests)")
        pytest.skip(message)
    return path.read_text(encoding="utf-8")


@pytest.fixture
def small_text(tmp_path) -> Path:
    """A short UTF-8 corpus (a few KB) for fast end-to-end runs."""
    verse = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
             "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\n")
    path = tmp_path / "small.txt"
    path.write_text(verse * 40, encoding="utf-8")
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None):
    """Run ``python -m tinylm ARGS`` in a subprocess, as a user would; returns CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "tinylm", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


@pytest.fixture
def cli():
    return run_cli
