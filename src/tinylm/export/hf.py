"""``--format hf``: a directory ``transformers`` loads with ``AutoModelForCausalLM`` and ``AutoTokenizer``.

    write(model, tokenizer, cfg, ckpt, Path("exports/a1-hf"))
    AutoModelForCausalLM.from_pretrained("exports/a1-hf")   # same logits as tinylm (fp32, <= 1e-4)

The plain GPT is GPT-2 (``GPT2LMHeadModel``): learned positions, pre-LayerNorm, GELU (the exact erf
form, ``activation_function="gelu"``, not GPT-2's tanh ``gelu_new``), tied or untied head. tinylm's
default ``bias=False`` becomes zero biases. GPT-2's ``Conv1D`` stores weights as (in, out), the transpose
of ``nn.Linear``; its ``c_attn`` splits q, k, v along the output like tinylm's ``qkv``.

``rope`` maps onto GPT-NeoX (``GPTNeoXForCausalLM``), the transformers architecture that matches
exactly: full-width rotary on channel pairs (i, i + hs/2) with base 10000, LayerNorm (not Llama's
RMSNorm), sequential residuals, a plain 4x MLP (not Llama's SwiGLU). ``relu2`` is ``"relu2"`` in
either. ``qk_norm`` (gain-free RMS norm of each head's q and k) has no exact counterpart: refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tinylm.config import ModelConfig, RunConfig
from tinylm.data import CharTokenizer, Tokenizer
from tinylm.errors import TinyLMError
from tinylm.export.hf_tokenizer import save_hf_tokenizer

LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which tinylm uses


def check(cfg: RunConfig, tokenizer: Tokenizer) -> None:
    """Refuse, naming the option, a model transformers cannot reproduce exactly."""
    m = cfg.model
    if not isinstance(tokenizer, CharTokenizer):  # hf_tokenizer maps characters only; ids must match exactly
        raise TinyLMError(f"--format hf exports character-tokenizer runs only, this run uses a {tokenizer.kind} "
                          "tokenizer; export it with --format safetensors or onnx")
    if m.kind != "transformer":
        raise TinyLMError("kind=bigram has no transformers architecture; export it with --format safetensors or onnx")
    if m.qk_norm:
        raise TinyLMError("qk_norm=true has no exact transformers architecture (gain-free RMS norm of q and k); "
                          "export with --format safetensors or onnx, or train with qk_norm=false")


def hf_config(m: ModelConfig, vocab_size: int):
    """The transformers config of a tinylm GPT: GPT-2 for learned positions, GPT-NeoX for rope."""
    from transformers import GPT2Config, GPTNeoXConfig

    act = "relu2" if m.mlp_activation == "relu2" else "gelu"
    common = {"vocab_size": vocab_size, "tie_word_embeddings": m.tie_weights, "bos_token_id": None,
              "eos_token_id": None, "pad_token_id": None}
    if m.rope:
        return GPTNeoXConfig(hidden_size=m.n_embed, num_hidden_layers=m.n_layer, num_attention_heads=m.n_heads,
                             intermediate_size=4 * m.n_embed, hidden_act=act, max_position_embeddings=m.block_size,
                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                              "partial_rotary_factor": 1.0},
                             use_parallel_residual=False, attention_bias=m.bias, layer_norm_eps=LAYER_NORM_EPS,
                             attention_dropout=0.0, hidden_dropout=0.0, **common)
    return GPT2Config(n_embd=m.n_embed, n_layer=m.n_layer, n_head=m.n_heads, n_positions=m.block_size,
                      activation_function=act, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      layer_norm_epsilon=LAYER_NORM_EPS, **common)


def _norm(sd: dict, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a tinylm LayerNorm; a zero bias where it has none."""
    weight = sd[f"{name}.weight"]
    return weight, sd.get(f"{name}.bias", torch.zeros_like(weight))


def _bias(sd: dict, name: str, size: int) -> torch.Tensor:
    return sd.get(f"{name}.bias", torch.zeros(size))


def gpt2_state_dict(sd: dict, m: ModelConfig) -> dict[str, torch.Tensor]:
    """tinylm GPT weights under GPT2LMHeadModel's names; Conv1D weights transposed to (in, out)."""
    C = m.n_embed
    out = {"transformer.wte.weight": sd["token_embedding.weight"],
           "transformer.wpe.weight": sd["position_embedding.weight"], "lm_head.weight": sd["head.weight"]}
    out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = _norm(sd, "ln_f")
    for i in range(m.n_layer):
        t, h = f"blocks.{i}.", f"transformer.h.{i}."
        out[h + "ln_1.weight"], out[h + "ln_1.bias"] = _norm(sd, t + "ln1")
        out[h + "ln_2.weight"], out[h + "ln_2.bias"] = _norm(sd, t + "ln2")
        for hf_name, tl_name, size in (("attn.c_attn", "attn.qkv", 3 * C), ("attn.c_proj", "attn.proj", C),
                                       ("mlp.c_fc", "mlp.fc", 4 * C), ("mlp.c_proj", "mlp.proj", C)):
            out[h + hf_name + ".weight"] = sd[t + tl_name + ".weight"].t().contiguous()  # (out, in) -> (in, out)
            out[h + hf_name + ".bias"] = _bias(sd, t + tl_name, size)
    return out


def neox_state_dict(sd: dict, m: ModelConfig) -> dict[str, torch.Tensor]:
    """tinylm GPT (rope) weights under GPTNeoXForCausalLM's names."""
    C, H = m.n_embed, m.n_heads
    out = {"gpt_neox.embed_in.weight": sd["token_embedding.weight"], "lm_head.weight": sd["head.weight"]}
    out["gpt_neox.final_layer_norm.weight"], out["gpt_neox.final_layer_norm.bias"] = _norm(sd, "ln_f")
    for i in range(m.n_layer):
        t, h = f"blocks.{i}.", f"gpt_neox.layers.{i}."
        out[h + "input_layernorm.weight"], out[h + "input_layernorm.bias"] = _norm(sd, t + "ln1")
        out[h + "post_attention_layernorm.weight"], out[h + "post_attention_layernorm.bias"] = _norm(sd, t + "ln2")
        # tinylm's qkv rows are [q | k | v], each (H, hs); NeoX reads them per head as [q_h | k_h | v_h].
        qkv = sd[t + "attn.qkv.weight"]  # (3C, C)
        out[h + "attention.query_key_value.weight"] = qkv.view(3, H, C // H, C).transpose(0, 1).reshape(3 * C, C)
        out[h + "attention.dense.weight"] = sd[t + "attn.proj.weight"]
        if m.bias:
            qkv_bias = sd[t + "attn.qkv.bias"]  # (3C,)
            out[h + "attention.query_key_value.bias"] = qkv_bias.view(3, H, C // H).transpose(0, 1).reshape(3 * C)
            out[h + "attention.dense.bias"] = sd[t + "attn.proj.bias"]
        out[h + "mlp.dense_h_to_4h.weight"] = sd[t + "mlp.fc.weight"]
        out[h + "mlp.dense_h_to_4h.bias"] = _bias(sd, t + "mlp.fc", 4 * C)
        out[h + "mlp.dense_4h_to_h.weight"] = sd[t + "mlp.proj.weight"]
        out[h + "mlp.dense_4h_to_h.bias"] = _bias(sd, t + "mlp.proj", C)
    return out


def write(model, tokenizer: CharTokenizer, cfg: RunConfig, ckpt: dict, out: Path) -> None:
    from transformers import AutoModelForCausalLM

    m = cfg.model
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    config = hf_config(m, tokenizer.vocab_size)
    hf_model = AutoModelForCausalLM.from_config(config)
    mapped = neox_state_dict(sd, m) if m.rope else gpt2_state_dict(sd, m)
    hf_model.load_state_dict(mapped, strict=True)  # every HF weight set: a missing one is a bug, not a zero
    hf_model.save_pretrained(out)
    save_hf_tokenizer(tokenizer, out)
