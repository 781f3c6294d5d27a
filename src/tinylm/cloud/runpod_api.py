"""RunPod's GraphQL endpoint through a small HTTP client of our own, with a size cap and one overall deadline.

    data = graphql(api_key, query, "reading the pod")    # the answer's "data" object, or one CloudError line

The SDK's ``requests.post`` reads an answer of any size, and its 30 s timeout counts per socket read,
so a server dripping a byte a second holds a call for ever. Here the whole exchange (name lookup,
connect, headers, body) must end within ``DEADLINE_S`` and the body fit in ``MAX_BODY``. Everything
RunPod says is outside text: ``one_line`` makes it printable before it reaches the user.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import tinylm
from tinylm.errors import TinyLMError

API_BASE_ENV = "RUNPOD_API_BASE_URL"
DEFAULT_API_BASE = "https://api.runpod.io"
MAX_BODY = 1 << 20  # RunPod's answers are a few KB
DEADLINE_S = 60.0
READ_S = 20.0  # one socket wait; the worker gives up at the deadline anyway
KEY_HELP = ("create an API key at https://www.runpod.io/console/user/settings (API Keys), then "
            "`export RUNPOD_API_KEY=...`; or use --host user@ip[:port] for any SSH machine")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")


class CloudError(TinyLMError):
    """A cloud problem the user can fix: key, GPU type, reachability, a failed or dropped remote run."""


class _TooBig(Exception):
    pass


def one_line(value: object, limit: int = 300) -> str:
    """``value`` as one printable line: escape sequences and control characters gone, at most ``limit`` chars."""
    text = _ANSI.sub("", str(value))
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def unexpected(doing: str, what: object) -> CloudError:
    return CloudError(f"RunPod answered something unexpected while {doing}: {one_line(repr(what), 120)}; "
                      f"retry later (or check ${API_BASE_ENV} if you set it)")


def api_url() -> str:
    base = os.environ.get(API_BASE_ENV) or DEFAULT_API_BASE
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CloudError(f"${API_BASE_ENV} must be an http(s) URL like {DEFAULT_API_BASE}, got {one_line(base, 80)!r}")
    return base.rstrip("/") + "/graphql"


def graphql(api_key: str, query: str, doing: str) -> dict[str, Any]:
    """POST ``query``; the answer's ``data`` object. Errors, refusals and odd shapes become one CloudError line."""
    url = api_url()
    request = urllib.request.Request(url, data=json.dumps({"query": query}).encode(), method="POST", headers={
        "Content-Type": "application/json", "User-Agent": f"tinylm/{tinylm.__version__}",
        "Authorization": f"Bearer {api_key}"})
    try:
        status, body = _exchange_within(request, time.monotonic() + DEADLINE_S)
    except TimeoutError:
        raise CloudError(f"the RunPod API at {url} did not answer within {DEADLINE_S:.0f}s while {doing}; "
                         "check your network, or retry later") from None
    except _TooBig:
        raise CloudError(f"the RunPod API at {url} answered more than {MAX_BODY >> 20} MB while {doing}; "
                         "retry later") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError and ssl errors are OSErrors
        raise CloudError(f"cannot reach the RunPod API at {url} while {doing} ({type(exc).__name__}); "
                         "check your network") from None
    if status == 401:
        raise CloudError(f"RunPod rejected the API key (401 Unauthorized) while {doing}: "
                         f"check RUNPOD_API_KEY or {KEY_HELP}")
    return _data(status, body, doing)


def _data(status: int, body: bytes, doing: str) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested deep enough to break the parser
        raise unexpected(doing, body[:100]) from None
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if isinstance(errors, list) and errors:
        first = errors[0]
        message = first.get("message", first) if isinstance(first, dict) else first
        raise CloudError(f"RunPod refused {doing}: {one_line(message)}")
    if status != 200:
        raise CloudError(f"the RunPod API answered HTTP {status} while {doing}: {one_line(body[:300])}; retry later")
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        raise unexpected(doing, answer)
    return data


def _exchange_within(request: urllib.request.Request, deadline: float) -> tuple[int, bytes]:
    """``_exchange`` in a worker thread we stop waiting for at ``deadline``: no read can hold us longer.

    An abandoned worker is a daemon that ends at its next read (it checks the deadline) or with the process."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["answer"] = _exchange(request, deadline)
        except BaseException as exc:  # handed to the caller's thread, which raises it
            box["error"] = exc

    worker = threading.Thread(target=work, name="runpod-api", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    return box["answer"]


def _exchange(request: urllib.request.Request, deadline: float) -> tuple[int, bytes]:
    try:
        response = urllib.request.urlopen(request, timeout=READ_S, context=_tls())
    except urllib.error.HTTPError as exc:  # 401 and 5xx answers carry a body too
        response = exc
    with response:
        chunks, size = [], 0
        while chunk := response.read1(65536):  # read1: returns what one read got, so the deadline is checked
            size += len(chunk)
            if size > MAX_BODY:
                raise _TooBig
            if time.monotonic() > deadline:
                raise TimeoutError
            chunks.append(chunk)
        return response.status, b"".join(chunks)


def _tls() -> ssl.SSLContext:
    """certifi's CA bundle where installed (as requests, and so the SDK, used), else the system's."""
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())
