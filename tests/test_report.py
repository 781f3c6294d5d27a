"""The run card (report.md) after `tinylm train` and from `tinylm report`, and the `tinylm runs` table."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from conftest import REPO, TINY
from tinylm.cli import main
from tinylm.config import load_config
from tinylm.evaluate import exact_loss
from tinylm.report import card_value, git_commit, list_runs
from tinylm.training.run import prepare_corpus, train_run
from tinylm.training.rundir import load_run

SETS = [a for kv in [*TINY, "max_iters=12", "eval_interval=5"] for a in ("--set", kv)]


def test_train_writes_a_run_card_whose_numbers_are_the_metrics(small_text, tmp_path, capsys):
    run = tmp_path / "card"
    assert main(["train", "--preset", "attention-1", "--data", str(small_text), "--out", str(run), "--quiet",
                 "--sample-chars", "20", *SETS]) == 0
    printed = capsys.readouterr().out
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first, last = metrics[0], metrics[-1]
    expected = {"last evaluation at step": str(last["step"]), "train loss (estimate)": f"{last['train_loss']:.4f}",
                "val loss (estimate)": f"{last['val_loss']:.4f}", "val perplexity": f"{last['val_perplexity']:.4f}",
                "train perplexity": f"{last['train_perplexity']:.4f}", "steps": "12", "tokens seen": str(12 * 8 * 16),
                "wall time, first to last evaluation (s)": f"{last['elapsed'] - first['elapsed']:.1f}"}
    assert {label: card_value(run, label) for label in expected} == expected
    model, tokenizer, cfg, _ = load_run(run)
    exact = exact_loss(model, prepare_corpus(cfg, tokenizer).val_data, dtype=cfg.train.dtype)
    assert card_value(run, "exact val loss (whole split)") == f"{exact:.4f}"
    assert f"(loss {exact:.4f})" in printed  # the same number train prints
    text = (run / "report.md").read_text()
    assert "Preset: `attention-1`" in text and "- `max_iters`: 4001 -> 12" in text and "- `n_layer`: 1 -> 2" in text
    assert text.count("```text") == 2 and "![loss curve](loss.png)" in text
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert card_value(run, "torch") and card_value(run, "CPUs") and card_value(run, "tinylm commit") == git_commit()


def test_git_commit_is_the_checkout_head_and_survives_no_git(monkeypatch):
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    if head:
        assert git_commit().split("+")[0] == head
    monkeypatch.setenv("PATH", "")
    assert git_commit() == "unknown (git not available)"


def test_report_command_names_the_closest_preset_and_rewrites_the_card(small_text, tmp_path, capsys):
    cfg = load_config("attention-1", overrides=[*TINY, f"data={small_text}", "max_iters=6", "eval_interval=5"])
    train_run(cfg, tmp_path / "r", progress=False, log=lambda _: None)
    assert main(["report", "--run", str(tmp_path / "r"), "--sample-chars", "30", "--device", "cpu"]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "Preset: `attention-1`" in text
    assert [len(s) for s in re.findall(r"```text\n(.*?)\n```", text, re.DOTALL)] == [30, 30]
    assert main(["report", "--run", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err


@pytest.mark.slow
def test_runs_lists_three_runs_newest_first_or_by_val_loss(small_text, tmp_path, capsys):
    for name, iters in (("a", 6), ("b", 40), ("c", 12)):  # trained in this order: c is the newest
        cfg = load_config(overrides=[*TINY, f"data={small_text}", f"max_iters={iters}", "eval_interval=5",
                                     "learning_rate=1e-2"])
        train_run(cfg, tmp_path / "runs" / name, progress=False, log=lambda _: None)
    (tmp_path / "runs" / "not-a-run").mkdir()
    assert [row["name"] for row in list_runs(tmp_path / "runs")] == ["c", "b", "a"]
    assert [row["name"] for row in list_runs(tmp_path / "runs", "val")] == ["b", "c", "a"]  # longest run, lowest loss
    assert main(["runs", str(tmp_path / "runs"), "--sort", "val"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "preset", "step", "val", "loss", "exact", "val", "wall", "date"]
    assert [line.split()[0] for line in lines[1:]] == ["b", "c", "a"] and lines[1].split()[2] == "39"
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
