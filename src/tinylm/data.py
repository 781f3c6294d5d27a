"""Text corpora and random training batches.

    text = load_text()                          # Tiny Shakespeare, downloaded once into the cache
    data = torch.tensor(tok.encode(text))       # (N,) token ids
    train_data, val_data = split(data)          # first 90% / last 10%
    loader = BatchLoader(train_data, block_size=16, batch_size=32)
    x, y = loader.get_batch()                   # (B, T) inputs and (B, T) targets, y shifted by one

The cache directory is ``$TINYLM_DATA_DIR`` (default ``~/.cache/tinylm``). Offline, put the file at
the path the error message names and nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import torch

from tinylm.atomic import atomic_write
from tinylm.errors import DataError

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SIZE = 1_115_394
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def data_dir() -> Path:
    return Path(os.environ.get("TINYLM_DATA_DIR") or Path.home() / ".cache" / "tinylm")


def _problem_with(blob: bytes) -> str | None:
    if len(blob) != TINYSHAKESPEARE_SIZE:
        return f"size {len(blob)} bytes, expected {TINYSHAKESPEARE_SIZE}"
    if hashlib.sha256(blob).hexdigest() != TINYSHAKESPEARE_SHA256:
        return "sha256 does not match"
    return None


def tinyshakespeare_path() -> Path:
    """The verified cache file, downloading it on first use."""
    path = data_dir() / "tinyshakespeare.txt"
    if path.exists():
        problem = _problem_with(path.read_bytes())
        if problem:
            raise DataError(f"cached corpus {path} is damaged ({problem}); delete it to download again")
        return path
    try:
        with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=30) as response:
            blob = response.read()
    except OSError as exc:
        raise DataError(
            f"cannot download Tiny Shakespeare ({exc}); offline, copy input.txt to {path}"
        ) from None
    problem = _problem_with(blob)
    if problem:
        raise DataError(f"downloaded Tiny Shakespeare is wrong ({problem}); copy a good input.txt to {path}")
    atomic_write(path, lambda f: f.write(blob))
    return path


def read_text(path: str | Path) -> str:
    """Read a UTF-8 corpus, refusing missing, empty and non-UTF-8 files with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    blob = path.read_bytes()
    if not blob.strip():
        raise DataError(f"data file {path} is empty; give a UTF-8 text file with some text in it")
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data file {path} is not UTF-8 (bad byte at offset {exc.start}); convert it, e.g. iconv -t utf-8"
        ) from None


def load_text(path: str | Path | None = None) -> str:
    """The text of ``path``, or Tiny Shakespeare when no path is given."""
    return read_text(path if path else tinyshakespeare_path())


def split(data: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``1 - val_fraction`` of the tokens for training, the rest for validation."""
    n_train = int(len(data) * (1 - val_fraction))
    return data[:n_train], data[n_train:]


class BatchLoader:
    """Random contiguous windows of a token array, drawn with a seeded ``torch.Generator``.

    The array and the generator live on ``device`` so batches are made there without a copy
    from the host; ``to(device)`` moves both (the Trainer calls it with the model's device).
    """

    def __init__(self, data: torch.Tensor, block_size: int, batch_size: int,
                 device: str | torch.device = "cpu", seed: int = 1337):
        if len(data) < block_size + 1:
            raise DataError(
                f"text has {len(data)} tokens but block_size {block_size} needs at least {block_size + 1}; "
                "use a longer text or a smaller block_size"
            )
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.data = data.to(device=device, dtype=torch.long)
        self.offsets = torch.arange(block_size + 1, device=self.data.device)  # (T+1,)
        self.generator = torch.Generator(device=self.data.device).manual_seed(seed)

    @property
    def device(self) -> torch.device:
        return self.data.device

    def to(self, device: str | torch.device) -> "BatchLoader":
        if torch.device(device) != self.device:
            state = self.generator.get_state()
            self.data = self.data.to(device)
            self.offsets = self.offsets.to(device)
            self.generator = torch.Generator(device=self.data.device)
            if self.data.device.type == "cpu":
                self.generator.set_state(state)
            else:
                self.generator.manual_seed(self.seed)
        return self

    def get_batch(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: x (B, T) and y (B, T), y shifted one step ahead."""
        return self.get_micro_batches(generator=generator)[0]

    def get_micro_batches(self, accum_steps: int = 1, rank: int = 0, world_size: int = 1,
                          generator: torch.Generator | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's ``accum_steps`` micro-batches of one optimizer step's global batch.

        The starts of all ``world_size * accum_steps * B`` windows are drawn at once from the loader's
        generator (seeded alike on every rank); rank r takes row r of them viewed as (world, accum, B).
        So the global batch and the data order do not depend on how the batch is split, and with one
        rank and one micro-step this is exactly ``get_batch()``.
        """
        count = world_size * accum_steps * self.batch_size
        starts = torch.randint(len(self.data) - self.block_size, (count,), device=self.device,
                               generator=generator if generator is not None else self.generator)
        mine = starts.view(world_size, accum_steps, self.batch_size)[rank]  # (A, B)
        windows = self.data[mine[:, :, None] + self.offsets]  # (A, B, T+1): one gather, no Python loop
        return [(w[:, :-1], w[:, 1:]) for w in windows]  # A pairs of x (B, T), y (B, T)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get_batch()

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())
