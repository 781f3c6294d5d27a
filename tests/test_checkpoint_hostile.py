"""Hostile or unlucky checkpoints and run directories (issue 17): one-line errors, no huge allocations.

Every case is a checkpoint that ``torch.load(weights_only=True)`` accepts (or refuses) but that
tinylm did not write: a config asking for 51 GB, missing keys, wrong types, mismatched weights.
The disk-full case runs twice: on a real 256 KB tmpfs (needs root to mount, skipped otherwise)
and with ENOSPC simulated in-process by a file whose writes fail once the checkpoint is large.
"""

import errno
import os
import re
import resource
import subprocess
import sys

import pytest
import torch

from conftest import TINY, run_cli
from tinylm.cli import main
from tinylm.config import load_config
from tinylm.errors import CheckpointError
from tinylm.presets import PRESETS
from tinylm.training.run import train_run
from tinylm.training.rundir import RunDir, load_run, save_checkpoint

TEXT = "the quick brown fox jumps over the lazy dog. " * 60
SETS = [arg for item in TINY + ["max_iters=4", "eval_interval=2"] for arg in ("--set", item)]


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory):
    text = tmp_path_factory.mktemp("text") / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    cfg = load_config(overrides=TINY + ["max_iters=2", "eval_interval=2", f"data={text}"])
    run = tmp_path_factory.mktemp("runs") / "good"
    train_run(cfg, run, progress=False, log=lambda _: None)
    return torch.load(run / "ckpt.pt", weights_only=True)


def write_run(tmp_path, payload):
    run = tmp_path / "bad"
    save_checkpoint(run / "ckpt.pt", payload)
    return run


def edited(ckpt, **changes):
    out = {**ckpt, "config": {k: dict(v) for k, v in ckpt["config"].items()}}
    for key, value in changes.items():
        section = "model" if key in out["config"]["model"] else "train"
        out["config"][section][key] = value
    return out


def test_a_checkpoint_asking_for_51_gb_is_refused_before_allocating(good_ckpt, tmp_path):
    run = write_run(tmp_path, edited(good_ckpt, n_embed=65536))
    limit = 6 * 2**30  # address space: torch fits, a 51 GB model does not

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run([sys.executable, "-m", "tinylm", "sample", "--run", str(run), "--max-new-tokens", "3"],
                          capture_output=True, text=True, timeout=120, preexec_fn=cap_memory, env=os.environ)
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr.count("\n") == 1 and "shape" in done.stderr


@pytest.mark.parametrize("make, fragment", [
    (lambda c: [c["model"]], "holds a list"),
    (lambda c: {k: v for k, v in c.items() if k != "config"}, "has no config"),
    (lambda c: {k: v for k, v in c.items() if k != "tokenizer"}, "has no tokenizer"),
    (lambda c: {**c, "config": "n_embed=32"}, "config of type str"),
    (lambda c: edited(c, n_embed="32"), "must be int"),
    (lambda c: {**c, "tokenizer": {"chars": "abc"}}, "tokenizer character list"),
    (lambda c: {**c, "tokenizer": {"chars": [1, 2]}}, "single characters"),
    (lambda c: {**c, "model": {}}, "no model weights"),
    (lambda c: {**c, "model": {"w": [1.0]}}, "not name -> tensor"),
    (lambda c: {**c, "tokenizer": {"chars": c["tokenizer"]["chars"] + ["~"]}}, "does the tokenizer match"),
    (lambda c: edited(c, n_layer=1), "unexpected"),
    (lambda c: edited(c, block_size=1 << 30), "above the limit"),
    (lambda c: {**c, "step": "abc"}, "step that is not a non-negative integer (str)"),
    (lambda c: {**c, "step": -1}, "step that is not"),
    (lambda c: {**c, "model": {**c["model"], "head.weight": c["model"]["head.weight"].long()}}, "torch.int64"),
    (lambda c: {**c, "model": {**c["model"], "ln_f.weight": c["model"]["ln_f.weight"] > 0}}, "torch.bool"),
    (lambda c: {**c, "model": {**c["model"], "head.weight": c["model"]["head.weight"].to(torch.complex64)}},
     "not floating point"),
    (lambda c: {**c, "model": {**c["model"], "head.weight": c["model"]["head.weight"] * float("nan")}},
     "NaN or infinite (head.weight)"),
    (lambda c: edited(c, learning_rate=float("inf")), "must be a finite number"),
])
def test_malformed_checkpoints_are_one_line_errors(good_ckpt, tmp_path, make, fragment):
    run = write_run(tmp_path, make(good_ckpt))
    with pytest.raises(CheckpointError, match="checkpoint .*") as info:
        load_run(run)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_malformed_checkpoint_from_the_cli_exits_2(good_ckpt, tmp_path, capsys):
    run = write_run(tmp_path, {**good_ckpt, "model": {}})
    assert main(["eval", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error: checkpoint") and err.count("\n") == 1


@pytest.mark.parametrize("make", [
    lambda c: {k: v for k, v in c.items() if k != "optimizer"},
    lambda c: {**c, "optimizer": [1]},
    lambda c: {**c, "rng": [1, 2]},
    lambda c: {**c, "rng": {**c["rng"], "loader": "x"}},
    lambda c: {**c, "metrics": 5},
    lambda c: {**c, "train_weights": "foo"},
    lambda c: {**c, "train_weights": {"x": torch.zeros(1)}},
    lambda c: {**c, "optimizer": {"state": {}, "param_groups": "x"}},
])
def test_resume_with_a_malformed_training_state_is_one_line(good_ckpt, tmp_path, capsys, make):
    run = write_run(tmp_path, make(good_ckpt))
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--sample-chars", "0"]) == 2
    err = capsys.readouterr().err
    assert "cannot be resumed" in err and err.count("\n") == 1, err


def test_resume_with_a_model_shape_override_names_the_override_in_one_line(good_ckpt, tmp_path, capsys):
    run = write_run(tmp_path, good_ckpt)
    assert main(["train", "--resume", "--out", str(run), "--set", "n_embed=64", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "n_embed 32 -> 64" in err and "must keep its model keys" in err and err.count("\n") == 1, err


def test_eval_of_a_checkpoint_without_a_step_reports_step_0(good_ckpt, tmp_path, capsys):
    run = write_run(tmp_path, {k: v for k, v in good_ckpt.items() if k != "step"})
    text = _text(tmp_path)
    assert main(["eval", "--run", str(run), "--data", str(text), "--device", "cpu"]) == 0
    assert "step 0)" in capsys.readouterr().out


class Unwelcome:
    """Any class outside torch's allow-list: weights_only refuses to rebuild it."""


def test_refused_pickle_says_what_it_holds_not_damaged(good_ckpt, tmp_path):
    run = write_run(tmp_path, {**good_ckpt, "extra": Unwelcome()})
    with pytest.raises(CheckpointError, match="will not unpickle") as info:
        load_run(run)
    assert "Unwelcome" in str(info.value) and "damaged" not in str(info.value)


def _text(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _assert_disk_full(rc, err, out):
    assert rc == 2 and err.count("\n") == 1, err
    need = float(re.search(r"needs about ([\d.]+) MB", err).group(1))
    assert "disk full" in err and 0.34 <= need <= 0.5, err  # the checkpoint with Adam state is 0.343 MB
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] == 0  # the previous one, intact
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_disk_full_on_a_real_tmpfs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        done = run_cli("train", *SETS, "--data", str(_text(tmp_path)), "--out", str(mount / "r"), "--quiet",
                       "--device", "cpu", "--sample-chars", "0")
        _assert_disk_full(done.returncode, done.stderr, mount / "r")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_disk_full_simulated_in_process(tmp_path, monkeypatch, capsys):
    real_fdopen = os.fdopen

    class FullDisk:
        """A file that refuses writes past 150 KB: the step-0 checkpoint fits, the next (with Adam state) not."""

        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 150_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    monkeypatch.setattr("tinylm.atomic.os.fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    out = tmp_path / "r"
    rc = main(["train", *SETS, "--data", str(_text(tmp_path)), "--out", str(out), "--quiet", "--device", "cpu",
               "--sample-chars", "0"])
    _assert_disk_full(rc, capsys.readouterr().err, out)


def test_stale_temp_files_are_removed_by_the_writer_not_by_readers(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", *SETS, "--data", str(_text(tmp_path)), "--out", str(out), "--quiet",
                 "--sample-chars", "0"]) == 0
    stale = [out / ".ckpt.pt.k1ll3d.tmp", out / ".metrics.jsonl.x.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    assert main(["sample", "--run", str(out), "--max-new-tokens", "2"]) == 0
    assert all(p.exists() for p in stale)  # a reader must not delete a live write of a training process
    assert main(["train", "--resume", "--out", str(out), "--set", "max_iters=5", "--quiet",
                 "--sample-chars", "0"]) == 0
    assert not any(p.exists() for p in stale)
    assert not RunDir(out).remove_stale_temps()


def test_plot_skips_truncated_and_non_utf8_metrics_lines(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    good = ['{"step": 0, "train_perplexity": 9.0, "val_perplexity": 9.5}',
            '{"step": 10, "train_perplexity": 5.0, "val_perplexity": 5.5}']
    (run / "metrics.jsonl").write_bytes("\n".join(good).encode() + b'\n{"step": \xff\xfe 20}\n[1]\n{"step": 3')
    messages = []
    assert [m["step"] for m in RunDir(run).read_metrics(warn=messages.append)] == [0, 10]
    assert len(messages) == 1 and "skipped 3" in messages[0] and "line 3, 4, 5" in messages[0]
    done = run_cli("plot", str(run), "--out", str(tmp_path / "c.png"))
    assert done.returncode == 0 and (tmp_path / "c.png").is_file(), done.stderr
    assert "warning: skipped 3" in done.stderr


def test_one_repeated_character_trains_past_step_0(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("a" * 2000, encoding="utf-8")
    cfg = load_config(overrides=TINY + ["max_iters=4", "eval_interval=2", f"data={text}"])
    result = train_run(cfg, None, progress=False, log=lambda _: None)
    assert result.trainer.step == 4 and result.trainer.metrics[0]["val_loss"] == 0.0


@pytest.mark.parametrize("args, fragment", [(["--temperature", "nan"], "temperature"),
                                            (["--temperature", "1e-40"], "temperature"),
                                            (["--seed", str(2**64)], "seed")])
def test_sample_options_are_one_line_errors(good_ckpt, tmp_path, capsys, args, fragment):
    run = write_run(tmp_path, good_ckpt)
    assert main(["sample", "--run", str(run), "--max-new-tokens", "3", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error:") and fragment in err and err.count("\n") == 1


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_rough_size_guard_never_refuses_a_real_model(preset):
    from tinylm.model import build_model
    from tinylm.training.ckpt_checks import rough_parameter_count

    cfg = load_config(preset=preset)
    real = sum(t.numel() for t in build_model(cfg.model, 65).state_dict().values())
    assert real / 2 <= rough_parameter_count(cfg, 65) <= 2 * real + 1_000_000
