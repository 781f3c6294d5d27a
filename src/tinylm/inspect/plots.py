"""Pictures of training runs and trained models, drawn with matplotlib's Agg canvas.

    fig = plot_curves({"bigram": trainer.metrics}, out="curves.png")   # or plot_runs(["runs/a"], ...)
    fig = plot_bigram(model, tok, out="bigram.png")          # 65x65 next-character probabilities
    fig = plot_attention(model, tok, "To be, or not to")     # one heatmap per layer and head
    fig = plot_next_char(model, tok, "ROMEO:")               # top-15 next characters
    fig = plot_embeddings(model, tok)                        # characters in 2-D (PCA)
    show(fig)                                                # in a notebook

Every function returns a ``matplotlib.figure.Figure`` and, given ``out``, saves it as a PNG of
``figsize * dpi`` pixels. Figures are made without pyplot, so no global backend is touched, and
matplotlib is imported only when a picture is drawn (``pip install tinylm[plot]``).
The numbers come from ``tinylm.inspect.probe``; the CLI is ``tinylm plot`` / ``tinylm viz``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import nn

from tinylm.atomic import atomic_write
from tinylm.data.tokenizer import CharTokenizer
from tinylm.errors import TinyLMError
from tinylm.inspect.probe import (
    attention_maps,
    bigram_probabilities,
    char_label,
    embedding_pca,
    next_char_distribution,
    run_metrics,
)

DPI = 100
# A prompt is the user's text, not TeX: "A$$" or "$5 and $6" would otherwise go to mathtext and fail
# (or render as maths), so texts holding a prompt are drawn literally.
PLAIN = {"parse_math": False}


def new_figure(width: float, height: float):
    """A pyplot-free figure on an Agg canvas, (width x height) inches."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise TinyLMError("pictures need matplotlib: pip install 'tinylm[plot]'") from None
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg", ".pdf": "pdf"}


def picture_format(out: str | Path) -> str:
    """The file format ``out``'s suffix asks for; refuses an unknown suffix or a missing directory."""
    out = Path(out)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise TinyLMError(f"cannot tell the picture format of {out}; end the name in {', '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise TinyLMError(f"directory {out.parent} does not exist; create it or choose another --out path")
    return fmt


def save(fig, out: str | Path | None, dpi: int = DPI):
    """Write the figure (format from the suffix) of exactly ``figsize * dpi`` pixels, atomically."""
    if out is not None:
        fmt = picture_format(out)
        atomic_write(out, lambda f: fig.savefig(f, dpi=dpi, format=fmt))
    return fig


def png_bytes(fig, dpi: int = DPI) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    return buffer.getvalue()


def show(fig, dpi: int = DPI) -> None:
    """Display a figure in Jupyter as a PNG (works whatever the notebook's matplotlib backend)."""
    from IPython.display import Image, display

    display(Image(data=png_bytes(fig, dpi)))


def plot_curves(runs: Mapping[str, Sequence[dict]], out: str | Path | None = None,
                title: str = "Perplexity while training (lower is better)"):
    """Train (solid) and val (dashed) perplexity of each run against the training step, log scale."""
    fig = new_figure(8, 5)
    ax = fig.add_subplot()
    for i, (label, metrics) in enumerate(runs.items()):
        color = f"C{i % 10}"  # matplotlib's default colour cycle
        if not metrics:
            raise TinyLMError(f"run {label!r} has no evaluations yet; train it for at least one eval_interval")
        for key, style, name in (("train_perplexity", "-", "train"), ("val_perplexity", "--", "val")):
            points = [(m["step"], m[key]) for m in metrics if key in m]  # an edited line may lack either
            if points:
                ax.plot(*zip(*points), color=color, linestyle=style, label=f"{label} {name}")
        val = [(m["step"], m["val_perplexity"]) for m in metrics if "val_perplexity" in m]
        if val:
            ax.annotate(f"{val[-1][1]:.1f}", val[-1], textcoords="offset points", xytext=(4, 0),
                        color=color, fontsize=8, va="center")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return save(fig, out)


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path | None = None):
    """``plot_curves`` of run directories, each labelled with its folder name."""
    runs = {}
    for run_dir in run_dirs:
        label = Path(run_dir).name or str(run_dir)
        while label in runs:
            label += "'"
        runs[label] = run_metrics(run_dir)
    return plot_curves(runs, out)


def plot_bigram(model: nn.Module, tokenizer: CharTokenizer, out: str | Path | None = None):
    """The bigram model's table as a (V, V) heatmap: row = current character, column = next one."""
    probs = bigram_probabilities(model).numpy()  # (V, V)
    labels = [char_label(ch) for ch in tokenizer.chars]
    fig = new_figure(9, 8)
    ax = fig.add_subplot()
    image = ax.imshow(probs, cmap="Blues", vmin=0.0)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, fontsize=5)
    ax.set_yticks(ticks, labels, fontsize=5)
    ax.set_xlabel("next character")
    ax.set_ylabel("current character")
    ax.set_title("Bigram model: P(next character | current character)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="probability")
    fig.tight_layout()
    return save(fig, out)


def plot_attention(model: nn.Module, tokenizer: CharTokenizer, prompt: str, out: str | Path | None = None):
    """One heatmap per (layer, head): row t shows how much position t attends to each earlier one."""
    weights = attention_maps(model, tokenizer, prompt).numpy()  # (L, H, T, T)
    n_layer, n_heads, T, _ = weights.shape
    labels = [char_label(ch) for ch in tokenizer.decode(tokenizer.encode(prompt)[-T:])]
    fig = new_figure(3 * n_heads + 1, 3 * n_layer + 0.6)
    axes = fig.subplots(n_layer, n_heads, squeeze=False)
    for layer in range(n_layer):
        for head in range(n_heads):
            ax = axes[layer][head]
            ax.imshow(weights[layer, head], cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_xticks(range(T), labels, fontsize=6)
            ax.set_yticks(range(T), labels, fontsize=6)
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=9)
    fig.suptitle(f"Attention weights for {prompt[-T:]!r} (row: query, column: key)", fontsize=10, **PLAIN)
    fig.tight_layout()
    return save(fig, out)


def plot_next_char(model: nn.Module, tokenizer: CharTokenizer, prompt: str, k: int = 15,
                   out: str | Path | None = None):
    """The ``k`` most likely next characters after the prompt, as bars."""
    top = next_char_distribution(model, tokenizer, prompt, k)
    fig = new_figure(8, 4)
    ax = fig.add_subplot()
    ax.bar(range(len(top)), [p for _, p in top], color="C0")
    ax.set_xticks(range(len(top)), [repr(ch)[1:-1] if ch != " " else "space" for ch, _ in top], **PLAIN)
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(f"What comes after {prompt[-40:]!r}? (top {len(top)})", **PLAIN)
    for i, (_, p) in enumerate(top):
        ax.text(i, p + 0.01, f"{p:.2f}", ha="center", fontsize=7)
    fig.tight_layout()
    return save(fig, out)


def plot_embeddings(model: nn.Module, tokenizer: CharTokenizer, out: str | Path | None = None):
    """Each character's embedding projected to 2-D by PCA, drawn as its own label."""
    points = embedding_pca(model).numpy()  # (V, 2)
    fig = new_figure(8, 7)
    ax = fig.add_subplot()
    for ch, (x, y) in zip(tokenizer.chars, points):
        color = "C3" if ch.lower() in "aeiou" else "C0" if ch.isalpha() else "C2"
        ax.text(x, y, char_label(ch), ha="center", va="center", fontsize=10, color=color)
    pad_x, pad_y = (points.max(0) - points.min(0)) * 0.05 + 1e-6
    ax.set_xlim(points[:, 0].min() - pad_x, points[:, 0].max() + pad_x)
    ax.set_ylim(points[:, 1].min() - pad_y, points[:, 1].max() + pad_y)
    ax.set_xlabel("first principal component")
    ax.set_ylabel("second principal component")
    ax.set_title("Character embeddings in 2-D (PCA); red: vowels, blue: consonants, green: other")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save(fig, out)
