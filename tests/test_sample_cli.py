"""``tinylm sample``: --stream, --stop, --prompt-file, batched --num-samples and the -i loop.

The options go through ``tinylm.cli.main`` in-process (starting Python and torch costs seconds on a
loaded 2-core machine); the interactive loop runs as a real subprocess reading a piped stdin.
"""

import os
import subprocess
import sys

import pytest

from conftest import TINY
from tinylm.cli import main

TEXT = "the quick brown fox jumps over the lazy dog. " * 100


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_cache):
    from conftest import run_cli

    text = tmp_path_factory.mktemp("text") / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    run = tmp_path_factory.mktemp("runs") / "r"
    sets = [arg for item in TINY + ["max_iters=30", "eval_interval=30"] for arg in ("--set", item)]
    done = run_cli("train", *sets, "--data", str(text), "--out", str(run), "--device", "cpu", "--quiet",
                   "--sample-chars", "0")
    assert done.returncode == 0, done.stderr
    return str(run)


class Done:
    """What a CLI call printed, like subprocess.CompletedProcess."""

    def __init__(self, returncode: int, captured):
        self.returncode, self.stdout, self.stderr = returncode, captured.out, captured.err


@pytest.fixture
def cli_main(capsys):
    def call(*args: str) -> Done:
        returncode = main(list(args))
        return Done(returncode, capsys.readouterr())
    return call


def test_stream_prints_the_same_sample_as_the_batch_path(run_dir, cli_main):
    args = ("sample", "--run", run_dir, "--prompt", "the ", "--max-new-tokens", "40", "--seed", "3", "--device", "cpu")
    streamed, printed = cli_main(*args, "--stream"), cli_main(*args)
    assert streamed.returncode == 0 and printed.returncode == 0, streamed.stderr + printed.stderr
    assert streamed.stdout == printed.stdout
    assert streamed.stdout.startswith("the ") and len(streamed.stdout) == 4 + 40 + 1


def test_an_ensemble_of_a_run_with_itself_samples_what_the_run_does(run_dir, cli_main):
    """The mean of two equal distributions is that distribution: greedy text past block_size (16) is
    the run's own, through the ensemble's key/value caches. --compile compiles one model's step only."""
    args = ("sample", "--prompt", "the ", "--max-new-tokens", "60", "--temperature", "0", "--device", "cpu")
    alone, twice = cli_main(*args, "--run", run_dir), cli_main(*args, "--ensemble", run_dir, run_dir)
    assert alone.returncode == 0 and twice.returncode == 0, alone.stderr + twice.stderr
    assert twice.stdout == alone.stdout and len(alone.stdout) == 4 + 60 + 1
    refused = cli_main(*args, "--ensemble", run_dir, run_dir, "--compile")
    assert refused.returncode == 2 and "--ensemble without --compile" in refused.stderr
    assert refused.stderr.count("\n") == 1


@pytest.mark.slow
def test_compiled_steps_print_the_same_samples(run_dir, cli_main):
    args = ("sample", "--run", run_dir, "--prompt", "the ", "--max-new-tokens", "60", "--seed", "5", "--device", "cpu")
    plain, compiled = cli_main(*args), cli_main(*args, "--compile")
    assert plain.returncode == 0 and compiled.returncode == 0, plain.stderr + compiled.stderr
    assert compiled.stdout == plain.stdout and len(plain.stdout) == 4 + 60 + 1


@pytest.mark.slow
def test_compile_without_a_working_compiler_is_one_line(run_dir, tmp_path):
    from conftest import run_cli

    env = {"CXX": str(tmp_path / "no-such-g++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = run_cli("sample", "--run", run_dir, "--max-new-tokens", "5", "--device", "cpu", "--compile", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "could not build the decode step" in done.stderr
    assert "no --compile" in done.stderr


def test_stop_ends_every_sample_of_one_batch_at_the_string(run_dir, cli_main):
    done = cli_main("sample", "--run", run_dir, "--prompt", "the ", "--max-new-tokens", "300", "--stop", "o",
                    "--num-samples", "3", "--seed", "1", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    samples = done.stdout.rstrip("\n").split("\n---\n")
    assert len(samples) == 3
    for sample in samples:
        continuation = sample[len("the "):]
        assert continuation.endswith("o") and continuation.count("o") == 1, sample
    streamed = cli_main("sample", "--run", run_dir, "--prompt", "the ", "--max-new-tokens", "300", "--stop", "o",
                        "--stream", "--seed", "1", "--device", "cpu")
    assert streamed.stdout.endswith("o\n") and streamed.stdout.count("o") == 1


def test_prompt_file_and_user_errors(run_dir, cli_main, tmp_path):
    from tinylm.cli.sample import MAX_PROMPT_BYTES

    prompt = tmp_path / "prompt.txt"
    prompt.write_text("the lazy ", encoding="utf-8")
    done = cli_main("sample", "--run", run_dir, "--prompt-file", str(prompt), "--max-new-tokens", "5")
    assert done.returncode == 0 and done.stdout.startswith("the lazy ") and len(done.stdout) == 9 + 5 + 1
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(MAX_PROMPT_BYTES + 1)  # sparse: takes no disk
    for args, fragment in [(["--prompt-file", str(tmp_path / "missing.txt")], "prompt file not found"),
                           (["--prompt-file", "/dev/zero"], "not a regular file"),  # never ends: was read until OOM
                           (["--prompt-file", str(tmp_path)], "not a regular file"),
                           (["--prompt-file", str(big)], "at most 8 MB"),
                           (["--prompt", "x", "--prompt-file", str(prompt)], "not both"),
                           (["--stream", "--num-samples", "2"], "--stream"),
                           (["--stop", ""], "--stop"),
                           (["--prompt", "THE"], "never saw")]:
        bad = cli_main("sample", "--run", run_dir, *args)
        assert bad.returncode == 2 and bad.stdout == "", bad.stdout
        assert bad.stderr.startswith("tinylm: error:") and fragment in bad.stderr, bad.stderr


def test_lengths_and_sample_counts_past_the_limits_are_one_line_and_a_bad_len_keeps_the_loop(run_dir, cli_main):
    from tinylm.cli.sample import apply_command
    from tinylm.sampling import SamplingOptions

    for args, fragment in [(["--max-new-tokens", "99999999999999"], "<= 1000000"),
                           (["--num-samples", "10000000", "--max-new-tokens", "2"], "--num-samples must be <= 10,000"),
                           (["--num-samples", "10000", "--max-new-tokens", "10000"], "ask for fewer samples")]:
        bad = cli_main("sample", "--run", run_dir, "--device", "cpu", *args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and fragment in bad.stderr, bad.stderr
    sampling = SamplingOptions(max_new_tokens=12)
    assert apply_command("/len 99999999999999", sampling).startswith("not changed") and sampling.max_new_tokens == 12


@pytest.mark.parametrize("device", ["nan", "cpu:5", "CUDA"])
def test_a_device_tinylm_does_not_know_is_named_as_the_device_not_a_damaged_checkpoint(run_dir, cli_main, device):
    for command in ("sample", "eval"):
        bad = cli_main(command, "--run", run_dir, "--device", device)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        assert "--device" in bad.stderr and "auto, cpu, cuda, cuda:N or mps" in bad.stderr, bad.stderr


def test_interactive_loop_with_piped_stdin(run_dir):
    script = "the \n/temp 0\nthe \nthe \n/temp lots\n/top-k 0\nZZZ\n/bogus\n/quit\nthe \n"
    done = subprocess.run([sys.executable, "-m", "tinylm", "sample", "--run", run_dir, "-i",
                           "--max-new-tokens", "12"], input=script, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("tinylm interactive:")
    assert "temperature = 0.0" in out and "/temp needs a number" in out and "top_k = None" in out
    assert "never saw 'Z'" in out and "unknown command '/bogus'" in out
    continuations = [line.split("> ")[-1] for line in out.splitlines() if line.endswith(tuple(TEXT)) and "the " in line]
    greedy = [c for c in continuations if c.startswith("the ")][1:3]
    assert len(greedy) == 2 and greedy[0] == greedy[1] and len(greedy[0]) == 4 + 12  # temperature 0: same text
    assert out.count("> ") == 9  # /quit ends the loop: the prompt after it is never read
