"""The real CLI in a subprocess: the happy path, and every bad input giving one line and exit code 2."""

import json

import pytest

from conftest import TINY

TINY_SET = [arg for item in TINY + ["max_iters=12", "eval_interval=6"] for arg in ("--set", item)]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_cache):
    from conftest import run_cli

    text = tmp_path_factory.mktemp("text") / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 100, encoding="utf-8")
    run_dir = tmp_path_factory.mktemp("runs") / "r"
    done = run_cli("train", *TINY_SET, "--data", str(text), "--out", str(run_dir), "--device", "cpu", "--quiet")
    assert done.returncode == 0, done.stderr
    return run_dir, text, done


def assert_user_error(done, *fragments):
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinylm: error:"), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def main_in_process(capsys, *args):
    """The CLI in this process, for refusals that come before any training: no interpreter to start."""
    from types import SimpleNamespace

    from tinylm.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def test_train_prints_evals_val_perplexity_and_a_sample(trained_run):
    run_dir, _, done = trained_run
    assert "step 0: perplexity:" in done.stdout and "step 11: perplexity:" in done.stdout
    assert "val perplexity (full split):" in done.stdout
    assert (run_dir / "ckpt.pt").is_file()


def test_sample_and_eval(trained_run, cli):
    run_dir, text, _ = trained_run
    done = cli("sample", "--run", str(run_dir), "--prompt", "the ", "--max-new-tokens", "20", "--num-samples", "2")
    assert done.returncode == 0, done.stderr
    samples = done.stdout.strip().split("\n---\n")
    assert len(samples) == 2 and all(s.startswith("the ") and len(s) == 24 for s in samples)
    again = cli("sample", "--run", str(run_dir), "--prompt", "the ", "--max-new-tokens", "20", "--num-samples", "2")
    assert again.stdout == done.stdout  # same seed, same text
    done = cli("eval", "--run", str(run_dir))
    assert done.returncode == 0 and "val perplexity:" in done.stdout and "train perplexity:" in done.stdout


def test_python_dash_m_and_help(cli):
    for command in ([], ["train"], ["sample"], ["eval"]):
        done = cli(*command, "--help")
        assert done.returncode == 0 and "usage: tinylm" in done.stdout


def test_resume_continues_and_an_existing_run_is_not_overwritten(trained_run, cli, tmp_path):
    run_dir, text, _ = trained_run
    before = (run_dir / "ckpt.pt").read_bytes()
    done = cli("train", *TINY_SET, "--data", str(text), "--out", str(run_dir))
    assert_user_error(done, "already holds a run", "--resume")
    assert (run_dir / "ckpt.pt").read_bytes() == before
    done = cli("train", "--out", str(run_dir), "--resume", "--set", "max_iters=18", "--quiet", "--sample-chars", "0")
    assert done.returncode == 0, done.stderr
    assert "step 12: perplexity:" in done.stdout and "step 17: perplexity:" in done.stdout
    assert json.loads((run_dir / "config.json").read_text())["train"]["max_iters"] == 18  # as resumed, not as begun


@pytest.mark.parametrize("source", [["--preset", "bigram"], ["--config", "c.toml"], ["--config-json", "{}"]])
def test_resume_refuses_the_config_sources_it_would_ignore(capsys, tmp_path, source):
    done = main_in_process(capsys, "train", "--out", str(tmp_path), "--resume", *source)
    assert_user_error(done, f"{source[0]} cannot be used with --resume", "give changes as --set key=value")


def test_resume_refuses_a_max_iters_below_the_step_the_run_is_at(trained_run, capsys):
    from tinylm.training.rundir import RunDir

    run_dir, _, _ = trained_run
    before = (run_dir / "ckpt.pt").read_bytes()
    step = RunDir(run_dir).load_checkpoint()["step"]
    done = main_in_process(capsys, "train", "--out", str(run_dir), "--resume", "--set", f"max_iters={step - 1}")
    assert_user_error(done, f"the run is already at step {step}")
    assert (run_dir / "ckpt.pt").read_bytes() == before


@pytest.mark.parametrize("args, fragment", [
    (["--seed", "99999999999999999999"], "seed must be in [0, 2**63 - 1]"),
    (["--sample-chars", "-1"], "--sample-chars must be >= 0"),
])
def test_bad_train_options_are_one_line_before_any_training(capsys, tmp_path, small_text, args, fragment):
    done = main_in_process(capsys, "train", *TINY_SET, "--data", str(small_text), "--out", str(tmp_path / "r"),
                           "--device", "cpu", "--quiet", *args)
    assert_user_error(done, fragment)
    assert not (tmp_path / "r").exists() and "step 0" not in done.stdout


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_data_path_that_is_not_a_regular_file_is_named_so(capsys, tmp_path, kind):
    import os

    path = "/dev/null" if kind == "device" else str(tmp_path / "fifo")
    if kind == "fifo":
        os.mkfifo(path)
    done = main_in_process(capsys, "train", *TINY_SET, "--data", path, "--out", str(tmp_path / "r"), "--device", "cpu")
    assert_user_error(done, f"data file {path} is not a regular file")
    assert "prepare SOURCE" not in done.stderr  # no advice to prepare a dataset over a device or FIFO


@pytest.mark.parametrize("content", [b"", "caf\u00e9".encode("latin-1"), b"too short"])
def test_bad_data_files(cli, tmp_path, content):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    done = cli("train", *TINY_SET, "--data", str(path), "--out", str(tmp_path / "r"))
    assert_user_error(done, str(path) if content != b"too short" else "block_size")
    assert not (tmp_path / "r" / "ckpt.pt").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--set", "n_embed=30", "--set", "n_heads=4"], "divisible by n_heads"),
    (["--set", "learning_rate=0"], "learning_rate must be positive"),
    (["--set", "max_iters=-1"], "max_iters must be a positive"),
    (["--set", "batch_size=0"], "batch_size must be a positive"),
    (["--set", "block_size=0"], "block_size must be a positive"),
    (["--set", "dropout=1.5"], "dropout must be in [0, 1)"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--set", "n_embd=64"], "unknown config key 'n_embd'"),
    (["--config-json", '{"max_iters": "many"}'], "'max_iters' must be int"),
    (["--set", "max_iters=lots"], "'max_iters' must be int"),
    (["--device", "cuda"], "no CUDA GPU"),
])
def test_bad_configs(cli, tmp_path, small_text, args, fragment):
    done = cli("train", "--data", str(small_text), "--out", str(tmp_path / "r"), *args)
    assert_user_error(done, fragment)


def test_bad_config_file(cli, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"n_layers": 2}))
    assert_user_error(cli("train", "--config", str(path)), "unknown config key 'n_layers'")
    assert_user_error(cli("train", "--config", str(tmp_path / "missing.toml")), "config file not found")


def test_a_config_file_that_never_ends_or_is_not_a_file_is_one_line(capsys, tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.toml")  # nothing writes to it: reading would wait forever
    for path in ("/dev/zero", str(tmp_path), str(tmp_path / "fifo.toml")):
        done = main_in_process(capsys, "train", "--config", path, "--out", str(tmp_path / "r"))
        assert_user_error(done, f"config file {path} is not a regular file")


def test_bad_run_dirs(cli, tmp_path):
    assert_user_error(cli("sample", "--run", str(tmp_path / "nope")), "run directory not found")
    assert_user_error(cli("eval", "--run", str(tmp_path)), "no checkpoint in")
    assert_user_error(cli("train", "--resume", "--out", str(tmp_path)), "no checkpoint in")


def test_truncated_checkpoint(cli, trained_run, tmp_path):
    run_dir, _, _ = trained_run
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ckpt.pt").write_bytes((run_dir / "ckpt.pt").read_bytes()[:1000])
    assert_user_error(cli("sample", "--run", str(broken)), "damaged or truncated")


def test_prompt_with_unseen_characters(cli, trained_run):
    run_dir, _, _ = trained_run
    assert_user_error(cli("sample", "--run", str(run_dir), "--prompt", "ZEUS!"), "'!' 'E' 'S' 'U' 'Z'")


@pytest.mark.parametrize("args, fragment", [
    (["--temperature", "-1"], "temperature must be"), (["--temperature", "500"], "temperature must be"),
    (["--temperature", "nan"], "temperature must be"), (["--temperature", "1e-40"], "temperature must be"),
    (["--top-k", "0"], "top_k must be"), (["--top-p", "1.5"], "top_p must be"),
    (["--num-samples", "0"], "num_samples must be"), (["--seed", str(2**64)], "seed must be"),
])
def test_bad_sampling_options(cli, trained_run, args, fragment):
    run_dir, _, _ = trained_run
    assert_user_error(cli("sample", "--run", str(run_dir), *args), fragment)


def test_version_and_a_mistyped_config_key_get_one_line(cli):
    from tinylm import __version__

    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"tinylm {__version__}"
    done = cli("train", "--max-iters", "100")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--set max_iters=VALUE" in lines[0], done.stderr
    done = cli("sample", "--bogus")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_pictures_refuse_a_missing_directory_and_follow_the_suffix(cli, trained_run, tmp_path):
    run_dir, _, _ = trained_run
    missing = tmp_path / "nonexistent" / "x.png"
    assert_user_error(cli("viz", "embeddings", "--run", str(run_dir), "--out", str(missing)), "does not exist")
    assert not missing.parent.exists()
    assert_user_error(cli("plot", str(run_dir), "--out", str(tmp_path / "c.gif")), ".png")
    jpg = tmp_path / "c.jpg"
    done = cli("plot", str(run_dir), "--out", str(jpg))
    assert done.returncode == 0, done.stderr
    assert jpg.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, not PNG bytes under a .jpg name
