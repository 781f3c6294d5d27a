"""Every picture renders to a valid PNG of its size, from real (tiny) trained runs; attention is causal."""

import struct

import pytest
import torch

from conftest import TINY
from tinylm.config import load_config
from tinylm.errors import TinyLMError
from tinylm.training.run import train_run
from tinylm.training.rundir import load_run

pytest.importorskip("matplotlib")
from tinylm.inspect import plots, probe  # noqa: E402

VERSE = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
         "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 30


def png_size(path) -> tuple[int, int]:
    """(width, height) from the PNG signature and IHDR chunk, which must come first."""
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert blob[12:16] == b"IHDR"
    assert len(blob) > 2000, "suspiciously small image"
    return struct.unpack(">II", blob[16:24])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_cache):
    """A tiny bigram run and a tiny 2-layer, 2-head transformer run, a few steps each."""
    base = tmp_path_factory.mktemp("plots")
    text = base / "verse.txt"
    text.write_text(VERSE, encoding="utf-8")
    common = TINY + ["max_iters=7", "eval_interval=3", f"data={text}", "device=cpu"]
    made = {}
    for kind in ("bigram", "transformer"):
        cfg = load_config(overrides=common + [f"kind={kind}"])
        train_run(cfg, base / kind, progress=False, log=lambda line: None)
        made[kind] = base / kind
    return made


def test_curves_of_runs(runs, tmp_path):
    out = tmp_path / "curves.png"
    fig = plots.plot_runs([runs["bigram"], runs["transformer"]], out)
    assert png_size(out) == (800, 500)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4  # train and val of each run
    steps = list(lines[0].get_xdata())
    assert steps == [m["step"] for m in probe.run_metrics(runs["bigram"])] == [0, 3, 6]


def test_bigram_heatmap_is_the_softmax_table(runs, tmp_path):
    model, tok, _, _ = load_run(runs["bigram"])
    out = tmp_path / "bigram.png"
    fig = plots.plot_bigram(model, tok, out)
    assert png_size(out) == (900, 800)
    drawn = torch.as_tensor(fig.axes[0].images[0].get_array())
    V = tok.vocab_size
    assert drawn.shape == (V, V)
    torch.testing.assert_close(drawn.sum(dim=1), torch.ones(V, dtype=drawn.dtype))
    expected = torch.softmax(model.token_embedding_table.weight, dim=-1)
    torch.testing.assert_close(drawn, expected.to(drawn.dtype))


def test_attention_heads_drawn_are_causal_and_rows_sum_to_one(runs, tmp_path):
    model, tok, cfg, _ = load_run(runs["transformer"])
    prompt = "First Citizen:\nBefore"  # longer than block_size 16: the last 16 characters are used
    out = tmp_path / "attention.png"
    fig = plots.plot_attention(model, tok, prompt, out)
    L, H, T = cfg.model.n_layer, cfg.model.n_heads, cfg.model.block_size
    assert png_size(out) == ((3 * H + 1) * 100, int((3 * L + 0.6) * 100))
    drawn = [torch.as_tensor(ax.images[0].get_array()) for ax in fig.axes if ax.images]
    assert len(drawn) == L * H
    for weights in drawn:
        assert weights.shape == (T, T)
        assert torch.all(weights.triu(1) == 0), "a position attends to the future"
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(T, dtype=weights.dtype))
        assert weights.diagonal().min() > 0


def test_attention_weights_are_the_ones_forward_uses(runs):
    """Weights @ values, through the output projection, equals the first block's attention output."""
    model, tok, _, _ = load_run(runs["transformer"])
    weights = probe.attention_maps(model, tok, "Speak, speak.")  # (L, H, T, T)
    idx = torch.tensor([tok.encode("Speak, speak.")])
    block = model.blocks[0]
    with torch.no_grad():
        x = block.ln1(model.embed(idx))  # (1, T, C)
        _, _, v = block.attn.heads(x)  # (1, H, T, hs)
        mixed = (weights[0] @ v[0]).transpose(0, 1).reshape(1, idx.size(1), -1)  # (1, T, C)
        torch.testing.assert_close(block.attn.proj(mixed), block.attn(x), atol=1e-5, rtol=1e-4)


def test_next_char_bars(runs, tmp_path):
    model, tok, _, _ = load_run(runs["transformer"])
    out = tmp_path / "next.png"
    fig = plots.plot_next_char(model, tok, "First Citizen:\nBef", k=15, out=out)
    assert png_size(out) == (800, 400)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    assert len(heights) == 15
    assert heights == sorted(heights, reverse=True) and 0 < sum(heights) <= 1 + 1e-6
    top = probe.next_char_distribution(model, tok, "First Citizen:\nBef", k=tok.vocab_size)
    assert sum(p for _, p in top) == pytest.approx(1.0, abs=1e-5)
    assert heights == pytest.approx([p for _, p in top[:15]])


def test_embeddings_pca(runs, tmp_path):
    model, tok, _, _ = load_run(runs["transformer"])
    out = tmp_path / "embeddings.png"
    fig = plots.plot_embeddings(model, tok, out)
    assert png_size(out) == (800, 700)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(labels) == sorted(probe.char_label(ch) for ch in tok.chars)
    points = probe.embedding_pca(model)
    assert points.shape == (tok.vocab_size, 2)
    assert points[:, 0].var() >= points[:, 1].var()  # components come in order of variance


def test_wrong_model_kind_and_unseen_characters_are_user_errors(runs):
    bigram, tok, _, _ = load_run(runs["bigram"])
    transformer, _, _, _ = load_run(runs["transformer"])
    with pytest.raises(TinyLMError, match="needs a transformer"):
        plots.plot_attention(bigram, tok, "Speak")
    with pytest.raises(TinyLMError, match="needs the bigram model"):
        plots.plot_bigram(transformer, tok)
    with pytest.raises(TinyLMError, match="never saw"):
        plots.plot_next_char(transformer, tok, "Zebra")


def test_a_prompt_with_dollar_signs_is_drawn_literally_not_as_mathtext(tmp_path):
    from tinylm.config import ModelConfig
    from tinylm.data import CharTokenizer
    from tinylm.model import build_model

    tok = CharTokenizer.from_text("A$ costs $5 and $6")
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=1, n_embed=16, n_heads=2, block_size=16), tok.vocab_size).eval()
    prompt = "A$$ $5 and $6"  # pairs of $ are what mathtext would parse
    fig = plots.plot_attention(model, tok, prompt, tmp_path / "a.png")
    assert prompt in fig.get_suptitle()
    fig = plots.plot_next_char(model, tok, prompt, 3, tmp_path / "n.png")
    assert prompt in fig.axes[0].get_title()
    assert png_size(tmp_path / "a.png") and png_size(tmp_path / "n.png")


@pytest.mark.slow
def test_cli_plot_and_viz(runs, cli, tmp_path):
    out = tmp_path / "curves.png"
    done = cli("plot", str(runs["bigram"]), str(runs["transformer"]), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert png_size(out) == (800, 500)
    out = tmp_path / "att.png"
    done = cli("viz", "attention", "--run", str(runs["transformer"]), "--prompt", "Speak", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert png_size(out)[0] == 700


@pytest.mark.parametrize("args, fragment", [
    (["viz", "attention", "--run", "{bigram}"], "needs a transformer"),
    (["viz", "bigram", "--run", "{transformer}"], "needs the bigram model"),
    (["viz", "next-char", "--run", "{transformer}", "--prompt", "Zebra"], "never saw"),
    (["viz", "embeddings", "--run", "{missing}"], "run directory not found"),
    (["viz", "next-char", "--run", "{transformer}", "--top-k", "-3"], "--top-k must be in 1.."),
    (["viz", "next-char", "--run", "{transformer}", "--top-k", "0"], "--top-k must be in 1.."),
    (["viz", "next-char", "--run", "{transformer}", "--top-k", "999"], "(the vocabulary size)"),
    (["plot", "{missing}"], "run directory not found"),
])
def test_cli_bad_input_is_one_line_exit_2(runs, tmp_path, capsys, args, fragment):
    """In-process ``tinylm.cli.main`` (the subprocess path is covered by the test above)."""
    from tinylm.cli import main

    paths = {"bigram": runs["bigram"], "transformer": runs["transformer"], "missing": tmp_path / "nope"}
    args = [a.format(**paths) for a in args] + ["--out", str(tmp_path / "x.png")]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinylm: error:") and fragment in lines[0], lines
    assert not (tmp_path / "x.png").exists()
