"""Random training batches: contiguous windows of a token array, drawn with a seeded generator.

    loader = BatchLoader(train_data, block_size=16, batch_size=32)
    x, y = loader.get_batch()                   # (B, T) inputs and (B, T) targets, y shifted by one
    loader = make_loader(np.memmap("train.bin", np.uint16, "r"), 16, 32)   # a MemmapLoader: same batches
"""

from __future__ import annotations

import os
import weakref

import numpy as np
import torch

from tinylm.errors import DataError


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

    def to(self, device: str | torch.device) -> BatchLoader:
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

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())


class MemmapLoader:
    """``BatchLoader``'s batches from a memory-mapped shard (``tinylm prepare``): no copy of the corpus.

    The window starts are drawn exactly as ``BatchLoader`` draws them on the CPU (same generator, same
    seed), so for one seed both give the same batches; only the B*(T+1) tokens of a batch are read.
    On CUDA each batch goes through pinned memory with a non-blocking copy. ``device`` is where the
    generator lives (the CPU); ``target`` is where batches go.
    """

    def __init__(self, data: np.ndarray, block_size: int, batch_size: int,
                 device: str | torch.device = "cpu", seed: int = 1337, vocab_size: int | None = None):
        if len(data) < block_size + 1:
            raise DataError(f"the shard has {len(data)} tokens but block_size {block_size} needs at least "
                            f"{block_size + 1}; prepare more text or use a smaller block_size")
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.data = data  # (N,) uint16/uint32 memmap
        self.windows = ShardWindows(data, block_size + 1, vocab_size)
        self.target = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> MemmapLoader:
        self.target = torch.device(device)
        return self

    def get_batch(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get_micro_batches(generator=generator)[0]

    def get_micro_batches(self, accum_steps: int = 1, rank: int = 0, world_size: int = 1,
                          generator: torch.Generator | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """As ``BatchLoader.get_micro_batches``: rank r's share of one step's global batch."""
        count = world_size * accum_steps * self.batch_size
        starts = torch.randint(len(self.data) - self.block_size, (count,),
                               generator=generator if generator is not None else self.generator)
        mine = starts.view(world_size, accum_steps, self.batch_size)[rank].numpy()  # (A, B)
        windows = torch.from_numpy(self.windows(mine.reshape(-1)).astype(np.int64)).view(*mine.shape, -1)  # (A,B,T+1)
        if self.target.type == "cuda":
            windows = windows.pin_memory().to(self.target, non_blocking=True)
        elif self.target.type != "cpu":
            windows = windows.to(self.target)
        return [(w[:, :-1], w[:, 1:]) for w in windows]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())


class ShardWindows:
    """``windows(starts)``: the (N, length) token windows of a shard beginning at ``starts`` (N,).

    A whole-file memmap is read with ``os.pread``, not through the mapping: each page touched through
    a mapping stays in the process's RSS together with the ~128 KB the kernel reads around it, so a
    long run on a 2 GB shard would grow to 2 GB of RSS (measured: +8 MB per cpu-small step). Reads go
    through the page cache all the same. Any other array (a slice, plain numpy) is indexed.
    """

    def __init__(self, data: np.ndarray, length: int, vocab_size: int | None = None):
        self.data, self.length, self.vocab_size = data, length, vocab_size
        self.offsets = np.arange(length)  # (length,)
        self.fd = None
        name = getattr(data, "filename", None)
        if name and hasattr(os, "pread") and data.offset + data.nbytes == os.path.getsize(name):
            self.fd = os.open(name, os.O_RDONLY)
            weakref.finalize(self, os.close, self.fd)

    def __call__(self, starts: np.ndarray) -> np.ndarray:
        if self.fd is None:
            out = self.data[starts[:, None] + self.offsets]
        else:
            itemsize, out = self.data.dtype.itemsize, np.empty((len(starts), self.length), self.data.dtype)
            for row, start in zip(out, starts.tolist()):
                blob = os.pread(self.fd, self.length * itemsize, self.data.offset + start * itemsize)
                row[:] = np.frombuffer(blob, self.data.dtype)
        if self.vocab_size is not None and out.size and int(out.max()) >= self.vocab_size:
            # a damaged or foreign shard: one line here instead of an index error deep in the model
            raise DataError(f"token id {int(out.max())} in {getattr(self.data, 'filename', 'the shard')} is outside "
                            f"the vocabulary ({self.vocab_size} tokens); the dataset is damaged: prepare it again")
        return out


def make_loader(data, block_size: int, batch_size: int, device: str | torch.device = "cpu",
                seed: int = 1337, vocab_size: int | None = None) -> BatchLoader | MemmapLoader:
    """A ``MemmapLoader`` for a numpy shard (ids checked against ``vocab_size``), a ``BatchLoader`` for a
    tensor (the notebook's path, encoded here)."""
    if isinstance(data, np.ndarray):
        return MemmapLoader(data, block_size, batch_size, device, seed, vocab_size)
    return BatchLoader(data, block_size, batch_size, device, seed)
