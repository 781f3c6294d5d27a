"""``tinylm export``: each format reloaded through its own library gives tinylm's logits and ids.

Real libraries only: transformers (AutoModelForCausalLM / AutoTokenizer), safetensors (through
``tinylm sample``'s loader) and onnxruntime. Runs are tiny: a random model with perturbed LayerNorms
(so a mapping that drops a norm's weight or bias shows), and one trained for a few steps via the CLI.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY
from tinylm.cli import main
from tinylm.config import load_config
from tinylm.data import CharTokenizer
from tinylm.export import export_run
from tinylm.model import build_model
from tinylm.training.rundir import RunDir, load_run

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


def make_run(path, *overrides: str):
    """A run directory holding a random tiny model; returns (model, tokenizer)."""
    cfg = load_config(overrides=[*TINY, *overrides])
    tokenizer = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    model = build_model(cfg.model, tokenizer.vocab_size)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    run = RunDir(path)
    run.start(cfg, tokenizer)
    run.save({"config": cfg.to_dict(), "tokenizer": tokenizer.to_dict(), "model": model.state_dict(),
              "step": 7, "metrics": []}, [])
    return model.eval(), tokenizer


def tinylm(capsys, *args: str) -> tuple[int, str, str]:
    """The real CLI, in this process (a subprocess per call would spend seconds importing torch)."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def batch(tokenizer):
    return torch.tensor([tokenizer.encode(TEXT[:16]), tokenizer.encode(TEXT[20:36])])  # (2, 16)


@pytest.mark.parametrize("options", [
    [], ["tie_weights=true", "bias=true", "mlp_activation=relu2"],
    ["rope=true"], ["rope=true", "bias=true", "tie_weights=true", "mlp_activation=relu2"],
])
def test_hf_export_loads_in_transformers_with_the_same_logits_and_ids(tmp_path, options):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = make_run(tmp_path / "run", *options)
    export_run(tmp_path / "run", "hf", tmp_path / "hf")
    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf_model).__name__ == ("GPTNeoXForCausalLM" if "rope=true" in options else "GPT2LMHeadModel")
    ids = batch(tokenizer)
    with torch.no_grad():
        diff = (hf_model(ids).logits - model(ids)[0]).abs().max().item()
    assert diff <= 1e-4
    hf_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tokenizer(TEXT)["input_ids"] == tokenizer.encode(TEXT)
    assert hf_tokenizer.decode(tokenizer.encode(TEXT)) == TEXT  # no spaces between characters, " ," kept


def test_safetensors_export_is_a_directory_tinylm_samples_from(tmp_path, capsys):
    from safetensors.torch import load_file

    model, tokenizer = make_run(tmp_path / "run", "tie_weights=true")
    export_run(tmp_path / "run", "safetensors", tmp_path / "st")
    assert {p.name for p in (tmp_path / "st").iterdir()} == {"model.safetensors", "config.json", "tokenizer.json"}
    stored = load_file(tmp_path / "st" / "model.safetensors")
    tied = [name for name in ("token_embedding.weight", "head.weight") if name in stored]
    assert len(tied) == 1 and torch.equal(stored[tied[0]], model.token_embedding.weight)  # the tied matrix, once
    loaded, loaded_tokenizer, _, ckpt = load_run(tmp_path / "st")
    ids = batch(tokenizer)
    assert torch.equal(loaded(ids)[0], model(ids)[0]) and ckpt["step"] == 7
    assert loaded_tokenizer.chars == tokenizer.chars
    code, out, err = tinylm(capsys, "sample", "--run", str(tmp_path / "st"), "--prompt", "All:",
                            "--max-new-tokens", "20", "--device", "cpu")
    assert code == 0 and out.startswith("All:") and len(out) == len("All:") + 20 + 1, err


@pytest.mark.parametrize("options", [
    [], pytest.param(["rope=true", "qk_norm=true", "mlp_activation=relu2"], marks=pytest.mark.slow),
])
def test_onnx_export_runs_in_onnxruntime_with_dynamic_batch_and_sequence(tmp_path, options):
    import onnxruntime

    model, tokenizer = make_run(tmp_path / "run", *options)
    export_run(tmp_path / "run", "onnx", tmp_path / "onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    ids = batch(tokenizer)
    for x in (ids, ids[:1, :5], torch.cat([ids, ids, ids])):  # (2, 16), (1, 5), (6, 16)
        logits = session.run(["logits"], {"input_ids": x.numpy()})[0]
        assert np.abs(logits - model(x)[0].detach().numpy()).max() <= 1e-4


@pytest.mark.slow
def test_a_trained_run_exported_to_hf_scores_what_tinylm_scores(tmp_path, small_text, cli):
    from transformers import AutoModelForCausalLM

    trained = cli("train", "--data", str(small_text), "--out", str(tmp_path / "run"), "--quiet",
                  "--sample-chars", "0", *[a for kv in TINY for a in ("--set", kv)],
                  "--set", "max_iters=20", "--set", "eval_interval=10")
    assert trained.returncode == 0, trained.stderr
    exported = cli("export", "--run", str(tmp_path / "run"), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert exported.returncode == 0, exported.stderr
    model, tokenizer, _, _ = load_run(tmp_path / "run")
    ids = torch.tensor([tokenizer.encode(small_text.read_text()[i:i + 16]) for i in (0, 100, 200)])
    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        hf_loss = hf_model(ids, labels=ids).loss  # HF shifts the labels: next-token loss over 15 positions
        _, tl_loss = model(ids[:, :-1], ids[:, 1:])
    assert abs(hf_loss.item() - tl_loss.item()) <= 1e-5


def test_bad_input_is_one_line_and_leaves_no_directory(tmp_path, capsys):
    make_run(tmp_path / "run", "qk_norm=true")
    cases = [
        (["--run", str(tmp_path / "missing"), "--format", "hf"], "run directory not found"),
        (["--run", str(tmp_path / "run"), "--format", "hf"], "qk_norm=true has no exact transformers"),
        (["--run", str(tmp_path / "run"), "--format", "gguf"], "invalid choice: 'gguf'"),
    ]
    for args, message in cases:
        code, _, err = tinylm(capsys, "export", *args, "--out", str(tmp_path / "out"))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "ckpt.pt").write_bytes((tmp_path / "run" / "ckpt.pt").read_bytes()[:500])
    code, _, err = tinylm(capsys, "export", "--run", str(tmp_path / "broken"), "--format", "safetensors",
                          "--out", str(tmp_path / "out"))
    assert code == 2 and "damaged or truncated" in err and not (tmp_path / "out").exists()


def test_an_existing_out_needs_force(tmp_path, capsys):
    make_run(tmp_path / "run")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    args = ["export", "--run", str(tmp_path / "run"), "--format", "safetensors", "--out", str(tmp_path / "out")]
    code, _, err = tinylm(capsys, *args)
    assert code == 2 and "--force" in err and (tmp_path / "out" / "old.txt").exists()
    assert tinylm(capsys, *args, "--force")[0] == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["config.json", "model.safetensors", "tokenizer.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    code, _, err = tinylm(capsys, "export", "--run", str(tmp_path / "run"), "--format", "onnx",
                          "--out", str(tmp_path), "--force")
    assert code == 2 and "holds) the run" in err and (tmp_path / "run" / "ckpt.pt").exists()


def test_a_safetensors_directory_whose_config_asks_for_a_huge_model_is_refused_before_building(tmp_path, capsys):
    import json

    make_run(tmp_path / "run")
    export_run(tmp_path / "run", "safetensors", tmp_path / "st")
    config = json.loads((tmp_path / "st" / "config.json").read_text())
    config["model"]["n_embed"], config["model"]["n_heads"] = 65536, 1  # ~51 GB if it were built
    (tmp_path / "st" / "config.json").write_text(json.dumps(config))
    code, _, err = tinylm(capsys, "sample", "--run", str(tmp_path / "st"), "--max-new-tokens", "5")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "model.safetensors" in err, err


def test_hf_export_refuses_byte_and_bpe_tokenizers_naming_the_formats_that_work(tmp_path, capsys):
    from tinylm.data import ByteTokenizer

    make_run(tmp_path / "run")
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    cfg = load_config(overrides=TINY)
    torch.manual_seed(0)
    byte_model = build_model(cfg.model, ByteTokenizer().vocab_size)
    RunDir(tmp_path / "bytes").save({**ckpt, "tokenizer": ByteTokenizer().to_dict(), "model": byte_model.state_dict()},
                                    [])
    code, _, err = tinylm(capsys, "export", "--run", str(tmp_path / "bytes"), "--format", "hf",
                          "--out", str(tmp_path / "hf"))
    assert code == 2 and "byte tokenizer" in err and "safetensors or onnx" in err and err.count("\n") == 1, err
    assert not (tmp_path / "hf").exists()


def test_out_that_cannot_be_a_new_directory_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """A file as --out's parent, --out . (the current directory) or its ancestor: refused, nothing written."""
    make_run(tmp_path / "run")
    (tmp_path / "afile").write_text("x")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out, fragment in [(tmp_path / "afile" / "x", "is a file"), (".", "does not name"),
                          (tmp_path, "holds) the run"), (work.parent.parent, "holds) the run"),
                          (work, "the current directory")]:
        code, _, err = tinylm(capsys, "export", "--run", str(tmp_path / "run"), "--format", "safetensors",
                              "--out", str(out), "--force")
        assert code == 2 and fragment in err and err.count("\n") == 1, (out, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "run", "work"]
    assert list(work.iterdir()) == []


def test_onnx_export_of_a_block_size_1_model_gives_tinylms_logits(tmp_path):
    import onnxruntime

    model, tokenizer = make_run(tmp_path / "run", "block_size=1")
    export_run(tmp_path / "run", "onnx", tmp_path / "onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    ids = batch(tokenizer)[:, :1]
    for x in (ids, torch.cat([ids, ids, ids])):  # (2, 1), (6, 1)
        logits = session.run(["logits"], {"input_ids": x.numpy()})[0]
        assert np.abs(logits - model(x)[0].detach().numpy()).max() <= 1e-4
