"""``tinylm serve --run DIR``: the playground page and JSON API of ``tinylm.serve.app``.

    tinylm serve --run runs/a1                           # 1 torch thread per generation, up to 4 at once
    tinylm serve --run runs/a1 --threads 4 --max-generations 1 --queue 32

``--threads`` defaults to 1: a character model's matrices are too small for torch's thread pool to
pay off, and on a busy 2-core CPU its default made 2000-token requests take 16-100 s instead of
~0.5 s (issue 17). Concurrency comes from running ``--max-generations`` requests side by side.
"""

from __future__ import annotations

import argparse

from tinylm.errors import TinyLMError

# Open connections and tasks at once; beyond, uvicorn answers 503. Requests are bounded by their own
# queues, and a body must arrive within BODY_TIMEOUT_S (serve/limits.py); this bounds the rest: idle
# clients and slow request headers.
MAX_CONNECTIONS = 256


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="playground web page and JSON API for a run",
                                  description="Serve a playground page and a JSON API (needs tinylm[serve]).")
    serve.add_argument("--run", required=True, metavar="DIR", help="a run directory with a checkpoint")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--device", default="auto")
    serve.add_argument("--threads", type=int, default=1, metavar="N",
                       help="torch CPU threads (default: 1, best for serving several requests at once)")
    serve.add_argument("--max-generations", type=int, metavar="N",
                       help="generations running at once (default: one per core, at most 4)")
    serve.add_argument("--queue", type=int, default=16, metavar="N",
                       help="requests that may wait for a generation; beyond, 503 + Retry-After (default: 16)")
    serve.add_argument("--compile", action="store_true",
                       help="generate through compiled one-token steps: compiles at start (seconds), then "
                            "faster batch-1 sampling on a CPU; see tinylm sample --compile")
    serve.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)  # train --serve's child
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise TinyLMError("tinylm serve needs FastAPI and uvicorn: pip install -e '.[serve]'") from None
    import torch

    from tinylm.serve.app import create_app
    from tinylm.serve.background import check_port_free, exit_with_parent

    for name, value, low in [("--threads", args.threads, 1), ("--max-generations", args.max_generations, 1),
                             ("--queue", args.queue, 0)]:
        if value is not None and value < low:
            raise TinyLMError(f"{name} must be >= {low}, got {value}")
    check_port_free(args.host, args.port, "--port")
    torch.set_num_threads(args.threads)  # process-wide: every generation thread uses this many
    app = create_app(args.run, args.device, args.max_generations, args.queue, compiled=args.compile)
    print(f"tinylm playground on http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           limit_concurrency=MAX_CONNECTIONS))
    app.state.stopping = lambda: server.should_exit  # after Ctrl-C, open live-event streams end themselves
    if args.exit_with_parent:
        exit_with_parent()
    server.run()
    return 0
