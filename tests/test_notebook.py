"""The teaching notebook: executed top to bottom by a real Jupyter kernel in quick mode, and the
committed copy checked to carry the outputs of a full run (numbers, samples and pictures)."""

import re
import subprocess
import sys

import pytest

from conftest import REPO

NOTEBOOK = REPO / "notebooks" / "how_language_models_work.ipynb"
MODELS = ("bigram model", "1-layer transformer", "3-layer transformer")
FINAL = re.compile(r"(bigram model|1-layer transformer|3-layer transformer): final perplexity ([\d.]+), "
                   r"val perplexity ([\d.]+)")

nbformat = pytest.importorskip("nbformat")


def stream_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream")


def images(nb) -> list[str]:
    return [o.data["image/png"] for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if "image/png" in o.get("data", {})]


def ensure_python3_kernel() -> None:
    """Install the ipykernel spec into this interpreter's prefix if no ``python3`` kernel is found."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"], check=True)


def test_committed_notebook_is_short_celled_and_carries_a_full_run():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert NOTEBOOK.stat().st_size < 2_000_000
    for cell in nb.cells:
        assert len(cell.source.splitlines()) <= 40, cell.source[:80]
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 10
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = stream_text(nb)
    assert "length of the text in characters: 1115394" in text
    assert "step 4000: perplexity:" in text and "step 8000: perplexity:" in text  # full, not quick
    finals = {name: float(train) for name, train, _ in FINAL.findall(text)}
    assert set(finals) == set(MODELS)
    # The core results table: about 11.8, 6.3-6.7 and 5.1-5.4 after the three full runs.
    assert 11.0 < finals["bigram model"] < 12.6
    assert 5.8 < finals["1-layer transformer"] < 7.2
    assert 4.6 < finals["3-layer transformer"] < 5.9
    assert len(images(nb)) == 5


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_in_quick_mode(shakespeare, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    ensure_python3_kernel()
    monkeypatch.setenv("TINYLM_NOTEBOOK_QUICK", "1")
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)  # the cloud cell must explain, not fail
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny matrices: one thread is faster on a shared CPU
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on any cell error

    text = stream_text(nb)
    assert "length of the text in characters: 1115394" in text
    assert "|".join(sorted(set(shakespeare))) in text
    assert "when input is [18, 47, 56, 57, 58, 1, 15, 47] the target is: 58" in text
    assert "step 40: perplexity:" in text and "step 4000" not in text  # quick mode: 41 steps
    finals = {name: float(val) for name, _, val in FINAL.findall(text)}
    assert set(finals) == set(MODELS) and all(1 < v < 120 for v in finals.values())
    cloud = [line for line in text.splitlines() if "RUNPOD_API_KEY" in line]
    assert len(cloud) == 1 and "tinylm cloud train --host user@ip" in cloud[0]
    assert "Traceback" not in text
    assert len(images(nb)) == 5
