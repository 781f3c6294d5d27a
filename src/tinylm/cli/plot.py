"""``tinylm plot`` and ``tinylm viz``: the pictures of ``tinylm.inspect.plots`` from the command line.

    tinylm plot runs/bigram runs/attention-1 --out curves.png     # train/val perplexity of runs
    tinylm viz bigram --run runs/bigram --out bigram.png           # the 65x65 next-character table
    tinylm viz attention --run runs/attention-3 --prompt "To be, or not to" --out attention.png
    tinylm viz next-char --run runs/attention-3 --prompt "ROMEO:" --out next.png
    tinylm viz embeddings --run runs/attention-3 --out embeddings.png

A missing run, a picture that does not fit the run's model or a prompt with unseen characters
prints one line, ``tinylm: error: ...``, and exits with code 2.
"""

from __future__ import annotations

import argparse

from tinylm.errors import TinyLMError

PICTURES = ("bigram", "attention", "next-char", "embeddings")
DEFAULT_PROMPT = "ROMEO:"
OUT_HELP = "where to save the picture (.png, .jpg, .svg or .pdf; the directory must exist)"


def _saved(out: str, draw) -> int:
    """Run ``draw()`` (which writes ``out``); report a file that cannot be written as a user error."""
    try:
        draw()
    except OSError as exc:
        raise TinyLMError(f"cannot write {out} ({exc.strerror or exc}); choose another --out path") from None
    print(f"saved {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from tinylm.inspect.plots import picture_format, plot_runs

    picture_format(args.out)  # a bad --out fails before any work
    return _saved(args.out, lambda: plot_runs(args.run_dirs, args.out))


def cmd_viz(args: argparse.Namespace) -> int:
    from tinylm.inspect import plots
    from tinylm.training.rundir import load_run

    plots.picture_format(args.out)  # a bad --out fails before the model is loaded
    model, tokenizer, _, _ = load_run(args.run, "cpu")
    draw = {
        "bigram": lambda: plots.plot_bigram(model, tokenizer, args.out),
        "attention": lambda: plots.plot_attention(model, tokenizer, args.prompt, args.out),
        "next-char": lambda: plots.plot_next_char(model, tokenizer, args.prompt, args.top_k, args.out),
        "embeddings": lambda: plots.plot_embeddings(model, tokenizer, args.out),
    }[args.picture]
    return _saved(args.out, draw)


def register(subparsers) -> None:
    plot = subparsers.add_parser("plot", help="train/val perplexity curves of one or more runs",
                                 description="Draw the train and val perplexity of runs on one chart.")
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (with metrics.jsonl)")
    plot.add_argument("--out", required=True, metavar="FILE.png", help=OUT_HELP)
    plot.set_defaults(handler=cmd_plot)

    viz = subparsers.add_parser("viz", help="a picture of what a trained model learned",
                                description="bigram: the next-character table (bigram runs); attention: "
                                            "each head's weights for a prompt (transformer runs); next-char: "
                                            "the top next characters after a prompt; embeddings: characters "
                                            "in 2-D by PCA.")
    viz.add_argument("picture", choices=PICTURES)
    viz.add_argument("--run", required=True, metavar="DIR", help="a run directory with a checkpoint")
    viz.add_argument("--prompt", default=DEFAULT_PROMPT,
                     help=f"text for attention and next-char (default: {DEFAULT_PROMPT!r})")
    viz.add_argument("--top-k", type=int, default=15, metavar="K", help="bars in next-char (default: 15)")
    viz.add_argument("--out", required=True, metavar="FILE.png", help=OUT_HELP)
    viz.set_defaults(handler=cmd_viz)
