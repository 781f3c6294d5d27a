"""``tinylm train``: train a model from a preset, a config file and ``--set`` keys, or ``--resume`` one.

    tinylm train --preset attention-1 --out runs/attention-1
    tinylm train --config-json '{"max_iters": 200}' --set n_layer=2 --device cpu
    tinylm train --nproc 2 --preset attention-1 --out runs/a1       # DDP: starts torchrun for you
    tinylm train --init-from runs/a1 --data notes.txt --set max_iters=300 --out runs/notes   # fine-tune
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from tinylm.cli.common import add_config_arguments, config_from_args
from tinylm.errors import TinyLMError


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a model (or --resume one)", description="Train a model.")
    add_config_arguments(train)
    train.add_argument("--out", metavar="DIR", help="run directory (default: runs/PRESET)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--init-from", metavar="RUN",
                       help="a new run from this run's (or export's) weights, config and tokenizer: fine-tune "
                            "it (on --data, with --set changes) with a fresh optimizer and schedule")
    train.add_argument("--sample-chars", type=int, default=300, metavar="N",
                       help="characters to sample at the end, and in each of the run card's two samples (0: none)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--nproc", type=int, metavar="N", help="train on N processes (DDP): runs torchrun for you")
    train.add_argument("--serve", type=int, metavar="PORT",
                       help="watch it train: the inspector on 127.0.0.1:PORT (stays up after training until Ctrl-C)")
    train.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from tinylm.device import resolve_device
    from tinylm.training import distributed
    from tinylm.training.run import train_run

    check_options(args)
    cfg = run_config(args)
    run_dir = Path(args.out or Path("runs") / (args.preset or "custom"))
    resolve_device(cfg.train.device)  # fail on a missing GPU before reading any data
    if args.serve is not None and args.nproc is not None:
        raise TinyLMError("--serve works with one training process; with --nproc, run `tinylm serve --run DIR` "
                          "beside it")
    if args.nproc is not None:  # start torchrun, which runs this same command on every rank
        return distributed.launch(args.nproc, args.argv, run_dir, args.resume)
    dist = distributed.init_from_env(cfg.train.device)  # None unless launched by torchrun
    server = start_server(args.serve, run_dir) if args.serve is not None and dist is None else None
    try:
        result = train_run(cfg, run_dir, resume=args.resume, progress=not args.quiet, log=print, dist=dist)
        if dist is None or dist.is_main():
            val_loss = report(result, run_dir, args.sample_chars)
            write_run_card(run_dir, None if args.resume else args.preset, val_loss, cfg.train.device,
                           args.sample_chars)
        if dist is not None:
            dist.barrier()  # the other ranks wait for rank 0's report, then all tear down together
    except BaseException:
        if server is not None:  # a failed or interrupted run takes its inspector down with it
            server.stop()
        raise
    finally:
        if dist is not None:
            dist.cleanup()
    if dist is not None:
        distributed.exit_finished_rank()
    if server is not None:
        keep_serving(server)
    return 0


def run_config(args: argparse.Namespace):
    """A resumed run's own config, a fine-tune's source's, or the options' alone; ``--set`` items on top."""
    from tinylm.training.finetune import finetune_config
    from tinylm.training.run import resumed_config

    cfg, overrides = config_from_args(args)
    if args.resume:
        return resumed_config(args.out, overrides)
    if args.init_from or cfg.train.init_from:  # --set init_from=RUN means the same
        return finetune_config(args.init_from or cfg.train.init_from, args.preset, args.config, args.config_json,
                               overrides)
    return cfg


def check_options(args: argparse.Namespace) -> None:
    """Refuse bad options now, not after a long run; a resumed run rebuilds its config from the
    checkpoint, so only ``--set``-style changes apply on top (the others would be silently ignored)."""
    if args.sample_chars < 0:  # the sample is drawn only after the whole run
        raise TinyLMError(f"--sample-chars must be >= 0 (0: no sample), got {args.sample_chars}")
    if not args.resume:
        return
    if args.init_from is not None:
        raise TinyLMError("--init-from starts a new run and --resume continues one; give one of them")
    if args.out is None:
        raise TinyLMError("--resume needs --out DIR, the run directory to continue")
    given = [option for option, value in (("--preset", args.preset), ("--config", args.config),
                                          ("--config-json", args.config_json)) if value is not None]
    if given:
        raise TinyLMError(f"{' and '.join(given)} cannot be used with --resume: --resume continues the run's own "
                          "config; give changes as --set key=value")


def start_server(port: int, run_dir: Path):
    """The inspector in a child process (``tinylm.serve.background``); needs tinylm[serve]."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from tinylm.serve.background import BackgroundServer
    except ImportError:
        raise TinyLMError("--serve needs FastAPI and uvicorn: pip install -e '.[serve]'") from None
    server = BackgroundServer(run_dir, "127.0.0.1", port)
    server.start()
    print(f"watch it train: http://127.0.0.1:{port} (Training tab)", flush=True)
    return server


def keep_serving(server) -> None:
    try:  # the print is inside: a Ctrl-C that lands just as it returns still ends the server cleanly
        if not server.error:
            print(f"training done; the inspector stays on http://127.0.0.1:{server.port} until Ctrl-C", flush=True)
            server.wait()
    except KeyboardInterrupt:
        server.stop()
    if server.error:
        raise TinyLMError(f"the inspector stopped: {server.error}")


def write_run_card(run_dir: Path, preset: str | None, val_loss: float, device: str, sample_chars: int) -> None:
    """report.md in the run directory, with two samples of ``sample_chars`` characters."""
    from tinylm.report import write_report

    card = write_report(run_dir, preset, exact_val=val_loss, sample_chars=sample_chars, device=device)
    print(f"run card: {card}")


def report(result, run_dir: Path, sample_chars: int) -> float:
    """Print the exact val perplexity, where the run is, and a sample; return the exact val loss."""
    from tinylm.evaluate import score_split
    from tinylm.sampling import generate, prompt_ids
    from tinylm.training.rundir import unwrap

    trainer = result.trainer
    score = score_split(trainer.evaluator.model, result.corpus.val_data, result.corpus.tokenizer.token_bytes(),
                        trainer.dtype)  # the evaluator's model is not DDP-wrapped
    if not math.isfinite(score.loss):  # sampling and the run card would fail on NaN weights
        raise TinyLMError(f"the loss became NaN or infinite during training: the run is saved in {run_dir}, but its "
                          "weights are unusable; train a new run with a lower learning_rate (--set learning_rate=...)")
    bpb = f", {score.bits_per_byte:.4f} bits per byte" if score.bits_per_byte is not None else ""
    print(f"val perplexity (full split{score.note}): {math.exp(score.loss):.3f} (loss {score.loss:.4f}){bpb}")
    print(f"run saved in {run_dir}")
    if sample_chars:
        start = torch.tensor([prompt_ids(result.corpus.tokenizer, "")], device=trainer.device)  # (1, 1)
        out = generate(unwrap(trainer.model), start, max_new_tokens=sample_chars)
        print("---\n" + result.corpus.tokenizer.decode(out[0, 1:].tolist()))
    return score.loss
