"""``--data file.txt`` is prepared once into the data cache, keyed by the file's sha256 and the tokenizer.

Invariants: the cached tokens are exactly the notebook's in-memory encoding and split; an unchanged
file is never prepared twice; an edited file, CR LF handling or another tokenizer gets its own entry;
a damaged entry is rebuilt; processes that build the same entry at once all end with a whole one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import TINY
from tinylm.config import load_config
from tinylm.data import CharTokenizer, data_dir, read_text, split
from tinylm.data.cache import _build, cached_dataset
from tinylm.data.prepare import PrepareOptions
from tinylm.data.tokenizer import ByteTokenizer
from tinylm.errors import DataError
from tinylm.training.run import prepare_corpus

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\r\n\nAll:\nSpeak, speak.\n" * 30


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(TEXT.encode("utf-8"))
    return path


def entries() -> set[str]:
    folder = data_dir() / "prepared"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_the_cached_tokens_are_the_in_memory_encoding_and_split(text_file):
    text = read_text(text_file)
    tokenizer = CharTokenizer.from_text(text)
    train, val = split(torch.tensor(tokenizer.encode(text)), 0.2)
    corpus = prepare_corpus(load_config(overrides=[f"data={text_file}", "val_fraction=0.2"]))
    assert corpus.tokenizer.to_dict() == tokenizer.to_dict()
    assert isinstance(corpus.train_data, np.memmap) and isinstance(corpus.val_data, np.memmap)
    assert np.array_equal(corpus.train_data, train.numpy()) and np.array_equal(corpus.val_data, val.numpy())
    assert corpus.val_bytes == len(tokenizer.decode(val.tolist()).encode("utf-8"))


def test_an_unchanged_file_is_prepared_once_and_an_edited_one_again(text_file):
    before = entries()
    first = cached_dataset(text_file)
    meta = first / "meta.json"
    stamp = meta.stat().st_mtime_ns
    assert cached_dataset(text_file) == first and meta.stat().st_mtime_ns == stamp
    assert entries() - before == {first.name}
    assert cached_dataset(text_file, keep_crlf=True) != first  # CR LF kept: other tokens, another entry
    text_file.write_text(TEXT + "Citizens!\n", encoding="utf-8")
    assert cached_dataset(text_file) not in (first, cached_dataset(text_file, keep_crlf=True))


def test_a_run_tokenizer_reuses_the_entry_it_was_made_from_or_gets_its_own(text_file):
    own = cached_dataset(text_file)
    run_tokenizer = CharTokenizer.from_text(read_text(text_file))
    assert cached_dataset(text_file, tokenizer=run_tokenizer) == own
    byte_entry = cached_dataset(text_file, tokenizer=ByteTokenizer())
    assert byte_entry != own and (byte_entry / "train.bin").stat().st_size % 2 == 0
    with pytest.raises(DataError, match=f"data file {text_file} has characters this run never saw"):
        cached_dataset(text_file, tokenizer=CharTokenizer(list("abc")))


def test_a_damaged_entry_is_built_again(text_file):
    entry = cached_dataset(text_file)
    expected = np.fromfile(entry / "val.bin", dtype=np.uint16)
    with open(entry / "val.bin", "r+b") as f:
        f.truncate(10)
    assert cached_dataset(text_file) == entry
    assert np.array_equal(np.fromfile(entry / "val.bin", dtype=np.uint16), expected)


def test_a_build_that_loses_the_race_keeps_the_winners_entry(text_file):
    entry = cached_dataset(text_file)
    inode = entry.stat().st_ino
    assert _build(text_file, entry, PrepareOptions(progress=False), None) == entry  # a second process, late
    assert entry.stat().st_ino == inode
    assert not list(entry.parent.glob(".build-*"))


def test_bad_text_files_are_refused_before_anything_is_written(tmp_path):
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 au lait\n" * 10)
    (tmp_path / "blank.txt").write_bytes(b"\n \n")
    (tmp_path / "cut.txt").write_bytes("ok é".encode()[:-1])
    before = entries()
    for name, message in [("latin1.txt", "not UTF-8 (bad byte at offset 3)"), ("blank.txt", "is empty"),
                          ("cut.txt", "not UTF-8 (bad byte at offset 3)"), ("missing.txt", "not found")]:
        with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
            cached_dataset(tmp_path / name)
    assert entries() == before


@pytest.mark.slow
def test_train_with_a_text_file_twice_reuses_its_entry(cli, text_file, tmp_path):
    args = ["--data", str(text_file), "--quiet", "--sample-chars", "0",
            *[a for kv in TINY + ["max_iters=2", "eval_interval=1"] for a in ("--set", kv)]]
    first = cli("train", "--out", str(tmp_path / "a"), *args)
    assert first.returncode == 0, first.stderr
    made = entries()
    second = cli("train", "--out", str(tmp_path / "b"), *args)
    assert second.returncode == 0, second.stderr
    assert entries() == made
    losses = [[{k: v for k, v in json.loads(line).items() if k not in ("time", "elapsed")} for line in
               (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("a", "b")]
    assert losses[0] == losses[1] and len(losses[0]) == 2


def test_train_on_a_jsonl_without_the_field_names_the_prepare_command_it_needs(tmp_path):
    """train has no --text-field: its hint is the prepare command that names the field."""
    path = tmp_path / "notes.jsonl"
    path.write_text('{"body": "hello world, a line of text"}\n' * 30, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        cached_dataset(path)
    message = str(caught.value)
    assert "line 1 has no text field 'text'" in message and "name the field with --text-field" not in message
    assert f"`tinylm prepare {path} --text-field NAME --out DIR`" in message
