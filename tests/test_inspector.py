"""The inspector's JSON APIs and live events through a real ``tinylm serve`` process on 127.0.0.1.

The run directory holds seeded random weights (``runs_helper``): the numbers only have to agree
with ``tinylm.inspect.probe`` on the same checkpoint, not to be good predictions.
"""

import importlib.util
import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from conftest import REPO, TINY, free_port
from runs_helper import append_metric, make_run, metric, replace_checkpoint
from test_serve import post, wait_until_up
from tinylm.inspect import probe
from tinylm.training.rundir import load_run

pytestmark = pytest.mark.skipif(not importlib.util.find_spec("fastapi"), reason="needs tinylm[serve]")


def start_server(run) -> tuple[str, subprocess.Popen]:
    port = free_port()
    # the server computes with as many torch threads as this process, so its floats equal probe's here
    proc = subprocess.Popen([sys.executable, "-m", "tinylm", "serve", "--run", str(run), "--port", str(port),
                             "--device", "cpu", "--threads", str(torch.get_num_threads())],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, proc)
    return url, proc


def serve_random_run(tmp_path_factory):
    """(url, run dir) of a server over a seeded random tiny run; stops the server afterwards."""
    run = make_run(tmp_path_factory.mktemp("runs") / "r", seed=0, step=100, metrics=[metric(0), metric(50)])
    url, proc = start_server(run)
    try:
        yield url, run
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    yield from serve_random_run(tmp_path_factory)


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def api(url: str, payload: dict) -> dict:
    status, _, body = post(url, payload)
    assert status == 200, body
    return json.loads(body)


def test_attention_equals_probe(served):
    url, run = served
    model, tok, _, _ = load_run(run)
    text = "the lazy dog jumps over the fox"  # longer than block_size 16: the last 16 characters
    full = api(url + "/api/inspect/attention", {"text": text})
    expected = probe.attention_maps(model, tok, text)  # (L, H, T, T)
    assert full["tokens"] == list(text[-16:]) and full["offset"] == len(text) - 16
    assert full["weights"] == expected.tolist()  # exactly: the same float32 numbers
    one = api(url + "/api/inspect/attention", {"text": text, "layer": 1, "head": 0})
    assert one["weights"] == expected[1:2, 0:1].tolist()


def test_logit_lens_sampling_and_embeddings_equal_probe(served):
    url, run = served
    model, tok, _, _ = load_run(run)
    lens = api(url + "/api/inspect/logit-lens", {"text": "the quick", "k": 3})
    assert [layer["name"] for layer in lens["layers"]] == ["embeddings", "after block 1", "after block 2"]
    probs = probe.logit_lens(model, tok, "the quick")[:, -1]  # (L + 1, V)
    for row, layer in zip(probs, lens["layers"]):
        assert [item["p"] for item in layer["top"]] == row.topk(3).values.tolist()
        assert [tok.encode(item["char"])[0] for item in layer["top"]] == row.topk(3).indices.tolist()
    knobs = api(url + "/api/inspect/sampling", {"text": "the qu", "temperature": 0.7, "top_k": 4, "k": 10})
    dists = probe.sampling_distributions(model, tok, "the qu", 0.7, 4)
    assert knobs["kept"] == 4 and len(knobs["rows"]) == 10
    for row in knobs["rows"]:
        i = tok.encode(row["char"])[0]
        assert [row["model"], row["temperature"], row["sampled"]] == [dists[n][i].item() for n in dists]
    points = get(url + "/api/inspect/embeddings")["points"]
    assert [[p["x"], p["y"]] for p in points] == probe.embedding_pca(model).tolist()
    assert [p["char"] for p in points] == tok.chars
    info = get(url + "/api/inspect/model")
    assert (info["kind"], info["n_layer"], info["n_heads"], info["block_size"]) == ("GPT", 2, 2, 16)


def test_a_top_p_below_float32s_range_keeps_the_best_character(served):
    out = api(served[0] + "/api/inspect/sampling", {"text": "the", "top_p": 1e-46})
    assert out["kept"] == 1 and [row["sampled"] > 0 for row in out["rows"]].count(True) == 1


@pytest.mark.parametrize("path, payload, fragment", [
    ("/api/inspect/attention", {"text": "THE"}, "never saw"),
    ("/api/inspect/attention", {"text": ""}, "empty"),
    ("/api/inspect/attention", {"text": "the", "layer": 2}, "layer must be in 0..1"),
    ("/api/inspect/attention", {"text": "the", "head": -1}, "head must be"),
    ("/api/inspect/attention", {"text": "the", "colour": "red"}, "unknown field"),
    ("/api/inspect/attention", {"text": 5}, "text"),
    ("/api/inspect/logit-lens", {"text": "the", "k": 0}, "k must be"),
    ("/api/inspect/logit-lens", {"text": "the", "k": "3"}, "k"),
    ("/api/inspect/sampling", {"text": "the", "top_p": 1.5}, "top_p"),
    ("/api/inspect/sampling", {"text": "the", "temperature": -1.0}, "temperature"),
    ("/api/inspect/sampling", {"text": "x" * 10_001}, "at most"),
])
def test_bad_requests_get_400_with_one_line(served, path, payload, fragment):
    status, kind, body = post(served[0] + path, payload)
    assert status == 400 and kind.startswith("application/json"), (status, body)
    error = json.loads(body)["error"]
    assert fragment in error and "\n" not in error


def test_static_files_come_from_the_package_and_nothing_else(served):
    with urllib.request.urlopen(served[0] + "/static/inspector.js", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/javascript") and b"attention" in response.read()
    for name in ["../app.py", "playground.html", "%2e%2e%2fapp.py"]:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(served[0] + "/static/" + name, timeout=30)
        assert err.value.code == 404


def read_events(response, count: int, timeout: float = 60) -> list[tuple[str, dict]]:
    """The next ``count`` events of a server-sent event stream (comment lines skipped)."""
    events, fields, deadline = [], {}, time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        line = response.readline().decode().rstrip("\n")
        if line.startswith(("event: ", "data: ")):
            name, value = line.split(": ", 1)
            fields[name] = value
        elif line == "" and "data" in fields:
            events.append((fields.get("event", "message"), json.loads(fields["data"])))
            fields = {}
    return events


def test_live_events_follow_metrics_and_checkpoints(served):
    url, run = served
    with urllib.request.urlopen(url + "/api/live/events", timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = read_events(response, 4)
        assert [name for name, _ in events] == ["reset", "metric", "metric", "checkpoint"]
        assert [data["step"] for _, data in events[1:]] == [0, 50, 100]
        append_metric(run, 150)
        assert read_events(response, 1) == [("metric", metric(150))]
        replace_checkpoint(run, seed=3, step=200)
        name, data = read_events(response, 1)[0]
        assert (name, data["step"], data["version"], data["error"]) == ("checkpoint", 200, 2, None)
    model, tok, _, _ = load_run(run)
    assert get(url + "/api/inspect/model")["step"] == 200
    points = get(url + "/api/inspect/embeddings")["points"]
    assert [[p["x"], p["y"]] for p in points] == probe.embedding_pca(model).tolist()


@pytest.mark.slow
def test_ctrl_c_ends_the_server_while_a_live_stream_is_open(tmp_path):
    url, proc = start_server(make_run(tmp_path / "r"))
    with urllib.request.urlopen(url + "/api/live/events", timeout=60) as response:
        assert read_events(response, 1) == [("reset", {})]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130  # the CLI's "interrupted" exit, promptly: the stream ended itself
    assert "Traceback" not in proc.stdout.read()


@pytest.mark.slow
def test_train_serve_shows_the_run_as_it_trains(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 100, encoding="utf-8")
    port = free_port()
    sets = [arg for item in TINY + ["max_iters=41", "eval_interval=20", "threads=1"] for arg in ("--set", item)]
    argv = [sys.executable, "-m", "tinylm", "train", *sets, "--data", str(text), "--device", "cpu", "--quiet",
            "--sample-chars", "0"]
    proc = subprocess.Popen(argv + ["--out", str(tmp_path / "run"), "--serve", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, printed = f"http://127.0.0.1:{port}", []
    try:
        wait_until_up(url, proc)
        steps, evaluations = [], []
        with urllib.request.urlopen(url + "/api/live/events", timeout=120) as response:
            while not steps or steps[-1] < 41:  # evaluations at steps 0, 20, 40; the last save after step 41
                name, data = read_events(response, 1, timeout=120)[0]
                (steps if name == "checkpoint" else evaluations).append(data.get("step"))
        assert steps == sorted(steps) and evaluations[-3:] == [0, 20, 40]
        assert get(url + "/api/inspect/model")["step"] == 41
        assert len(api(url + "/api/inspect/attention", {"text": "the fox"})["weights"]) == 2
        # after the last checkpoint the run still writes its report: wait until it only serves
        while not printed or "training done" not in printed[-1] and printed[-1]:
            printed.append(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGINT)
        out = "".join(printed) + proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert f"watch it train: {url}" in out and "training done; the inspector stays" in out


def test_the_background_inspector_leaves_the_trainers_random_numbers_alone(tmp_path):
    """Loading a checkpoint builds a model, which draws from torch's global generator, the one dropout
    uses: served from a thread of the trainer, a run trained differently than unserved. Now a child
    process serves, and this process's generator is untouched while it loads and answers."""
    from tinylm.serve.background import BackgroundServer

    server = BackgroundServer(make_run(tmp_path / "r"), "127.0.0.1", free_port())  # making it draws: before
    before = torch.get_rng_state()
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                assert get(url + "/api/inspect/model")["step"] >= 0
                break
            except OSError:
                assert time.monotonic() < deadline and server.error is None, server.error
                time.sleep(0.2)
    finally:
        server.stop()
    assert torch.equal(torch.get_rng_state(), before) and server.error is None


@pytest.mark.slow
def test_bounded_load_200_requests_20_at_a_time(served):
    spec = importlib.util.spec_from_file_location("inspector_load", REPO / "benchmarks" / "inspector_load.py")
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    stats = load.run_load(served[0], total=200, concurrency=20)
    assert stats["errors"] == 0 and stats["requests"] == 200
    assert set(stats["endpoints"]) == {"all", "attention", "logit-lens", "sampling", "embeddings", "model"}
    assert get(served[0] + "/api/inspect/model")["error"] is None  # the server is still whole afterwards


def test_train_serve_refuses_ddp_and_a_taken_port_before_training(served, capsys, tmp_path):
    from tinylm.cli import main

    port = served[0].rsplit(":", 1)[1]
    out = str(tmp_path / "never")
    assert main(["train", "--serve", "8000", "--nproc", "2", "--out", out]) == 2
    assert "--serve works with one training process" in capsys.readouterr().err
    assert main(["train", "--serve", port, "--set", "device=cpu", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tinylm: error: cannot listen on 127.0.0.1:{port}") and err.count("\n") == 1
    assert not (tmp_path / "never").exists()  # nothing trained, nothing written


def test_a_port_taken_after_the_check_ends_the_inspector_with_one_line(tmp_path):
    """The port is checked before training, but the server binds it only once the first checkpoint exists:
    another process may take it in between. The child's one-line error is then the trainer's."""
    import socket

    from tinylm.serve.background import BackgroundServer

    port = free_port()
    server = BackgroundServer(make_run(tmp_path / "r"), "127.0.0.1", port)
    server.start()
    with socket.create_server(("127.0.0.1", port)):  # taken while the child starts
        server.wait()
    assert server.error.startswith(f"cannot listen on 127.0.0.1:{port}"), server.error
