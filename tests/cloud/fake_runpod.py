"""A local stand-in for RunPod's GraphQL API (https://api.runpod.io/graphql), for tests.

No machine here reaches RunPod, so this server answers the queries and mutations the official ``runpod``
SDK sends (``gpuTypes``, ``podFindAndDeployOnDemand``, ``pod``, ``podTerminate``, ``podStop``) with the
shapes RunPod returns. A created pod's public 22/tcp endpoint is the local sshd; its ``PUBLIC_KEY`` env
goes into that sshd's authorized_keys, as RunPod's images do. A wrong bearer key gets HTTP 401.
Each operation's ``input: {...}`` object is tokenised as GraphQL does (string escapes decoded, a
field given twice is an error, as GraphQL's input-field uniqueness rule makes it), so a value that
breaks out of its quotes shows up as a changed or duplicate argument, as it would at RunPod.

    api = FakeRunPod(ssh_port=2222, authorized_keys=Path("keys")); api.start()
    os.environ["RUNPOD_API_BASE_URL"] = api.url
    api.calls["podTerminate"]   # how many terminations were asked for
    api.scripted["pod"] = [{"errors": []}]   # the next `pod` query gets this answer (JSON, raw bytes or Slow)
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<num>-?\d+(?:\.\d+)?)'
                    r'|(?P<punct>[{}\[\]:,()]))')


class GraphQLInputError(ValueError):
    """What a GraphQL server answers for a malformed or duplicated input field."""


def _tokens(text: str) -> list[tuple[str, object]]:
    out, pos = [], 0
    while (match := _TOKEN.match(text, pos)) and match.end() > pos:
        pos, kind = match.end(), match.lastgroup
        out.append((kind, json.loads(match[kind]) if kind == "str" else match[kind]))
    return out


class _Parser:
    def __init__(self, tokens: list):
        self.tokens, self.i = tokens, 0

    def take(self, expected: str | None = None):
        if self.i >= len(self.tokens):
            raise GraphQLInputError("unexpected end of query")
        kind, value = self.tokens[self.i]
        self.i += 1
        if expected is not None and (kind == "str" or value != expected):
            raise GraphQLInputError(f"expected {expected!r}, got {value!r}")
        return kind, value

    def peek(self):
        """The next punctuation or name (never a string's content), or None."""
        if self.i >= len(self.tokens) or self.tokens[self.i][0] == "str":
            return None
        return self.tokens[self.i][1]

    def value(self):
        kind, token = self.take()
        if (kind, token) == ("punct", "{"):
            obj: dict = {}
            while self.peek() != "}":
                _, key = self.take()
                if key in obj:
                    raise GraphQLInputError(f"There can be only one input field named {key!r}")
                self.take(":")
                obj[key] = self.value()
                if self.peek() == ",":
                    self.take()
            self.take("}")
            return obj
        if (kind, token) == ("punct", "["):
            items = []
            while self.peek() != "]":
                items.append(self.value())
                if self.peek() == ",":
                    self.take()
            self.take("]")
            return items
        return token


def input_of(query: str, operation: str) -> dict:
    """The ``input: {...}`` argument of ``operation`` in ``query``, decoded as a GraphQL server would."""
    called = re.search(rf"\b{re.escape(operation)}\s*\(", query)  # `query pod {` names, `pod(` calls
    if called is None:
        return {}
    parser = _Parser(_tokens(query[called.end():]))
    parser.take("input")
    parser.take(":")
    return parser.value()


@dataclass
class Slow:
    """An answer sent one byte every ``delay`` seconds (a stalled or hostile server)."""

    body: bytes
    delay: float


GPUS = [{"id": "NVIDIA GeForce RTX 4090", "displayName": "RTX 4090", "memoryInGb": 24},
        {"id": "NVIDIA A100 80GB PCIe", "displayName": "A100 PCIe", "memoryInGb": 80},
        {"id": "NVIDIA H100 80GB HBM3", "displayName": "H100 SXM", "memoryInGb": 80}]


class FakeRunPod:
    def __init__(self, ssh_port: int, authorized_keys: Path, api_key: str | None = None):
        self.ssh_port = ssh_port  # what pods publish for 22/tcp; set to a closed port for "never reachable"
        self.public_ip = "127.0.0.1"  # what pods publish as their address (a test may make it hostile)
        self.authorized_keys = authorized_keys
        self.api_key = api_key or f"rp_test_{secrets.token_hex(12)}"  # the only valid key
        self.starting_polls = 1  # `pod` answers without a runtime this many times first, like a booting pod
        self.next_pod_id: object = None  # the id the next created pod gets (a test may make it odd), else fakepodN
        self.scripted: dict[str, list] = {}  # operation -> answers given instead of the real ones, in order
        self.pods: dict[str, dict] = {}  # each with the decoded "input" and the raw "query" that made it
        self.last_query = ""
        self.calls: Counter = Counter()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, query: str) -> object:
        with self.lock:
            for name, handle in [("podFindAndDeployOnDemand", self._create), ("podTerminate", self._terminate),
                                 ("podStop", self._stop), ("gpuTypes", self._gpus), ("pod(", self._pod)]:
                if name in query:
                    self.calls[name.rstrip("(")] += 1
                    self.last_query = query
                    if self.scripted.get(name.rstrip("(")):
                        return self.scripted[name.rstrip("(")].pop(0)
                    try:
                        return {"data": handle(input_of(query, name.rstrip("(")))}
                    except GraphQLInputError as exc:
                        return {"errors": [{"message": str(exc)}]}
        return {"errors": [{"message": "the RunPod stand-in does not know this query"}]}

    def _create(self, args: dict) -> dict:
        given = self.next_pod_id if self.next_pod_id is not None else f"fakepod{len(self.pods) + 1}"
        pod_id = str(given)
        env = {item["key"]: item["value"] for item in args.get("env", [])}
        with self.authorized_keys.open("a") as f:
            f.write(env["PUBLIC_KEY"] + "\n")
        self.pods[pod_id] = {"id": pod_id, "gpu": args["gpuTypeId"], "polls": 0, "status": "RUNNING",
                               "input": args, "query": self.last_query}
        return {"podFindAndDeployOnDemand": {"id": given, "imageName": "img", "env": [], "machineId": "m1",
                                             "machine": {"podHostId": f"{pod_id}-host"}}}

    def _pod(self, args: dict) -> dict:
        pod = self.pods.get(args["podId"])
        if pod is None or pod["status"] == "TERMINATED":
            return {"pod": None}
        pod["polls"] += 1
        runtime = None
        if pod["polls"] > self.starting_polls:
            runtime = {"ports": [{"ip": "10.0.0.5", "isIpPublic": False, "privatePort": 22, "publicPort": 22,
                                  "type": "tcp"},
                                 {"ip": self.public_ip, "isIpPublic": True, "privatePort": 22,
                                  "publicPort": self.ssh_port, "type": "tcp"}]}
        return {"pod": {"id": pod["id"], "desiredStatus": pod["status"], "costPerHr": 0.69,
                        "machine": {"gpuDisplayName": pod["gpu"]}, "runtime": runtime}}

    def _terminate(self, args: dict) -> dict:
        self.pods[args["podId"]]["status"] = "TERMINATED"
        return {"podTerminate": None}

    def _stop(self, args: dict) -> dict:
        self.pods[args["podId"]]["status"] = "EXITED"
        return {"podStop": {"id": "x", "desiredStatus": "EXITED"}}

    def _gpus(self, args: dict) -> dict:
        wanted = args.get("id")
        return {"gpuTypes": [g for g in GPUS if wanted is None or g["id"] == wanted]}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/graphql":
                    return self._send(404, {"error": "not found"})
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    fake.calls["unauthorized"] += 1
                    return self._send(401, {"error": "Unauthorized"})
                return self._send(200, fake.answer(json.loads(body)["query"]))

            def _send(self, status: int, payload: object):
                if isinstance(payload, Slow):
                    data, step, delay = payload.body, 1, payload.delay
                else:
                    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    step, delay = max(1, len(data)), 0.0
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                for start in range(0, len(data), step):
                    self.wfile.write(data[start:start + step])
                    self.wfile.flush()
                    time.sleep(delay)

            def log_message(self, *args):  # keep pytest output clean
                pass

        return Handler
