"""``tinylm.serve.live``: the newest checkpoint and the metrics lines of a run that is still training."""

import json
import os
import time

import torch

from runs_helper import append_metric, make_run, metric, replace_checkpoint
from tinylm.atomic import atomic_write
from tinylm.serve.live import LiveModel, MetricsTail
from tinylm.training.rundir import RunDir


def test_a_replaced_checkpoint_is_reloaded_and_a_damaged_one_is_not(tmp_path):
    run = make_run(tmp_path / "r", seed=0, step=10)
    live = LiveModel(run, torch.device("cpu"))
    first = live.current()
    assert (first.step, first.version) == (10, 1) and live.current() is first  # unchanged file: no reload
    atomic_write(RunDir(run).checkpoint, lambda f: f.write(b"PK\x03\x04 not a checkpoint"))
    assert live.current() is first and "damaged" in live.error  # the old model keeps serving
    replace_checkpoint(run, seed=1, step=20)
    second = live.current()
    assert (second.step, second.version, live.error) == (20, 2, None)
    assert not torch.equal(second.model.token_embedding.weight, first.model.token_embedding.weight)
    described = live.describe()
    assert described["step"] == 20 and len(described["sample"]) == 200 and described == live.describe()


def test_metrics_tail_sends_new_lines_waits_for_a_partial_one_and_resets_on_rewrite(tmp_path):
    run = make_run(tmp_path / "r", metrics=[metric(0), metric(10)])
    path = RunDir(run).metrics
    tail = MetricsTail(path)
    events = tail.poll()
    assert [name for name, _ in events] == ["metric", "metric"] and events[1][1]["step"] == 10
    assert tail.poll() == []
    line = json.dumps(metric(20))
    with open(path, "a", encoding="utf-8") as f:
        f.write(line[:15])  # the writer is mid-line
    assert tail.poll() == []
    with open(path, "a", encoding="utf-8") as f:
        f.write(line[15:] + "\nnot json\n[1, 2]\n" + '{"step": 30, "val_loss": NaN, "x": {"nested": 1}}\n')
    events = tail.poll()
    assert [data["step"] for _, data in events] == [20, 30]
    assert events[1][1] == {"step": 30, "val_loss": None}
    RunDir(run).save(replace_ok(run), [metric(0)])  # a new run in the same place: old lines are gone
    assert [name for name, _ in tail.poll()] == ["reset", "metric"]
    append_metric(run, 40)
    assert [data["step"] for _, data in tail.poll()] == [40]


def test_a_nested_line_or_a_fifo_in_place_of_metrics_jsonl_is_skipped(tmp_path):
    """A line of 100,000 nested brackets is not a metric; a FIFO is not read (it would block forever)."""
    run = make_run(tmp_path / "r", metrics=[metric(0)])
    path = RunDir(run).metrics
    with open(path, "a", encoding="utf-8") as f:
        f.write("[" * 100_000 + "]" * 100_000 + "\n")
    append_metric(run, 10)
    assert [data["step"] for _, data in MetricsTail(path).poll()] == [0, 10]
    path.unlink()
    os.mkfifo(path)
    began = time.monotonic()
    assert MetricsTail(path).poll() == [] and time.monotonic() - began < 5


def replace_ok(run):
    return RunDir(run).load_checkpoint()
