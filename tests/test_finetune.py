"""Fine-tuning (``tinylm train --init-from RUN``): a new run whose step 0 holds the source's weights and
tokenizer, with its own data, optimizer and schedule; refusals in one line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import TINY
from tinylm.cli import main
from tinylm.config import load_config
from tinylm.training.finetune import finetune_config
from tinylm.training.run import train_run
from tinylm.training.rundir import load_run

QUIET = {"progress": False, "log": lambda _: None}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny run on pangrams, and a second text that uses only some of its characters."""
    root = tmp_path_factory.mktemp("finetune")
    (root / "a.txt").write_text("the quick brown fox jumps over the lazy dog. " * 60, encoding="utf-8")
    (root / "b.txt").write_text("the dog was lazy. the fox was quick. " * 60, encoding="utf-8")
    cfg = load_config(overrides=TINY + [f"data={root / 'a.txt'}", "max_iters=12", "eval_interval=6"])
    train_run(cfg, root / "src", **QUIET)
    return root


def weights_of(run):
    return load_run(run)[0].state_dict()


def test_step_zero_holds_the_source_weights_and_tokenizer_with_fresh_training_keys(source, tmp_path):
    cfg = finetune_config(source / "src", overrides=[f"data={source / 'b.txt'}", "max_iters=1",
                                                     "learning_rate=1e-12", "eval_iters=2"])
    assert cfg.model == load_run(source / "src")[2].model and cfg.train.learning_rate == 1e-12
    result = train_run(cfg, tmp_path / "ft", **QUIET)
    before, after = weights_of(source / "src"), weights_of(tmp_path / "ft")
    assert all(torch.allclose(before[k], after[k], atol=1e-9) for k in before)  # one step at lr 1e-12: unmoved
    assert result.corpus.tokenizer.to_dict() == load_run(source / "src")[1].to_dict()  # not b.txt's own vocab
    assert [m["step"] for m in result.trainer.metrics] == [0]  # its own step count, from 0
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())["train"]
    assert saved["init_from"] == str(source / "src") and saved["data"] == str(source / "b.txt")


def test_a_finetune_learns_the_new_text_faster_than_a_new_model(source, tmp_path):
    """The point of it: 20 steps from the source beat 20 steps from a random init, on the new text."""
    sets = [f"data={source / 'b.txt'}", "max_iters=20", "eval_interval=20", "eval_iters=8", "learning_rate=1e-3"]
    tuned = train_run(finetune_config(source / "src", overrides=sets), None, **QUIET).final["val_loss"]
    fresh = train_run(load_config(overrides=TINY + sets), None, **QUIET).final["val_loss"]
    assert tuned < fresh - 0.2, (tuned, fresh)


def test_the_data_stays_the_sources_and_dropout_may_change(source):
    cfg = finetune_config(source / "src", overrides=["dropout=0.2"])
    assert cfg.train.data == str(source / "a.txt") and cfg.model.dropout == 0.2


def test_resuming_a_finetune_needs_only_its_own_checkpoint(source, tmp_path):
    copy = tmp_path / "src-copy"
    shutil.copytree(source / "src", copy)
    ft = tmp_path / "ft"
    args = ["train", "--init-from", str(copy), "--data", str(source / "b.txt"), "--set", "max_iters=4",
            "--set", "eval_interval=2", "--out", str(ft), "--quiet", "--sample-chars", "0", "--device", "cpu"]
    assert main(args) == 0
    shutil.rmtree(copy)  # the source is gone: a resume must not read it
    assert main(["train", "--out", str(ft), "--resume", "--set", "max_iters=6", "--quiet", "--sample-chars", "0"]) == 0
    assert load_run(ft)[3]["step"] == 6


@pytest.mark.parametrize("extra, fragments", [
    (["--set", "n_layer=3"], ["n_layer 2 -> 3", "--init-from", "dropout may change"]),
    (["--resume"], ["--init-from starts a new run and --resume continues one"]),
    (["--data", "UNSEEN"], ["has characters this run never saw", "'Z'"]),
])
def test_what_cannot_be_finetuned_is_one_line(source, tmp_path, capsys, extra, fragments):
    unseen = tmp_path / "z.txt"
    unseen.write_text("ZZZ the lazy dog " * 100, encoding="utf-8")
    extra = [str(unseen) if arg == "UNSEEN" else arg for arg in extra]
    assert main(["train", "--init-from", str(source / "src"), "--out", str(tmp_path / "ft"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error:") and err.count("\n") == 1, err
    assert all(fragment in err for fragment in fragments), err
    assert not (tmp_path / "ft" / "ckpt.pt").exists()


def test_an_export_is_a_source_too(source, tmp_path):
    pytest.importorskip("safetensors")
    assert main(["export", "--run", str(source / "src"), "--format", "safetensors", "--out", str(tmp_path / "st")]) == 0
    cfg = finetune_config(tmp_path / "st", overrides=[f"data={source / 'b.txt'}", "max_iters=1",
                                                      "learning_rate=1e-12"])
    train_run(cfg, tmp_path / "ft", **QUIET)
    before, after = weights_of(source / "src"), weights_of(tmp_path / "ft")
    assert all(torch.allclose(before[k], after[k], atol=1e-9) for k in before)
