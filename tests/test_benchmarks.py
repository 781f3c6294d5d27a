"""The benchmark scripts run end to end and print measured rows (tiny configs, a few steps, one thread).

Speed itself is never asserted here: the scripts print ratios measured side by side, and
benchmarks/RESULTS.md keeps them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO, TINY

SETS = [arg for item in TINY + ["threads=1"] for arg in ("--set", item)]

# A stand-in with nanoGPT's interface (model.py: GPTConfig, GPT(config)(idx, targets) -> (logits,
# loss), configure_optimizers), because nanoGPT itself is not vendored: it checks our side of the
# --nanogpt plumbing, not nanoGPT.
NANOGPT_STAND_IN = textwrap.dedent("""
    from dataclasses import dataclass
    import torch
    from torch.nn import functional as F

    @dataclass
    class GPTConfig:
        block_size: int = 16
        vocab_size: int = 65
        n_layer: int = 1
        n_head: int = 1
        n_embd: int = 8
        dropout: float = 0.0
        bias: bool = True

    class GPT(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.emb = torch.nn.Embedding(config.vocab_size, config.vocab_size)

        def forward(self, idx, targets=None):
            logits = self.emb(idx)
            return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

        def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
            return torch.optim.AdamW(self.parameters(), lr=learning_rate, betas=betas, weight_decay=weight_decay)
""")


def run_script(name: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *args], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_eval_speed_times_both_ways_and_they_estimate_the_same(shakespeare):
    out = run_script("eval_speed.py", "--preset", "cpu-small", "--rounds", "1", *SETS)
    rows = [line.split("|") for line in out.splitlines() if line.startswith(("| one", "| joined"))]
    assert len(rows) == 2 and rows[0][3] == rows[1][3]  # the same windows: the same estimate
    assert all(float(row[2]) > 0 for row in rows)


def test_profile_step_splits_a_step_into_busy_time_and_top_ops(shakespeare):
    out = run_script("profile_step.py", "--steps", "2", "--warmup", "1", "--top", "3", *SETS)
    wall, busy = (float(out.split(word)[1].split()[0]) for word in ("wall ", "ops busy "))
    assert 0 < busy <= wall * 1.05  # one thread: the ops' own time fits inside the wall time
    table = out[out.index("| op |"):].splitlines()[2:]
    rows = [line.split("|") for line in table if line.startswith("| ")]
    assert len(rows) == 3 and float(rows[0][2]) >= float(rows[-1][2]) > 0  # largest first
    assert "| aten::mm |" in out


def test_speed_prints_one_row_per_path_with_a_nanogpt_row(shakespeare, tmp_path):
    (tmp_path / "model.py").write_text(NANOGPT_STAND_IN)
    out = run_script("speed.py", "--iters", "2", "--chunk", "1", "--warmup", "1", "--nanogpt", str(tmp_path), *SETS)
    rows = [line.split("|")[3].strip() for line in out.splitlines() if line.startswith("| cpu-small")]
    assert rows[:2] == ["textbook", "nanoGPT"] and rows[2].startswith("tinylm eager") and len(rows) == 4
    assert all(float(line.split("|")[4]) > 0 for line in out.splitlines() if line.startswith("| cpu-small"))


def test_budget_trains_the_asked_steps_and_scores_the_full_val_split(shakespeare):
    out = run_script("budget.py", "--steps", "3", "--warmdown-frac", "0.5", *SETS)
    row = json.loads(out.strip().splitlines()[-1])
    assert row["steps"] == 3 and row["tokens"] == 3 * 8 * 16 and 0 < row["val_loss"] < 6


def test_ensemble_scores_each_member_and_the_ensemble_so_far(shakespeare):
    out = run_script("ensemble.py", "--preset", "cpu-speedrun", "--members", "2", "--member-steps", "3", *SETS)
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert [(cells[2].strip(), cells[3].strip()) for cells in rows] == [("1337", "3"), ("2337", "3")]
    members = [float(cells[6]) for cells in rows]
    assert float(rows[0][7]) == members[0]  # an ensemble of one is its member
    assert float(rows[1][7]) <= sum(members) / 2 + 1e-4  # -log of a mean probability <= the mean of -logs


def test_speedrun_prints_each_seed_and_the_median(shakespeare):
    out = run_script("speedrun.py", "--seeds", "1", "--set", "max_iters=3", "--set", "lr_decay_iters=3",
                     "--set", "warmdown_iters=1", "--set", "warmup_iters=1", *SETS)
    seed_row = next(line for line in out.splitlines() if line.startswith("| 1 |"))
    assert seed_row.split("|")[2].strip() == "3"  # steps
    assert any(line.startswith("| median |") for line in out.splitlines())


def test_speedrun_members_train_back_to_back_and_score_their_ensemble(shakespeare):
    out = run_script("speedrun.py", "--seeds", "1", "--members", "2", "--set", "max_iters=3", "--set",
                     "lr_decay_iters=3", "--set", "warmup_iters=1", *SETS)
    seed_row = next(line for line in out.splitlines() if line.startswith("| 1 |")).split("|")
    members = next(line for line in out.splitlines() if line.startswith("members of seed 1:"))
    losses = [float(x) for x in members.split("loss")[1].split("/")]
    assert seed_row[2].strip() == "6" and len(losses) == 2  # steps of both members
    assert float(seed_row[7]) <= sum(losses) / 2 + 1e-4  # the ensemble's loss, not a member's


def test_compress_trains_then_prints_both_tables(small_text, tmp_path):
    sets = [arg for item in TINY + ["max_iters=10", "eval_interval=10", f"data={small_text}"]
            for arg in ("--set", item)]
    second = tmp_path / "second.txt"
    second.write_text("Not Shakespeare: λ ☃ and some code = [1, 2].\n" * 5, encoding="utf-8")
    out = run_script("compress.py", "--out", str(tmp_path / "run"), *sets, "--second", str(second), "--format-1")
    assert "| tinylm |" in out and "| model's exact val loss |" in out and "second.txt" in out
    assert out.count("| tinylm --adapt") == 2 and out.count("| tinylm, format 1") == 2
@pytest.mark.slow
def test_gpu_report_smoke_runs_every_section_and_writes_the_report(shakespeare, tmp_path):
    (tmp_path / "model.py").write_text(NANOGPT_STAND_IN)
    out = run_script("gpu_report.py", "--smoke", "--out", str(tmp_path / "report.md"), "--nanogpt", str(tmp_path))
    report = (tmp_path / "report.md").read_text()
    for title in ("## Speedrun", "## Best val in 5 minutes", "## Training speed", "## Sampling"):
        assert title in report and title in out
    rows = [line for line in report.splitlines() if line.startswith("| 20")]
    assert len(rows) == 1 + 2 + 3 + 4  # speedrun, 2 ensemble members, 3 speed paths (nanoGPT first), 4 sampling
    assert "nanoGPT" in rows[3] and all("cpu (" in row for row in rows)
    assert float(rows[0].split("|")[9]) < 6  # the speedrun's full val loss is a real loss
    assert [row.split("|")[5].strip() for row in rows[1:3]] == ["1337", "2337"]  # the ensemble's member seeds
    batch_one = [row.split("|") for row in rows[6:] if row.split("|")[4].strip() == "1"]
    assert len(batch_one) == 2 and all(float(cells[9].replace(",", "")) > 0 for cells in batch_one)  # compiled


def test_gpu_report_runs_only_the_sections_asked_for(shakespeare, tmp_path):
    out = run_script("gpu_report.py", "--smoke", "--sections", "speedrun", "--out", str(tmp_path / "report.md"))
    report = (tmp_path / "report.md").read_text()
    assert "## Speedrun" in report and "## Sampling" not in report and "## Training speed" not in out
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_report.py"), "--sections", "speedrun,warp"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--sections warp: choose from speedrun,five-min,speed,sampling" in bad.stderr


@pytest.mark.slow
def test_speedrun_track_judges_target_and_budget_beside_nanogpts_recipe(shakespeare, tmp_path):
    (tmp_path / "model.py").write_text(NANOGPT_STAND_IN)
    out = run_script("speedrun.py", "--track", "60s", "--seeds", "1", "--nanogpt", str(tmp_path),
                     "--set", "max_iters=3", "--set", "lr_decay_iters=3", "--set", "warmdown_iters=1",
                     "--set", "warmup_iters=1", *SETS)
    assert "full val loss <= 1.65 within 60 s" in out
    ours = next(line for line in out.splitlines() if line.startswith("| 1 |")).split("|")
    assert ours[2].strip() == "3" and ours[8].strip() == "no" and ours[9].strip() in ("yes", "no")
    nano = next(line for line in out.splitlines() if line.startswith("| nanoGPT 1 |")).split("|")
    assert 0 < int(nano[2].replace(",", "")) <= 2000 and 0 < float(nano[7]) < 6
    assert any(line.startswith("| nanoGPT median |") for line in out.splitlines())


@pytest.mark.slow
def test_prepare_smoke_prints_every_section(shakespeare):
    """prepare.py --smoke: prepare (char/byte/bpe), training RSS on two corpus sizes, loader steps, bpb."""
    out = run_script("prepare.py", "--smoke")
    rows = [line for line in out.splitlines() if line.startswith("| 20")]
    assert sum(" prepare generated text " in r for r in rows) == 3
    assert sum("train cpu-small 2 steps on a prepared" in r and "peak RSS" in r for r in rows) == 2
    assert sum("loader | median" in r for r in rows) == 2
    bpb = [float(r.split("|")[7]) for r in rows if "cpu-small, 2 iters" in r]
    assert len(bpb) == 2 and all(0 < b < 16 for b in bpb)


def test_finetune_prints_the_source_the_finetune_and_a_new_model_on_the_target(shakespeare):
    out = run_script("finetune.py", "--smoke")
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert [row.split("|")[1].strip().split(",")[0] for row in rows[1:]] == ["source", "source", "new cpu-small"]
    assert all(0 < float(row.split("|")[3]) < 9 for row in rows[1:])  # bits per byte of a byte model
