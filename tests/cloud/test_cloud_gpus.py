"""``tinylm cloud up --gpus N``: RunPod is asked for N GPUs and ``cloud train`` runs torchrun on all of them.

RunPod's API is the local stand-in from ``fake_runpod.py``; 'the pod' is the real local sshd.
"""

from __future__ import annotations

import json

import pytest

from tinylm.cloud.job import RemoteJob


@pytest.mark.slow
def test_up_with_gpus_asks_runpod_for_them_and_remembers(project):
    up = project.cli("up", "--gpus", "2", "--remote-dir", str(project.remote))
    assert up.returncode == 0, up.stdout + up.stderr
    (pod,) = project.api.pods.values()
    assert "gpuCount: 2" in pod["query"]
    assert json.loads((project.work / ".tinylm" / "cloud.json").read_text())["target"]["gpus"] == 2


def test_train_on_several_gpus_runs_one_rank_per_gpu():
    assert RemoteJob(None, "a1", nproc=4).train_command().endswith(" --nproc 4")  # tinylm starts torchrun
    assert "--nproc" not in RemoteJob(None, "a1").train_command()


def test_gpus_must_be_positive(project):
    result = project.cli("up", "--gpus", "0")
    assert result.returncode == 2 and "--gpus must be at least 1" in result.stderr
    assert project.api.calls.total() == 0
