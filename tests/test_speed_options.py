"""The speed options: rotary embeddings, QK-norm, ReLU², zero-init projections, tied weights, Muon,
and torch.compile agreeing with eager. Tiny models, CPU, a few seconds in all (compile is marked slow)."""

import math

import pytest
import torch

from conftest import TINY
from tinylm import TransformerLanguageModel
from tinylm.config import load_config
from tinylm.errors import ConfigError
from tinylm.model.rope import Rotary
from tinylm.optim import hidden_matrices, make_optimizer
from tinylm.optim.muon import Muon, orthogonalize
from tinylm.training.compiled import CompiledBlocks, compile_for_training
from tinylm.training.run import train_run

V = 65
OPTIONS = [{"rope": True}, {"qk_norm": True}, {"mlp_activation": "relu2"}, {"zero_init_proj": True},
           {"tie_weights": True}]
ALL_ON = {"rope": True, "qk_norm": True, "mlp_activation": "relu2", "zero_init_proj": True}


def tiny(**options):
    torch.manual_seed(0)
    return TransformerLanguageModel(V, n_embed=32, block_size=16, n_layer=2, n_heads=2, **options)


def newton_schulz_float64(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Reference: the same quintic iteration, written independently, in float64."""
    x = g.double().T if g.size(0) > g.size(1) else g.double()
    x = x / x.norm()
    for _ in range(steps):
        a = x @ x.T
        x = 3.4445 * x - 4.7750 * a @ x + 2.0315 * a @ a @ x
    return x.T if g.size(0) > g.size(1) else x


@pytest.mark.parametrize("shape", [(6, 4), (4, 6)])
def test_muon_step_matches_a_float64_reference(shape):
    torch.manual_seed(0)
    w0, g1, g2 = torch.randn(shape), torch.randn(shape), torch.randn(shape)
    w = torch.nn.Parameter(w0.clone())
    opt = Muon([w], lr=0.1, momentum=0.9)
    for g in (g1, g2):
        w.grad = g.clone()
        opt.step()
    scale = max(1.0, shape[0] / shape[1]) ** 0.5
    expected, buf = w0.double(), torch.zeros(shape, dtype=torch.float64)
    for g in (g1.double(), g2.double()):
        buf = 0.9 * buf + g
        expected = expected - 0.1 * scale * newton_schulz_float64(g + 0.9 * buf)
    torch.testing.assert_close(w.detach().double(), expected, atol=2e-5, rtol=1e-5)


def test_a_stack_of_matrices_is_orthogonalised_like_each_matrix_alone():
    torch.manual_seed(0)
    stack = torch.randn(3, 12, 5)  # (N, rows, cols)
    batched = orthogonalize(stack)
    for i in range(3):
        torch.testing.assert_close(batched[i], orthogonalize(stack[i]), atol=1e-5, rtol=1e-5)


def test_muon_updates_same_shaped_matrices_as_if_each_had_its_own_optimizer():
    torch.manual_seed(0)
    w0 = [torch.randn(6, 4) for _ in range(2)] + [torch.randn(4, 4)]
    grads = [[torch.randn_like(w) for w in w0] for _ in range(2)]
    together = [torch.nn.Parameter(w.clone()) for w in w0]
    alone = [torch.nn.Parameter(w.clone()) for w in w0]
    opt_together = Muon(together, lr=0.1, momentum=0.9)
    opts_alone = [Muon([p], lr=0.1, momentum=0.9) for p in alone]
    for step_grads in grads:
        for p, q, g in zip(together, alone, step_grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt_together.step()
        for opt in opts_alone:
            opt.step()
    for p, q in zip(together, alone):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6)


def test_newton_schulz_brings_singular_values_near_one():
    torch.manual_seed(0)
    g = torch.randn(32, 8) @ torch.diag(torch.logspace(-1, 1, 8))  # singular values spread ~100x
    singular = torch.linalg.svdvals(orthogonalize(g))
    assert singular.min() > 0.5 and singular.max() < 1.3


def test_rope_preserves_norms_and_shifts_are_relative():
    torch.manual_seed(0)
    rope = Rotary(head_size=8, max_positions=32)
    q, k = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 8)  # (B, H, T, hs)
    torch.testing.assert_close(rope(q).norm(dim=-1), q.norm(dim=-1))
    # Scores depend on the position difference only: shifting both by 5 changes nothing.
    scores = rope(q) @ rope(k).transpose(-2, -1)
    shifted = rope(q, start_pos=5) @ rope(k, start_pos=5).transpose(-2, -1)
    torch.testing.assert_close(scores, shifted, atol=1e-4, rtol=1e-4)


def test_heads_with_start_pos_match_the_full_sequence():
    attn = tiny(rope=True, qk_norm=True).blocks[0].attn
    x = torch.randn(2, 12, 32)
    q_full, k_full, _ = attn.heads(x)  # (B, H, 12, hs)
    q_tail, k_tail, _ = attn.heads(x[:, 7:], start_pos=7)  # what a key/value cache computes
    torch.testing.assert_close(q_tail, q_full[:, :, 7:])
    torch.testing.assert_close(k_tail, k_full[:, :, 7:])


def test_all_options_on_stay_causal_and_attention_weights_match_forward():
    model = tiny(**ALL_ON, tie_weights=True).eval()
    for p in model.parameters():  # zero-init projections would hide any leak: randomise them
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randint(0, V, (2, 16))
    changed = x.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % V
    before, after = model(x)[0], model(changed)[0]
    torch.testing.assert_close(before[:, :10], after[:, :10])
    assert not torch.allclose(before[:, 10:], after[:, 10:])
    attn, h = model.blocks[0].attn, model.blocks[0].ln1(model.embed(x))
    weights = attn.attention_weights(h)  # (B, H, T, T)
    _, _, v = attn.heads(h)
    y = (weights @ v).transpose(1, 2).reshape(2, 16, 32)  # (B, T, C)
    torch.testing.assert_close(attn.proj(y), attn(h), atol=1e-5, rtol=1e-5)


def test_option_structure():
    assert tiny(rope=True).position_embedding is None and tiny().position_embedding is not None
    tied = tiny(tie_weights=True)
    assert tied.head.weight is tied.token_embedding.weight
    zero = tiny(zero_init_proj=True)
    assert zero.blocks[0].attn.proj.weight.eq(0).all() and zero.blocks[1].mlp.proj.weight.eq(0).all()
    assert zero.blocks[1].mlp.fc.weight.abs().sum() > 0


@pytest.mark.parametrize("options", OPTIONS + [ALL_ON], ids=lambda o: "+".join(o))
def test_each_option_trains_to_a_lower_loss(options):
    model = tiny(**options)
    torch.manual_seed(1)
    x = torch.randint(0, V, (8, 16))
    y = (7 * x + 3) % V  # each next token is a function of the current one
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(x, y)[1].item()
    for _ in range(30):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model(x, y)[1].item() < first - 1.0


def test_muon_run_trains_resumes_and_splits_parameters(small_text, tmp_path):
    cfg = load_config(overrides=TINY + [f"data={small_text}", "max_iters=24", "eval_interval=8",
                                        "optimizer=muon", "muon_lr=0.02", "learning_rate=1e-2",
                                        "lr_schedule=linear", "warmup_iters=3", "rope=true", "qk_norm=true"])
    quiet = {"progress": False, "log": lambda _: None}
    result = train_run(cfg, tmp_path / "r", **quiet)
    metrics = result.trainer.metrics
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"] - 0.5
    model, opt = result.trainer.model, result.trainer.optimizer
    muon_params = {id(p) for g in opt.param_groups if "lr_scale" in g for p in g["params"]}
    assert muon_params == {id(p) for p in hidden_matrices(model)}
    assert id(model.head.weight) not in muon_params and id(model.token_embedding.weight) not in muon_params
    cfg.train.max_iters = 26
    resumed = train_run(cfg, tmp_path / "r", resume=True, **quiet)
    assert resumed.trainer.step == 26


def test_muon_group_follows_the_schedule_scaled():
    model = tiny()
    cfg = load_config(overrides=["optimizer=muon", "learning_rate=1e-3", "muon_lr=0.05"])
    opt = make_optimizer(model, cfg.train)
    lrs = {g.get("lr_scale", 1.0) * 1e-3 for g in opt.param_groups}
    assert any(math.isclose(lr, 0.05) for lr in lrs) and any(math.isclose(lr, 1e-3) for lr in lrs)


@pytest.mark.parametrize("bad", ["mlp_activation=tanh", "optimizer=sgd", "muon_lr=0", "rope=maybe"])
def test_bad_option_values_are_config_errors(bad):
    with pytest.raises(ConfigError):
        load_config(overrides=[bad])
    with pytest.raises(ConfigError, match="even head size"):
        load_config(overrides=["rope=true", "n_embed=30", "n_heads=10"])


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["model", "blocks"])
def test_compiled_and_eager_agree(scope):
    """Logits and every gradient, the whole model compiled or each block. Two layers, so that code
    reused across layers is covered: a block marked as a nested compile region gave wrong gradients
    from its second layer on (torch 2.13, CPU). Inductor on CPU compiles C++ kernels, so this takes a
    minute or so on a quiet 2-core VM."""
    def two_layers():
        torch.manual_seed(0)
        return TransformerLanguageModel(V, n_embed=32, block_size=16, n_layer=2, n_heads=2, **ALL_ON)
    eager, compiled = two_layers(), compile_for_training(two_layers(), scope)
    with torch.no_grad():  # random projections instead of zeros, so every path carries signal
        for p_e, p_c in zip(eager.parameters(), compiled.parameters()):
            p_e.normal_(std=0.1)
            p_c.copy_(p_e)
    x = torch.randint(0, V, (4, 16))
    y = torch.randint(0, V, (4, 16))
    logits_e, loss_e = eager(x, y)
    logits_c, loss_c = compiled(x, y)
    torch.testing.assert_close(logits_c, logits_e, atol=1e-4, rtol=1e-4)
    loss_e.backward()
    loss_c.backward()
    grads_c = dict(compiled.named_parameters())
    for name, p in eager.named_parameters():
        torch.testing.assert_close(grads_c["_orig_mod." + name].grad, p.grad, atol=1e-4, rtol=1e-3)


def test_speed_presets_use_the_tricks_and_validate():
    gpu = load_config(preset="speedrun")
    assert gpu.model.rope and gpu.train.optimizer == "muon"
    assert gpu.train.compile  # an H100: 4.9 s of training compiled, 13.5 s graphed eager (RESULTS.md)
    assert gpu.train.max_iters == gpu.train.lr_decay_iters == 700 and not gpu.train.target_val_loss  # H100: 1.4524
    assert gpu.train.cuda_graph  # an H100: 35.1 s wall recorded, 41.4 s eager (RESULTS.md)
    cpu = load_config(preset="cpu-speedrun")
    assert cpu.model.rope and cpu.model.mlp_activation == "relu2" and cpu.train.threads == 0


def test_a_model_compiled_by_block_names_each_parameter_once():
    """CompiledBlocks names each parameter once, under ``_orig_mod.`` as torch.compile's wrapper does,
    so checkpoints strip one prefix and load into an eager model; its compiled blocks share them."""
    torch.manual_seed(0)
    eager = TransformerLanguageModel(V, n_embed=32, block_size=16, n_layer=2, n_heads=2, **ALL_ON)
    wrapped = CompiledBlocks(eager)
    assert list(wrapped.state_dict()) == ["_orig_mod." + key for key in eager.state_dict()]
    assert len(list(wrapped.parameters())) == len(list(eager.parameters()))
    for compiled, block in zip(wrapped.compiled_blocks, eager.blocks):
        assert compiled._orig_mod is block


def test_compile_scope_is_checked():
    with pytest.raises(ConfigError, match="compile_scope must be one of model, blocks"):
        load_config(overrides=["compile_scope=layers"])
    with pytest.raises(ConfigError, match="a bigram has none"):
        load_config(overrides=["kind=bigram", "compile_scope=blocks"])


@pytest.mark.slow
def test_a_run_compiled_by_block_resumes_step_for_step_and_loads_eagerly(small_text, tmp_path):
    """Checkpoints of a compile_scope=blocks run hold the eager model's names: a resumed run continues
    it step for step, and its weights load into a plain model with the same logits. (One compile: the
    block graph is reused by every run in the process.)"""
    from tinylm.model import build_model
    from tinylm.training.ckpt_checks import clean_state_dict
    from tinylm.training.rundir import load_checkpoint, unwrap

    base = TINY + [f"data={small_text}", "compile=true", "compile_scope=blocks", "eval_interval=4", "dropout=0.0"]
    quiet = {"progress": False, "log": lambda _: None}
    full = train_run(load_config(overrides=base + ["max_iters=8"]), tmp_path / "full", **quiet)
    train_run(load_config(overrides=base + ["max_iters=4"]), tmp_path / "split", **quiet)
    resumed = train_run(load_config(overrides=base + ["max_iters=8"]), tmp_path / "split", resume=True, **quiet)
    assert isinstance(resumed.trainer.model, CompiledBlocks)
    assert resumed.trainer.train_losses == full.trainer.train_losses
    trained = unwrap(resumed.trainer.model)
    plain = build_model(trained.config, trained.vocab_size)
    plain.load_state_dict(clean_state_dict(load_checkpoint(tmp_path / "split" / "ckpt.pt")["model"]))
    x = torch.randint(0, trained.vocab_size, (2, 16))
    assert torch.equal(plain.eval()(x)[0], trained.eval()(x)[0])
