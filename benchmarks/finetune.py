"""Does fine-tuning pay? A byte-level model trained on Tiny Shakespeare, then N steps on a new text,
against the same N steps from a random init and against the source with no steps on it, in one run.

    python benchmarks/finetune.py                       # target: this repository's README.md
    python benchmarks/finetune.py --target notes.txt --steps 300 --source-iters 2000
    python benchmarks/finetune.py --smoke               # tiny sizes, seconds: checks the plumbing

Both splits are bytes (the byte tokenizer covers any text, so the target may hold characters Tiny
Shakespeare lacks). The source is `cpu-small` on Tiny Shakespeare's bytes; the fine-tune is
``finetune_config`` (what ``tinylm train --init-from`` does): the source's recipe, at ``--lr`` if given;
the new model is `cpu-small` with the same schedule. Each row scores every token of the target's val
split (its last 10%): bits per byte.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from machine import speed_and_load

REPO = Path(__file__).resolve().parents[1]
TINY = ["n_layer=1", "n_embed=16", "n_heads=2", "block_size=16", "batch_size=4", "eval_iters=2", "threads=1"]


def prepare_bytes(sources: list[str], out: Path) -> str:
    from tinylm.data.prepare import PrepareOptions, prepare

    prepare(sources, out, PrepareOptions(tokenizer="byte", progress=False))
    return str(out)


def val_bpb(model, data_dir: str) -> float:
    from tinylm.data.shards import open_prepared
    from tinylm.evaluate import score_split

    data = open_prepared(data_dir)
    return score_split(model, data.val, data.tokenizer.token_bytes(), max_tokens=0).bits_per_byte


def trained(cfg, run_dir: Path | None):
    """(model, seconds) of one run."""
    from tinylm.training.run import train_run

    began = time.perf_counter()
    result = train_run(cfg, run_dir, progress=False, log=lambda _: None)
    return result.trainer.model, time.perf_counter() - began


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default=str(REPO / "README.md"), help="the new text (default: README.md)")
    p.add_argument("--steps", type=int, default=300, help="steps on the target, fine-tuned and new")
    p.add_argument("--source-iters", type=int, default=2000, help="steps of the source on Tiny Shakespeare")
    p.add_argument("--lr", type=float, help="the fine-tune's learning rate (default: the source's, 1e-3)")
    p.add_argument("--smoke", action="store_true", help="tiny model, a few steps")
    args = p.parse_args(argv)
    from tinylm.config import load_config
    from tinylm.data import tinyshakespeare_path
    from tinylm.training.finetune import finetune_config
    from tinylm.training.rundir import load_run

    tiny = TINY if args.smoke else []
    steps = 4 if args.smoke else args.steps
    schedule = [f"max_iters={steps}", f"lr_decay_iters={steps}", f"eval_interval={steps}"]
    print(f"target {args.target}, {steps} steps on it; at start: {speed_and_load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shakespeare = prepare_bytes([str(tinyshakespeare_path())], work / "ts")
        target = prepare_bytes([args.target], work / "target")
        iters = 4 if args.smoke else args.source_iters
        source_cfg = load_config("cpu-small", overrides=tiny + [f"data={shakespeare}", f"max_iters={iters}",
                                                                f"lr_decay_iters={iters}"])
        _, source_s = trained(source_cfg, work / "source")
        source_model = load_run(work / "source")[0]
        lr = [f"learning_rate={args.lr}"] if args.lr else []
        tuned_cfg = finetune_config(work / "source", overrides=tiny + [f"data={target}", *lr, *schedule])
        tuned, tuned_s = trained(tuned_cfg, None)
        fresh, fresh_s = trained(load_config("cpu-small", overrides=tiny + [f"data={target}", *schedule]), None)
        print(f"source: cpu-small, {iters} steps on Tiny Shakespeare's bytes, {source_s:.1f} s")
        print("| model | steps on the target | target val bits per byte | seconds on the target |")
        print("| --- | --- | --- | --- |")
        print(f"| source, not fine-tuned | 0 | {val_bpb(source_model, target):.4f} | 0 |")
        print(f"| source, fine-tuned at lr {tuned_cfg.train.learning_rate:g} | {steps} | {val_bpb(tuned, target):.4f} | {tuned_s:.1f} |")
        print(f"| new cpu-small | {steps} | {val_bpb(fresh, target):.4f} | {fresh_s:.1f} |")
    print(f"at the end: {speed_and_load()}")


if __name__ == "__main__":
    main()
