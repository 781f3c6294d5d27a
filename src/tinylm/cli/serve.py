"""``tinylm serve --run DIR``: the playground page and JSON API of ``tinylm.serve.app``."""

from __future__ import annotations

import argparse
import os
import socket

from tinylm.errors import TinyLMError


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="playground web page and JSON API for a run",
                                  description="Serve a playground page and a JSON API (needs tinylm[serve]).")
    serve.add_argument("--run", required=True, metavar="DIR", help="a run directory with a checkpoint")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--device", default="auto")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise TinyLMError("tinylm serve needs FastAPI and uvicorn: pip install -e '.[serve]'") from None
    from tinylm.serve.app import create_app

    if not 0 <= args.port <= 65535:
        raise TinyLMError(f"--port must be in 0..65535, got {args.port}")
    try:  # fail with one line, before loading the model, if the port is taken
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as exc:
        raise TinyLMError(f"cannot listen on {args.host}:{args.port} ({os.strerror(exc.errno or 0)}); "
                          "pick another --port") from None
    app = create_app(args.run, args.device)
    print(f"tinylm playground on http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning"))
    app.state.stopping = lambda: server.should_exit  # after Ctrl-C, open live-event streams end themselves
    server.run()
    return 0
