"""The README's walkthrough runs as written, in order, on a fresh checkout (with tiny settings).

Blocks marked ``<!-- readme-test -->`` run in one bash session in a temp directory; ``tinylm`` there is
a shim for ``python -m tinylm`` that appends tiny model and step settings to every ``train`` command
(the README's own numbers come from full runs, listed in benchmarks/RESULTS.md).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TINY_TRAIN = ("--set n_layer=1 --set n_embed=16 --set n_heads=2 --set block_size=16 --set batch_size=4 "
              "--set max_iters=12 --set eval_interval=6 --set eval_iters=2 --set lr_decay_iters=12 "
              "--set warmup_iters=2 --set compile=false --sample-chars 20 --quiet")


def marked_blocks(text: str) -> list[str]:
    return re.findall(r"<!-- readme-test -->\n```bash\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_the_readme_command_blocks_run_in_order(tmp_path, shakespeare):
    blocks = marked_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "tinylm"
    shim.write_text(f'#!/bin/sh\nif [ "$1" = train ]; then exec {sys.executable} -m tinylm "$@" {TINY_TRAIN}; fi\n'
                    f'exec {sys.executable} -m tinylm "$@"\n')
    shim.chmod(0o755)
    work = tmp_path / "checkout"
    work.mkdir()
    script = "set -eu\n" + "\n".join(blocks)  # as typed in a shell: `yes | head` ends yes with SIGPIPE
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for picture in ("curves.png", "bigram.png", "attention.png", "next.png", "embeddings.png"):
        assert (work / picture).stat().st_size > 1000


def test_the_python_api_block_prints_what_the_readme_says(shakespeare, capsys):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    promised = re.search(r'"(step 0: perplexity: [0-9.]+, val perplexity: [0-9.]+)"', block).group(1)
    short = block.replace("Trainer(model, optimizer, train_loader, evaluator, 4001, 500)",
                          "Trainer(model, optimizer, train_loader, evaluator, 1, 500)")
    assert short != block
    exec(compile(short, "README.md", "exec"), {})
    assert promised in capsys.readouterr().out
