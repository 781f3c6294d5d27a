"""Training from a prepared directory: memmapped batches, bits per byte, byte/BPE runs end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import TINY
from tinylm.config import load_config
from tinylm.data import BatchLoader, ByteTokenizer
from tinylm.data.loader import MemmapLoader
from tinylm.data.prepare import PrepareOptions, prepare
from tinylm.evaluate import bits_per_byte, exact_loss
from tinylm.model import build_model


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_memmap_batches_equal_in_memory_batches_for_the_same_seed(tmp_path, dtype):
    tokens = np.random.default_rng(0).integers(0, 300, size=5000).astype(dtype)
    tokens.tofile(tmp_path / "train.bin")
    shard = np.memmap(tmp_path / "train.bin", dtype=dtype, mode="r", shape=(5000,))
    mapped = MemmapLoader(shard, block_size=16, batch_size=4, seed=7)
    memory = BatchLoader(torch.from_numpy(tokens.astype(np.int64)), block_size=16, batch_size=4, seed=7)
    for _ in range(3):
        for (xa, ya), (xb, yb) in zip(mapped.get_micro_batches(2, rank=1, world_size=2),
                                      memory.get_micro_batches(2, rank=1, world_size=2)):
            assert xa.dtype == torch.long and torch.equal(xa, xb) and torch.equal(ya, yb)
    state = mapped.state_dict()
    expected = mapped.get_batch()
    mapped.load_state_dict(state)
    assert torch.equal(mapped.get_batch()[0], expected[0])
    generator = torch.Generator().manual_seed(3)
    assert torch.equal(mapped.get_batch(generator)[0], memory.get_batch(torch.Generator().manual_seed(3))[0])


def test_bits_per_byte_of_a_fresh_byte_model_on_random_bytes_is_about_log2_vocab():
    """A freshly initialised model is near-uniform over its 257 tokens, and each byte is one token."""
    torch.manual_seed(0)
    cfg = load_config(overrides=TINY)
    model = build_model(cfg.model, ByteTokenizer.vocab_size).eval()
    data = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=2000))
    loss = exact_loss(model, data)
    assert bits_per_byte(loss, 1.0) == pytest.approx(math.log2(257), abs=0.05)
    assert bits_per_byte(math.log(2), 0.5) == pytest.approx(0.5)  # two bytes a token: half a bit per byte


class Scripted(torch.nn.Module):
    """A stand-in model that always predicts the next token of ``script`` (greedy sampling follows it)."""

    block_size = 1000

    def __init__(self, script: list[int], vocab_size: int, prompt_len: int):
        super().__init__()
        self.script, self.vocab_size, self.prompt_len = script, vocab_size, prompt_len
        self.weight = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, idx):
        logits = torch.zeros(idx.size(0), idx.size(1), self.vocab_size)
        logits[:, -1, self.script[idx.size(1) - self.prompt_len]] = 1.0
        return logits, None


def test_streamed_text_never_splits_a_utf8_character():
    from tinylm.sampling import SamplingOptions, sample_texts, stream_text

    tok, text = ByteTokenizer(), "é✓😀 ok"
    script = tok.encode(text) + [0xF0, 0x9F]  # ends with half of a 4-byte character
    model = Scripted(script, tok.vocab_size, prompt_len=1)
    options = SamplingOptions(max_new_tokens=len(script), temperature=0)
    pieces = list(stream_text(model, tok, "", options))
    assert pieces[:4] == ["é", "✓", "😀", " "] and "".join(pieces) == text + "\ufffd"
    assert sample_texts(model, tok, "a", options, num_samples=2) == [text + "\ufffd"] * 2
    assert list(stream_text(model, tok, "a", options, stop="✓")) == ["é", "✓"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_train_eval_and_sample_from_a_prepared_directory(cli, small_text, tmp_path, kind):
    data, run = tmp_path / "data", tmp_path / "run"
    prepare([str(small_text)], data, PrepareOptions(tokenizer=kind, vocab_size=300, progress=False))
    trained = cli("train", "--data", str(data), "--out", str(run), "--quiet", "--sample-chars", "40",
                  *[a for kv in TINY + ["max_iters=30", "eval_interval=10"] for a in ("--set", kv)])
    assert trained.returncode == 0, trained.stderr
    assert "step 0: perplexity: " in trained.stdout and ", val bpb: " in trained.stdout
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["val_bpb"] < metrics[0]["val_bpb"]
    meta = json.loads((data / "meta.json").read_text())
    expected = metrics[-1]["val_loss"] * meta["splits"]["val"]["tokens"] / meta["splits"]["val"]["bytes"] / math.log(2)
    assert metrics[-1]["val_bpb"] == pytest.approx(expected)
    evaluated = cli("eval", "--run", str(run), "--data", str(data))
    assert evaluated.returncode == 0 and "bits per byte" in evaluated.stdout, evaluated.stderr
    sampled = cli("sample", "--run", str(run), "--prompt", "First", "--max-new-tokens", "30", "--stream")
    assert sampled.returncode == 0 and sampled.stdout.startswith("First"), sampled.stderr


@pytest.mark.slow
def test_resuming_with_data_of_another_tokenizer_is_one_line(cli, small_text, tmp_path):
    char_run = tmp_path / "run"
    done = cli("train", "--data", str(small_text), "--out", str(char_run), "--quiet", "--sample-chars", "0",
               *[a for kv in TINY + ["max_iters=2", "eval_interval=1"] for a in ("--set", kv)])
    assert done.returncode == 0, done.stderr
    prepare([str(small_text)], tmp_path / "bytes", PrepareOptions(tokenizer="byte", progress=False))
    resumed = cli("train", "--resume", "--out", str(char_run), "--data", str(tmp_path / "bytes"),
                  "--set", "max_iters=4")
    assert resumed.returncode == 2 and resumed.stderr.count("\n") == 1, resumed.stderr
    assert "uses another tokenizer (byte, vocab 257) than this run (char" in resumed.stderr
    (tmp_path / "other.txt").write_text("Zebra quartz!\n" * 200, encoding="utf-8")
    evaluated = cli("eval", "--run", str(char_run), "--data", str(tmp_path / "other.txt"))
    assert evaluated.returncode == 2 and f"data file {tmp_path / 'other.txt'} has characters" in evaluated.stderr
    assert "prompt" not in evaluated.stderr


@pytest.mark.slow
def test_ddp_with_a_prepared_directory(cli, small_text, tmp_path):
    """2 ranks (gloo, CPU) map the same shard; rank r takes its rows of the global batch, as BatchLoader does."""
    prepare([str(small_text)], tmp_path / "data", PrepareOptions(tokenizer="byte", progress=False))
    done = cli("train", "--nproc", "2", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--quiet",
               "--sample-chars", "0", "--device", "cpu",
               *[a for kv in TINY + ["max_iters=6", "eval_interval=5"] for a in ("--set", kv)])
    assert done.returncode == 0, done.stderr
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 5] and all("val_bpb" in m for m in metrics)


def test_a_crlf_text_trains_on_lf_unless_kept(tmp_path):
    from tinylm.training.run import prepare_corpus

    path = tmp_path / "crlf.txt"
    path.write_bytes(b"To be, or not to be\r\n" * 40)
    lf = prepare_corpus(load_config(overrides=[f"data={path}"]))
    kept = prepare_corpus(load_config(overrides=[f"data={path}", "keep_crlf=true"]))
    assert "\r" not in lf.tokenizer.chars and "\r" in kept.tokenizer.chars
    assert lf.tokenizer.encode("be\n") and lf.val_bytes == len(lf.val_data)


def test_a_shard_with_ids_outside_the_vocabulary_is_one_line(cli, small_text, tmp_path):
    """A damaged (or hostile) train.bin: the first batch that reads a bad id stops the run with one line."""
    data = tmp_path / "data"
    prepare([str(small_text)], data, PrepareOptions(tokenizer="byte", progress=False))
    ids = np.fromfile(data / "train.bin", dtype=np.uint16)
    ids[:] = 60_000  # every window holds it: no vocabulary of 257 has such a token
    ids.tofile(data / "train.bin")
    done = cli("train", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet", "--sample-chars", "0",
               *[a for kv in TINY + ["max_iters=2", "eval_interval=1"] for a in ("--set", kv)])
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "token id 60000" in done.stderr and "outside the vocabulary (257 tokens)" in done.stderr


@pytest.fixture(scope="module")
def byte_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "a.txt").write_text("hello world\n" * 50, encoding="utf-8")
    prepare([str(folder / "a.txt")], folder / "ds", PrepareOptions(tokenizer="byte", progress=False))
    return folder / "ds"


def _set(*keys_and_value):
    """meta.json's text -> that text with ``meta[k1][k2]... = value``."""
    *keys, value = keys_and_value

    def edit(text):
        meta = json.loads(text)
        inner = meta
        for key in keys[:-1]:
            inner = inner[key]
        inner[keys[-1]] = value
        return json.dumps(meta)
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set("dtype", "float16"), "dtype 'float16' is not uint16 or uint32"),
    (_set("dtype", "V2"), "dtype 'V2' is not"),
    (_set("dtype", {"names": ["a"], "formats": ["u2"]}), "dtype {'names'"),
    (_set("dtype", "int16"), "dtype 'int16' is not"),  # negative ids would index embeddings from the end
    (_set("splits", "train", "tokens", 540.7), "splits.train.tokens is 540.7, not a whole number >= 0"),
    (_set("splits", "train", "tokens", True), "splits.train.tokens is True"),
    (lambda text: text.replace('"tokens": 540', '"tokens": Infinity'), "splits.train.tokens is inf"),
    (_set("splits", "val", "bytes", "x"), "splits.val.bytes is 'x'"),
    (_set("splits", "val", "bytes", -5), "splits.val.bytes is -5"),
    (_set("splits", "val", "bytes", None), "splits.val.bytes is None"),
    (_set("splits", "val", [1]), "splits.val.tokens is None"),
    (lambda text: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (lambda text: "[]", "not a JSON object with splits"),
])
def test_a_hostile_meta_json_is_one_line_naming_the_field(byte_dataset, tmp_path, edit, message):
    """open_prepared checks every field readers use: unsigned dtypes, whole non-negative counts, sane JSON."""
    import shutil

    from tinylm.data.shards import open_prepared
    from tinylm.errors import DataError

    ds = tmp_path / "ds"
    shutil.copytree(byte_dataset, ds)
    (ds / "meta.json").write_text(edit((ds / "meta.json").read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(DataError) as caught:
        open_prepared(ds)
    assert message in str(caught.value) and "\n" not in str(caught.value) and str(ds) in str(caught.value)
