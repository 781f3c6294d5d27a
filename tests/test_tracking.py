"""Opt-in experiment tracking, read back with each tracker's own reader (all offline).

TensorBoard: ``EventAccumulator`` on the event file. W&B: ``WANDB_MODE=offline`` and wandb's own
``wandb leet inspect --json`` on the run's ``.wandb`` log. trackio: its local SQLite store under
``TRACKIO_DIR``, read by ``trackio.sqlite_storage.SQLiteStorage`` in a fresh interpreter (trackio
fixes its directory at import).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import TINY
from tinylm.cli import main
from tinylm.config import load_config
from tinylm.errors import TinyLMError
from tinylm.training import tracking
from tinylm.training.run import train_run

STEPS = ["max_iters=12", "eval_interval=5", "grad_clip=1.0"]


def metrics_of(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_event_file_holds_every_scalar(small_text, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(overrides=[*TINY, f"data={small_text}", *STEPS, "track=tensorboard"])
    result = train_run(cfg, tmp_path / "run", progress=False, log=lambda _: None)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    scalar = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert [s for s, _ in scalar["train/loss"]] == list(range(1, 13))
    assert [v for _, v in scalar["train/loss"]] == pytest.approx(result.trainer.train_losses)
    metrics = metrics_of(tmp_path / "run")
    assert scalar["val/loss"] == [(m["step"], pytest.approx(m["val_loss"])) for m in metrics]
    assert [v for _, v in scalar["val/perplexity"]] == pytest.approx([m["val_perplexity"] for m in metrics])
    assert [v for _, v in scalar["lr/group_0"]] == pytest.approx([m["lr"] for m in metrics])
    assert [s for s, _ in scalar["train/grad_norm"]] == [5, 10, 11]  # from step 1 on: clipping measures it
    assert all(v > 0 for _, v in scalar["speed/tokens_per_s"])
    bits_per_token = [v for _, v in scalar["val/bits_per_token"]]  # the loss in bits: per token, not per char
    assert bits_per_token == pytest.approx([m["val_loss"] / math.log(2) for m in metrics], rel=1e-5)
    assert [v for _, v in scalar["val/bits_per_byte"]] == pytest.approx([m["val_bpb"] for m in metrics], rel=1e-5)
    assert "config/text_summary" in events.Tags()["tensors"]


def test_unknown_tracker_and_missing_package_are_one_line(small_text, tmp_path, capsys, monkeypatch):
    code = main(["train", "--data", str(small_text), "--set", "track=tensorboard,mlflow", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown tracker 'mlflow'" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "wandb", None)  # what `import wandb` meets when it is not installed
    with pytest.raises(TinyLMError, match=r"track=wandb needs the wandb package; install it with pip install -e"):
        tracking.require("wandb")
    code = main(["train", "--data", str(small_text), "--set", "track=wandb", "--out", str(tmp_path / "b"),
                 "--quiet", *[a for kv in TINY for a in ("--set", kv)], "--set", "max_iters=2"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install -e '.[track]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()  # refused before the run directory is made


TRACKIO_READ = """
import json, sys
from trackio.sqlite_storage import SQLiteStorage
logs = SQLiteStorage.get_logs("tinylm", sys.argv[1])
print(json.dumps([{k: v for k, v in row.items() if isinstance(v, (int, float))} for row in logs]))
"""


@pytest.mark.slow
def test_wandb_offline_and_trackio_local_store(small_text, tmp_path, cli):
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "TRACKIO_DIR": str(tmp_path / "trackio")}
    done = cli("train", "--data", str(small_text), "--out", str(tmp_path / "run"), "--quiet", "--sample-chars", "0",
               *[a for kv in [*TINY, *STEPS, "track=wandb,trackio"] for a in ("--set", kv)], env=env)
    assert done.returncode == 0, done.stderr
    metrics = metrics_of(tmp_path / "run")
    wandb_file = next((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    inspect = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", "--", str(wandb_file)],
                             capture_output=True, text=True, timeout=120, env={**os.environ, **env}, check=True)
    rows = [json.loads(line) for line in inspect.stdout.splitlines() if line.startswith("{")]
    history = [r["history"]["item"] for r in rows if r.get("type") == "history"]
    val = [h for h in history if "val/loss" in h]
    assert [h["_step"] for h in val] == [m["step"] for m in metrics]
    assert [h["val/loss"] for h in val] == pytest.approx([m["val_loss"] for m in metrics])
    assert len([h for h in history if "train/loss" in h]) == 12
    read = subprocess.run([sys.executable, "-c", TRACKIO_READ, "run"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env}, check=True)
    logs = json.loads(read.stdout.strip().splitlines()[-1])
    trackio_val = [row for row in logs if "val/loss" in row]
    assert [row["val/loss"] for row in trackio_val] == pytest.approx([m["val_loss"] for m in metrics])
    assert len([row for row in logs if "train/loss" in row]) == 12
