import pytest
import torch

from conftest import TINY
from tinylm.config import load_config
from tinylm.errors import CheckpointError
from tinylm.training.run import train_run
from tinylm.training.rundir import clean_state_dict, load_checkpoint, load_run, save_checkpoint


@pytest.fixture
def tiny_run(tmp_path, small_text):
    cfg = load_config(overrides=TINY + ["max_iters=20", "eval_interval=10", f"data={small_text}"])
    result = train_run(cfg, tmp_path / "run", progress=False, log=lambda _: None)
    return tmp_path / "run", result


def test_save_then_load_gives_identical_logits(tiny_run):
    run_dir, result = tiny_run
    model, tokenizer, cfg, ckpt = load_run(run_dir)
    trained = result.trainer.model.eval()
    x = torch.randint(0, tokenizer.vocab_size, (2, cfg.model.block_size))
    assert torch.equal(model(x)[0], trained(x)[0])
    assert ckpt["step"] == 20 and len(ckpt["metrics"]) == 3  # evals at steps 0, 10, 19


def test_run_directory_holds_everything_needed(tiny_run):
    run_dir, _ = tiny_run
    assert {p.name for p in run_dir.iterdir()} == {"ckpt.pt", "config.json", "tokenizer.json", "metrics.jsonl"}
    ckpt = load_checkpoint(run_dir / "ckpt.pt")
    assert {"config", "tokenizer", "model", "optimizer", "step", "rng", "metrics"} <= ckpt.keys()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_compiled_models_checkpoint_loads(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    ckpt = load_checkpoint(run_dir / "ckpt.pt")
    ckpt["model"] = {"_orig_mod." + k: v for k, v in ckpt["model"].items()}
    save_checkpoint(run_dir / "ckpt.pt", ckpt)
    model, _, _, _ = load_run(run_dir)
    assert clean_state_dict(ckpt["model"]).keys() == model.state_dict().keys()


def test_truncated_checkpoint_is_a_clear_error(tiny_run):
    run_dir, _ = tiny_run
    blob = (run_dir / "ckpt.pt").read_bytes()
    (run_dir / "ckpt.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_run(run_dir)


def test_missing_run_directory_and_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="run directory not found"):
        load_run(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_run(tmp_path)
