"""Atomic writes: a Ctrl-C in the middle of a write still leaves the new file whole, then interrupts."""

import os
import signal

import pytest
import torch

from tinylm.atomic import atomic_write, hold_interrupts
from tinylm.training.rundir import save_checkpoint


def test_sigint_mid_write_is_raised_after_the_file_is_in_place(tmp_path):
    path = tmp_path / "out.bin"

    def write_with_interrupt(f):
        f.write(b"first half ")
        os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C right now
        f.write(b"second half")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write_with_interrupt)
    assert path.read_bytes() == b"first half second half"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temp file left behind


def test_sigint_inside_torch_save_leaves_a_loadable_checkpoint(tmp_path, monkeypatch):
    """torch.save's C++ zip writer calls f.write; a KeyboardInterrupt raised there broke the writer
    (a RuntimeError, or an abort from its destructor) instead of giving the clean "interrupted" exit."""
    payload = {"weights": torch.arange(10_000, dtype=torch.float32)}
    real_save = torch.save

    class InterruptOnThirdWrite:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, data):
            self.writes += 1
            if self.writes == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return self.f.write(data)

        def flush(self):
            self.f.flush()

    def save_interrupted(obj, f):
        real_save(obj, InterruptOnThirdWrite(f))

    monkeypatch.setattr(torch, "save", save_interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ckpt.pt", payload)
    assert torch.equal(torch.load(tmp_path / "ckpt.pt", weights_only=True)["weights"], payload["weights"])


def test_hold_interrupts_restores_the_handler_and_stays_quiet_without_a_signal():
    before = signal.getsignal(signal.SIGINT)
    with hold_interrupts():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_writing_where_a_directory_stands_is_one_line_and_leaves_no_temp_file(tmp_path):
    from tinylm.errors import TinyLMError

    (tmp_path / "out.bin").mkdir()
    with pytest.raises(TinyLMError, match="a directory is in its place"):
        atomic_write(tmp_path / "out.bin", lambda f: f.write(b"x"))
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
