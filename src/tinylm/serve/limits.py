"""What keeps ``tinylm serve`` responsive under load: a body cap, a bounded generation queue, cancellation.

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)   # 413 before a byte is parsed; 408 after 10 s
    slots = GenerationSlots(running=2, waiting=8)             # more at once: 503 with Retry-After
    req = parse_body(await request.body(), GenerateRequest)   # any content type; TinyLMError -> 400
    ticket = slots.admit()
    text = await slots.run(ticket, request, work)             # work(cancel, emit) in a worker thread
    async for piece in slots.stream(ticket, work): ...        # emit(piece) -> server-sent events

Generation (and the inspector's POST requests) runs in its own pool of ``running`` threads, never in
the pool that serves the page and ``/api/info``, and at most ``running + waiting`` requests are
admitted at once. ``work`` checks its
``cancel`` event between tokens: a client that disconnects (streaming or not) stops its generation
within one token, and its slot is free again.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tinylm.errors import TinyLMError

MAX_BODY_BYTES = 256 * 1024  # a 10,000-character prompt is at most ~120 KB of JSON (\uXXXX escapes)
BODY_TIMEOUT_S = 10.0  # 256 KB in 10 s is ~26 KB/s: any client that means it sends faster
RETRY_AFTER_S = 2
_END = object()

Work = Callable[[threading.Event, Callable[[str], None] | None], Any]


class ServerBusy(Exception):
    """Every generation slot and queue place is taken (HTTP 503 with Retry-After)."""


class ClientGone(Exception):
    """The client disconnected before its generation finished."""


class BodyLimit:
    """ASGI middleware: read at most ``max_bytes`` of a request body within ``timeout_s``, else answer
    413 (too large) or 408 (too slow) without parsing it. uvicorn itself waits for a body forever, so a
    client trickling one byte at a time would hold its connection (one of MAX_CONNECTIONS) for good."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, timeout_s: float = BODY_TIMEOUT_S):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            return await self._refuse(send, 413, f"request body larger than {self.max_bytes} bytes")
        try:
            body = await asyncio.wait_for(self._read_body(receive), self.timeout_s)
        except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
            return await self._refuse(send, 408, f"request body not received within {self.timeout_s:g} s")
        if body is None:  # the client left
            return None
        if len(body) > self.max_bytes:  # chunked bodies carry no Content-Length
            return await self._refuse(send, 413, f"request body larger than {self.max_bytes} bytes")
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()  # later reads: the disconnect notice
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read_body(self, receive) -> bytes | None:
        """The whole body, or its first ``max_bytes`` + 1 and more; None if the client disconnects."""
        body, more = b"", True
        while more and len(body) <= self.max_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
        return body

    async def _refuse(self, send, status: int, error: str) -> None:
        payload = json.dumps({"error": error}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw: bytes, model_class):
    """A pydantic model from a JSON body sent with any content type (curl -d sends a form type)."""
    from pydantic import ValidationError

    try:
        data = json.loads(raw.decode("utf-8") or "{}", parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise TinyLMError(f"bad request: the body is not UTF-8 (byte {exc.start}); send JSON in UTF-8") from None
    except ValueError as exc:
        raise TinyLMError(f"bad request: the body is not valid JSON ({exc})") from None
    except RecursionError:
        raise TinyLMError("bad request: the body nests too deeply; send a flat JSON object") from None
    if not isinstance(data, dict):
        raise TinyLMError(f"bad request: the body must be a JSON object, got {type(data).__name__}")
    try:
        return model_class.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        message = "unknown field" if first.get("type") == "extra_forbidden" else first.get("msg", "invalid")
        raise TinyLMError(f"bad request: {where}: {message}") from None


class Ticket:
    """One admitted request; released exactly once, from whichever thread finishes first."""

    def __init__(self, slots: GenerationSlots):
        self.slots, self._released = slots, False

    def release(self) -> None:
        with self.slots.lock:
            if not self._released:
                self._released = True
                self.slots.admitted -= 1


class GenerationSlots:
    def __init__(self, running: int, waiting: int, retry_after: int = RETRY_AFTER_S):
        if running < 1 or waiting < 0:
            raise TinyLMError(f"need at least 1 running generation and >= 0 waiting, got {running} and {waiting}")
        self.running, self.waiting, self.retry_after = running, waiting, retry_after
        self.pool = ThreadPoolExecutor(running, thread_name_prefix="tinylm-generate")
        self.lock = threading.Lock()
        self.admitted = 0
        self.active = 0

    def admit(self) -> Ticket:
        with self.lock:
            if self.admitted >= self.running + self.waiting:
                raise ServerBusy(f"the server is busy: {self.running} requests running and {self.waiting} "
                                 f"waiting; retry in {self.retry_after} s")
            self.admitted += 1
        return Ticket(self)

    def info(self) -> dict[str, int]:
        with self.lock:
            return {"running": self.active, "waiting": self.admitted - self.active,
                    "max_running": self.running, "max_waiting": self.waiting}

    def _submit(self, ticket: Ticket, work: Work, cancel: threading.Event, emit) -> Future:
        def counted():
            with self.lock:
                self.active += 1
            try:
                return work(cancel, emit)
            finally:
                with self.lock:
                    self.active -= 1

        future = self.pool.submit(counted)
        future.add_done_callback(lambda _: ticket.release())  # also when cancelled while waiting
        return future

    async def run(self, ticket: Ticket, request, work: Work) -> Any:
        """``work(cancel, None)``'s result; raises ClientGone (and stops the work) if the client leaves."""
        cancel = threading.Event()
        future = self._submit(ticket, work, cancel, None)
        waiting = asyncio.wrap_future(future)
        try:
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=0.1)
                if not waiting.done() and await request.is_disconnected():
                    raise ClientGone()
            return waiting.result()
        finally:
            cancel.set()
            future.cancel()

    async def stream(self, ticket: Ticket, work: Work) -> AsyncIterator[str]:
        """What ``work`` emits, as it comes; the work stops when the consumer stops (client gone)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        future = self._submit(ticket, work, cancel, emit)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, _END))
        try:
            while (item := await queue.get()) is not _END:
                yield item
            future.result()  # a worker's error surfaces here
        finally:
            cancel.set()
            future.cancel()
