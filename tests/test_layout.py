"""The house: imports only point down (import-linter's layers contract in pyproject.toml), and run
directories written by an earlier tinylm still load and give the same logits."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tinylm.training.rundir import load_run

OLD_RUN = Path(__file__).parent / "data" / "run_made_by_v0.1"  # written by tinylm 0.1.0 (commit eaa0c19)


def test_imports_only_point_down():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[lint]')")
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([str(lint_imports)], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_a_run_directory_from_the_old_layout_loads_with_the_same_logits(tmp_path):
    run = shutil.copytree(OLD_RUN, tmp_path / "old")
    expected = json.loads((run / "expected_logits.json").read_text())
    model, tokenizer, cfg, ckpt = load_run(run)
    x = torch.tensor([tokenizer.encode(expected["prompt"])])
    with torch.no_grad():
        logits, _ = model(x)
    torch.testing.assert_close(logits[0], torch.tensor(expected["logits"]), rtol=0, atol=1e-6)
    assert cfg.model.n_embed == 8 and ckpt["step"] == 3


def test_an_old_run_resumes_with_the_new_trainer(tmp_path, cli):
    run = shutil.copytree(OLD_RUN, tmp_path / "old")
    text = tmp_path / "small.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 30)
    done = cli("train", "--out", str(run), "--resume", "--set", "max_iters=5", "--data", str(text),
               "--sample-chars", "0", "--quiet")
    assert done.returncode == 0, done.stderr
    assert torch.load(run / "ckpt.pt", weights_only=True)["step"] == 5
