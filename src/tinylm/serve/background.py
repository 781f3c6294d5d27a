"""Serve the inspector from inside ``tinylm train --serve PORT``, beside the training loop.

    server = BackgroundServer("runs/a1", "127.0.0.1", 8000)
    server.start()            # a daemon thread: waits for the first ckpt.pt, then serves it
    ...train...
    server.stop()             # open live-event streams end, the thread exits

The server runs in a thread of the training process (uvicorn never touches signal handlers off the
main thread, so Ctrl-C still reaches the trainer). It starts once the run's first checkpoint exists:
the trainer writes one at step 0, atomically, so the first read sees a whole file.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from tinylm.errors import TinyLMError
from tinylm.training.rundir import RunDir


def check_port_free(host: str, port: int) -> None:
    """One-line error now, before any training, if the port cannot be bound."""
    if not 0 <= port <= 65535:
        raise TinyLMError(f"--serve port must be in 0..65535, got {port}")
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise TinyLMError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --serve port") from None


class BackgroundServer:
    def __init__(self, run_dir: str | Path, host: str, port: int, device_name: str = "cpu"):
        self.run, self.host, self.port, self.device_name = RunDir(run_dir), host, port, device_name
        self._server = None
        self._stop = threading.Event()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._serve, name="tinylm-serve", daemon=True)

    def start(self) -> None:
        check_port_free(self.host, self.port)
        self.thread.start()

    def _serve(self) -> None:
        import uvicorn

        from tinylm.serve.app import create_app

        while not self.run.checkpoint.is_file():  # the trainer writes it after the step-0 evaluation
            if self._stop.wait(0.2):
                return
        try:
            app = create_app(str(self.run.path), self.device_name)
        except TinyLMError as exc:
            self.error = str(exc)
            return
        self._server = uvicorn.Server(uvicorn.Config(app, host=self.host, port=self.port, log_level="warning"))
        app.state.stopping = lambda: self._server.should_exit
        self._server.run()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        self.thread.join(timeout)

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C raises KeyboardInterrupt here, in the main thread)."""
        while self.thread.is_alive():
            time.sleep(0.2)
