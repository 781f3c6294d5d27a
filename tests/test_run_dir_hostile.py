"""Hostile run and export directories: bad metrics lines, config.json and tokenizer.json that are devices,
huge or nested without end, malformed char vocabularies, and --out directories that are not ours.

Each ends in one line (exit code 2) or, for a listing of many runs, in the other runs still listed.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import TINY
from runs_helper import make_run, metric
from tinylm.cli import main
from tinylm.config import RunConfig
from tinylm.errors import TinyLMError
from tinylm.export import export_run
from tinylm.jsonfile import read_json
from tinylm.report import report_markdown
from tinylm.training.rundir import RunDir

BAD_LINES = ['{}', '{"step": 1, "val_loss": "x"}', '{"step": 1, "time": "now"}', '{"step": 1, "time": 1e300}',
             '{"step": 1, "val_perplexity": null}', '{"step": -1}', '{"step": true}', '{"step": 1, "lr": NaN}']
DEEP = "[" * 100_000 + "]" * 100_000


def one_line_error(capsys, argv, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.mark.parametrize("line", BAD_LINES)
def test_a_metrics_line_with_a_wrong_field_is_skipped_with_a_warning(tmp_path, line):
    run = make_run(tmp_path / "r", metrics=[metric(0)])
    with open(RunDir(run).metrics, "a", encoding="utf-8") as f:
        f.write(line + "\n" + json.dumps(metric(10)) + "\n")
    warnings = []
    assert [m["step"] for m in RunDir(run).read_metrics(warn=warnings.append)] == [0, 10]
    assert len(warnings) == 1 and "line 2" in warnings[0]


def test_runs_lists_every_readable_run_whatever_the_others_hold(tmp_path, capsys):
    """Bad metrics, a nested or /dev/zero config.json: those runs drop out, the listing goes on."""
    runs = tmp_path / "runs"
    make_run(runs / "good", metrics=[metric(0), metric(10)])
    make_run(runs / "sparse", metrics=[{"step": 3}])  # only the required field: shown with "-"
    for name, line in zip(("bad0", "bad1", "bad2", "bad3"), BAD_LINES):
        make_run(runs / name, metrics=[])
        RunDir(runs / name).metrics.write_text(line + "\n")
    make_run(runs / "deep")
    (runs / "deep" / "config.json").write_text(DEEP)
    make_run(runs / "zero")
    (runs / "zero" / "config.json").unlink()
    (runs / "zero" / "config.json").symlink_to("/dev/zero")
    assert main(["runs", str(runs)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [row[0] for row in rows] == ["good", "sparse"]
    assert rows[1][2:] == ["3", "-", "-", "-", "-"]
    assert main(["runs", str(runs), "--sort", "val"]) == 0


def test_plot_and_the_run_card_take_lines_without_optional_fields(tmp_path):
    from tinylm.inspect.plots import plot_runs

    run = make_run(tmp_path / "r", metrics=[{"step": 0, "val_perplexity": 9.0}, {"step": 5}])
    assert plot_runs([run], tmp_path / "c.png") is not None and (tmp_path / "c.png").is_file()
    metrics = RunDir(run).read_metrics()
    cfg = RunConfig.from_dict(json.loads((run / "config.json").read_text()))
    card = report_markdown("r", cfg, {"step": 5}, metrics, None, 1.5, [], torch.device("cpu"), None)
    assert "| val loss (estimate) | - |" in card and "| wall time, first to last evaluation (s) | - |" in card


@pytest.fixture
def export(tmp_path):
    make_run(tmp_path / "run")
    return export_run(tmp_path / "run", "safetensors", tmp_path / "st")


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
@pytest.mark.parametrize("kind, fragment", [("zero", "not a regular file"), ("fifo", "not a regular file"),
                                            ("deep", "nested too deeply"), ("latin1", "not UTF-8 JSON")])
def test_an_export_whose_json_is_a_device_fifo_or_deep_is_one_line(export, capsys, name, kind, fragment):
    path = export / name
    path.unlink()
    make = {"zero": lambda: path.symlink_to("/dev/zero"), "fifo": lambda: os.mkfifo(path),
            "deep": lambda: path.write_text(DEEP), "latin1": lambda: path.write_bytes(b'{"caf\xe9": 1}')}
    make[kind]()
    one_line_error(capsys, ["sample", "--run", str(export), "--max-new-tokens", "2"], name, fragment)


def test_read_json_refuses_a_file_over_its_cap(tmp_path):
    """The cap (64 MB by default) is measured against a 32k-vocab BPE tokenizer.json: about 1 MB."""
    (tmp_path / "big.json").write_text(json.dumps(["x" * 100] * 100))
    with pytest.raises(TinyLMError, match="larger than"):
        read_json(tmp_path / "big.json", "fix it", max_bytes=2**20 // 128)
    assert read_json(tmp_path / "big.json", "fix it") == ["x" * 100] * 100


@pytest.mark.parametrize("chars, fragment", [([], "no tokenizer character list"), ("abc", "character list"),
                                             (["a", "a"], "not distinct single characters"),
                                             (["ab"], "not distinct single characters")])
def test_an_export_with_a_malformed_char_tokenizer_is_one_line(export, capsys, recwarn, chars, fragment):
    data = json.loads((export / "tokenizer.json").read_text())
    (export / "tokenizer.json").write_text(json.dumps({**data, "chars": chars}))
    one_line_error(capsys, ["sample", "--run", str(export), "--max-new-tokens", "2"], "tokenizer.json", fragment)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def _train(out, *extra):
    sets = [arg for item in TINY + ["max_iters=2", "eval_interval=2"] for arg in ("--set", item)]
    text = out.parent / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    return ["train", *sets, "--data", str(text), "--out", str(out), "--quiet", "--sample-chars", "0",
            "--device", "cpu", *extra]


def test_train_never_writes_into_a_directory_that_holds_other_files(export, tmp_path, capsys):
    """An export (model.safetensors, config.json, ...) or a user's files: refused, every byte unchanged."""
    before = {p.name: p.read_bytes() for p in export.iterdir()}
    one_line_error(capsys, _train(export), "is not empty", "--resume")
    assert {p.name: p.read_bytes() for p in export.iterdir()} == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    one_line_error(capsys, _train(tmp_path / "mine"), "notes.txt")
    (tmp_path / "afile").write_text("x")
    one_line_error(capsys, _train(tmp_path / "afile"), "is a file")


@pytest.mark.parametrize("left", [[], ["config.json", "tokenizer.json", ".config.json.ab12.tmp"]])
def test_train_starts_in_an_empty_directory_or_one_a_killed_start_left(tmp_path, capsys, left):
    out = tmp_path / "r"
    out.mkdir()
    for name in left:
        (out / name).write_text("{}")
    assert main(_train(out)) == 0, capsys.readouterr().err
    assert (out / "ckpt.pt").is_file() and json.loads((out / "config.json").read_text())["model"]["n_layer"] == 2


@pytest.mark.parametrize("name", ["metrics.jsonl", "config.json", "report.md"])
def test_a_directory_in_a_run_files_place_stops_a_resume_before_it_trains(tmp_path, capsys, name):
    """Found at the start, not at the first save (or at the run card, after the whole run)."""
    out = tmp_path / "r"
    assert main(_train(out)) == 0, capsys.readouterr().err
    before = (out / "ckpt.pt").read_bytes()
    (out / name).unlink()
    (out / name).mkdir()
    resume = ["train", "--out", str(out), "--resume", "--set", "max_iters=4", "--quiet", "--sample-chars", "0"]
    one_line_error(capsys, resume, f"{out / name} is a directory", "move it out")
    assert (out / "ckpt.pt").read_bytes() == before
