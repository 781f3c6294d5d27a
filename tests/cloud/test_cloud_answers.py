"""RunPod answers that are malformed, hostile, huge or slow, from the local RunPod stand-in (``fake_runpod.py``).

Each ends as one ``tinylm: error:`` line (exit code 2), and a pod that was created is terminated.
The API server is the local stand-in scripted to answer badly; 'the pod' is the real local sshd.
"""

from __future__ import annotations

import json
import time

import pytest

from tinylm.cloud import runpod_api, session

from .fake_runpod import Slow
from .test_cloud_errors import one_error_line

POD_TARGET = {"provider": "runpod", "pod_id": "abc123", "user": "root", "host": "127.0.0.1", "port": 1,
              "remote_dir": "tinylm"}


def write_state(project, target: dict) -> None:
    (project.work / ".tinylm").mkdir(exist_ok=True)
    (project.work / ".tinylm" / "cloud.json").write_text(json.dumps({"target": target, "job": {}}))


@pytest.mark.parametrize("answer", [{"errors": []}, {}, 7, b"<html>502 Bad Gateway</html>", {"errors": "boom"},
                                    {"data": {"pod": "weird"}}, {"data": {"pod": ["a"]}}, {"data": None},
                                    b"[" * 100000 + b"]" * 100000],
                         ids=["empty-errors", "empty", "number", "html", "errors-text", "pod-text", "pod-list",
                              "no-data", "deep"])
def test_a_malformed_answer_is_one_line(project, answer):
    write_state(project, POD_TARGET)
    project.api.scripted["pod"] = [answer]
    line = one_error_line(project.main("down"))
    assert "RunPod answered something unexpected while reading the pod" in line


@pytest.mark.parametrize(("operation", "answer"), [
    ("gpuTypes", {"data": {"gpuTypes": None}}), ("gpuTypes", {"data": {"gpuTypes": [{"name": "x"}]}}),
    ("podFindAndDeployOnDemand", {"data": {"podFindAndDeployOnDemand": "notadict"}}),
])
def test_malformed_answers_to_up_are_one_line(project, operation, answer):
    project.api.scripted[operation] = [answer]
    line = one_error_line(project.main("up"))
    assert "RunPod answered something unexpected" in line and not project.api.pods


def test_status_shows_a_malformed_pod_as_unknown(project):
    write_state(project, POD_TARGET)
    project.api.scripted["pod"] = [{"data": {"pod": "weird"}}]
    result = project.main("status")
    assert result.returncode == 0 and "runpod: unknown (RunPod answered something unexpected" in result.stdout


def test_one_bad_answer_while_waiting_for_ssh_terminates_the_pod(project):
    project.api.scripted["pod"] = [{"errors": []}]  # the first poll of the new pod
    line = one_error_line(project.main("up", "--remote-dir", str(project.remote)))
    assert "something unexpected" in line and "pod fakepod1 was terminated" in line
    assert project.api.pods["fakepod1"]["status"] == "TERMINATED"
    assert json.loads((project.work / ".tinylm" / "cloud.json").read_text())["target"] == {}


def test_any_exception_while_waiting_terminates_the_pod(project, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr(session, "wait_for_ssh", broken)
    with pytest.raises(RuntimeError):
        project.main("up")
    assert project.api.pods["fakepod1"]["status"] == "TERMINATED"


@pytest.mark.parametrize("option", ["--wait-timeout", "--max-minutes"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e300"])
def test_non_finite_or_huge_spans_are_refused_before_any_pod(project, option, value):
    line = one_error_line(project.main("up", f"{option}={value}"))
    assert f"{option} must be a number above 0" in line and project.api.calls.total() == 0


@pytest.mark.parametrize("odd_id", ["pod.1", 12345, "x" * 65])
def test_a_pod_id_we_could_not_record_is_terminated_not_saved(project, odd_id):
    project.api.next_pod_id = odd_id
    line = one_error_line(project.main("up"))
    assert "RunPod answered a pod id tinylm cannot record" in line and "terminated at once" in line
    assert project.api.pods[str(odd_id)]["status"] == "TERMINATED"
    state = project.work / ".tinylm" / "cloud.json"
    assert not state.exists() or json.loads(state.read_text())["target"] == {}


def test_runpod_text_reaches_the_user_as_one_clean_line(project):
    write_state(project, POD_TARGET)
    project.api.scripted["pod"] = [{"errors": [{"message": "bad\nsecond line\x1b[31mRED\u202e\n" + "x" * 200000}]}]
    line = one_error_line(project.main("down"))
    assert "RunPod refused reading the pod: bad second lineRED xxx" in line and len(line) < 500
    assert "\x1b" not in line and "\u202e" not in line
    project.api.scripted["pod"] = [{"data": {"pod": {"desiredStatus": "RUN\nNING\x1b[2J", "costPerHr": "1\r\n2"}}}]
    status = project.main("status").stdout
    assert "runpod: RUN NING, $1 2/h" in status and "\x1b" not in status


def test_answers_are_capped_in_size_and_time(project, monkeypatch):
    write_state(project, POD_TARGET)
    monkeypatch.setattr(runpod_api, "MAX_BODY", 1000)
    project.api.scripted["pod"] = [{"data": {"pod": {"id": "abc123", "junk": "A" * 5000}}}]
    assert "answered more than" in one_error_line(project.main("down"))
    monkeypatch.setattr(runpod_api, "DEADLINE_S", 1.0)
    project.api.scripted["pod"] = [Slow(b'{"data": {"pod": null}}', delay=0.2)]  # 5 s in all, a byte at a time
    start = time.monotonic()
    line = one_error_line(project.main("down"))
    assert "did not answer within 1s" in line and time.monotonic() - start < 3
