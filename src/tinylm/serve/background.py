"""Serve the inspector beside ``tinylm train --serve PORT``: ``tinylm serve`` in a child process.

    server = BackgroundServer("runs/a1", "127.0.0.1", 8000)
    server.start()            # a watcher thread: once the first ckpt.pt exists, it starts the server
    ...train...
    server.wait()             # until the server ends (Ctrl-C reaches both processes)
    server.stop()             # or end it now

Why a process and not a thread of the trainer: every model the server loads draws its initial
weights from torch's global random generator, which dropout in the training loop also draws from,
so a served run trained differently from the same run unserved. A child process has its own
generator, its own GIL and its own crash. It starts once the run's first checkpoint exists (the
trainer writes one at step 0, atomically) and ends with the trainer, even one killed with -9.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tinylm.errors import TinyLMError
from tinylm.training.rundir import RunDir

EXIT_INTERRUPTED = 130  # the CLI's code for Ctrl-C: the child got the terminal's SIGINT too


def check_port_free(host: str, port: int, option: str = "--serve port") -> None:
    """One-line error now, before any training or model loading, if the port cannot be bound."""
    if not 1 <= port <= 65535:  # 0 would let the OS pick, and the printed address would be wrong
        raise TinyLMError(f"{option} must be in 1..65535, got {port}")
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise TinyLMError(f"cannot listen on {host}:{port} ({os.strerror(exc.errno or 0)}); "
                          f"pick another {option}") from None


class BackgroundServer:
    def __init__(self, run_dir: str | Path, host: str, port: int, device_name: str = "cpu"):
        self.run, self.host, self.port, self.device_name = RunDir(run_dir), host, port, device_name
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # between starting the child and stopping it
        self._output = tempfile.TemporaryFile()  # the child's output: its last line says why it failed
        self.thread = threading.Thread(target=self._serve, name="tinylm-serve", daemon=True)

    def start(self) -> None:
        check_port_free(self.host, self.port)
        self.thread.start()

    def _serve(self) -> None:
        while not self.run.checkpoint.is_file():
            if self._stop.wait(0.2):
                return
        argv = [sys.executable, "-m", "tinylm", "serve", "--run", str(self.run.path), "--host", self.host,
                "--port", str(self.port), "--device", self.device_name, "--exit-with-parent"]
        with self._lock:
            if self._stop.is_set():
                return
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._output,
                                          stderr=subprocess.STDOUT)
        self._proc.wait()

    @property
    def error(self) -> str | None:
        """Why the server ended by itself (its last line of output), or None while it runs or after a stop."""
        code = self._proc.poll() if self._proc is not None else None
        if code is None or code in (0, EXIT_INTERRUPTED) or self._stop.is_set():
            return None
        self._output.seek(0)
        lines = [line for line in self._output.read().decode("utf-8", "replace").splitlines() if line.strip()]
        return lines[-1].removeprefix("tinylm: error: ") if lines else f"it exited with code {code}"

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stop.set()
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown; open streams end themselves
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
        self.thread.join(timeout)

    def wait(self) -> None:
        """Block until the server ends (Ctrl-C raises KeyboardInterrupt here, in the main thread)."""
        while self.thread.is_alive():
            time.sleep(0.2)


def exit_with_parent() -> None:
    """In ``tinylm serve --exit-with-parent``: end this server (as Ctrl-C would) once its parent is gone,
    e.g. a trainer killed with -9; the child is then handed to another parent, which the poll sees."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="tinylm-parent-watch", daemon=True).start()
