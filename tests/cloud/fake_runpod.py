"""A local stand-in for RunPod's GraphQL API (https://api.runpod.io/graphql), for tests.

No machine here reaches RunPod, so this server answers the queries and mutations the official ``runpod``
SDK sends (``gpuTypes``, ``podFindAndDeployOnDemand``, ``pod``, ``podTerminate``, ``podStop``) with the
shapes RunPod returns. A created pod's public 22/tcp endpoint is the local sshd; its ``PUBLIC_KEY`` env
goes into that sshd's authorized_keys, as RunPod's images do. A wrong bearer key gets HTTP 401.

    api = FakeRunPod(ssh_port=2222, authorized_keys=Path("keys")); api.start()
    os.environ["RUNPOD_API_BASE_URL"] = api.url
    api.calls["podTerminate"]   # how many terminations were asked for
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GPUS = [{"id": "NVIDIA GeForce RTX 4090", "displayName": "RTX 4090", "memoryInGb": 24},
        {"id": "NVIDIA A100 80GB PCIe", "displayName": "A100 PCIe", "memoryInGb": 80},
        {"id": "NVIDIA H100 80GB HBM3", "displayName": "H100 SXM", "memoryInGb": 80}]


class FakeRunPod:
    def __init__(self, ssh_port: int, authorized_keys: Path, api_key: str | None = None):
        self.ssh_port = ssh_port  # what pods publish for 22/tcp; set to a closed port for "never reachable"
        self.authorized_keys = authorized_keys
        self.api_key = api_key or f"rp_test_{secrets.token_hex(12)}"  # the only valid key
        self.starting_polls = 1  # `pod` answers without a runtime this many times first, like a booting pod
        self.pods: dict[str, dict] = {}
        self.calls: Counter = Counter()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, query: str) -> dict:
        with self.lock:
            for name, handle in [("podFindAndDeployOnDemand", self._create), ("podTerminate", self._terminate),
                                 ("podStop", self._stop), ("gpuTypes", self._gpus), ("pod(", self._pod)]:
                if name in query:
                    self.calls[name.rstrip("(")] += 1
                    return {"data": handle(query)}
        return {"errors": [{"message": "the RunPod stand-in does not know this query"}]}

    def _create(self, query: str) -> dict:
        pod_id = f"fakepod{len(self.pods) + 1}"
        env = dict(re.findall(r'\{ key: "([^"]*)", value: "([^"]*)" \}', query))
        with self.authorized_keys.open("a") as f:
            f.write(env["PUBLIC_KEY"] + "\n")
        gpu = re.search(r'gpuTypeId: "([^"]*)"', query)[1]
        self.pods[pod_id] = {"id": pod_id, "gpu": gpu, "polls": 0, "status": "RUNNING", "query": query}
        return {"podFindAndDeployOnDemand": {"id": pod_id, "imageName": "img", "env": [], "machineId": "m1",
                                             "machine": {"podHostId": f"{pod_id}-host"}}}

    def _pod(self, query: str) -> dict:
        pod = self.pods.get(re.search(r'podId: "([^"]*)"', query)[1])
        if pod is None or pod["status"] == "TERMINATED":
            return {"pod": None}
        pod["polls"] += 1
        runtime = None
        if pod["polls"] > self.starting_polls:
            runtime = {"ports": [{"ip": "10.0.0.5", "isIpPublic": False, "privatePort": 22, "publicPort": 22,
                                  "type": "tcp"},
                                 {"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22,
                                  "publicPort": self.ssh_port, "type": "tcp"}]}
        return {"pod": {"id": pod["id"], "desiredStatus": pod["status"], "costPerHr": 0.69,
                        "machine": {"gpuDisplayName": pod["gpu"]}, "runtime": runtime}}

    def _terminate(self, query: str) -> dict:
        self.pods[re.search(r'podId: "([^"]*)"', query)[1]]["status"] = "TERMINATED"
        return {"podTerminate": None}

    def _stop(self, query: str) -> dict:
        self.pods[re.search(r'podId: "([^"]*)"', query)[1]]["status"] = "EXITED"
        return {"podStop": {"id": "x", "desiredStatus": "EXITED"}}

    def _gpus(self, query: str) -> dict:
        wanted = re.search(r'gpuTypes\(input: \{id: "([^"]*)"\}\)', query)
        return {"gpuTypes": [g for g in GPUS if wanted is None or g["id"] == wanted[1]]}

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

            def _send(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep pytest output clean
                pass

        return Handler
