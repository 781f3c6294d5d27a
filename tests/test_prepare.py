"""``tinylm prepare``: token shards from mixed sources, and every bad input through the real CLI."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tinylm.data.bpe import BPETokenizer
from tinylm.data.prepare import PrepareOptions, prepare
from tinylm.data.shards import open_prepared
from tinylm.data.tokenizer import ByteTokenizer, CharTokenizer
from tinylm.errors import DataError

DOCS = ["First Citizen:\nBefore we proceed any further, hear me speak.\n", "Ünïcødé ✓ jsonl\n", "gz line", "row one",
        "row two ✓ 😀"]


def mixed_dir(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text(DOCS[0], encoding="utf-8")
    (src / "b.jsonl").write_text(json.dumps({"text": DOCS[1]}) + "\n\n", encoding="utf-8")
    with gzip.open(src / "sub" / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": DOCS[2], "id": 3}) + "\n")
    pq.write_table(pa.table({"text": DOCS[3:]}), src / "sub" / "d.parquet")
    (src / "sub" / "e.bin").write_bytes(b"\x00\x01\x02binary")
    return src


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_prepare_of_a_mixed_directory_equals_encoding_the_joined_text(kind, tmp_path):
    src = mixed_dir(tmp_path)
    opts = PrepareOptions(tokenizer=kind, vocab_size=300, val_fraction=0.25, progress=False, version="t")
    meta = prepare([str(src)], tmp_path / "out", opts)
    data = open_prepared(tmp_path / "out")
    tok = data.tokenizer
    if kind == "char":
        expected = tok.encode("\n\n".join(DOCS))
        assert isinstance(tok, CharTokenizer)
    else:
        expected = []
        for i, doc in enumerate(DOCS):
            expected += ([tok.eot_id] if i else []) + tok.encode(doc)
        assert isinstance(tok, ByteTokenizer if kind == "byte" else BPETokenizer)
    stream = np.concatenate([data.train, data.val]).tolist()
    assert stream == expected
    assert len(data.train) == int(len(expected) * 0.75)
    assert meta["dtype"] == "uint16" and meta["documents"] == 5 and meta["skipped_binary_files"] == 1
    total_bytes = meta["splits"]["train"]["bytes"] + meta["splits"]["val"]["bytes"]
    assert total_bytes == sum(len(d.encode("utf-8")) for d in DOCS) + (2 * 4 if kind == "char" else 0)
    assert [s["size"] for s in meta["sources"]] == [p.stat().st_size for p in
                                                   [src / "a.txt", src / "b.jsonl", src / "sub" / "c.jsonl.gz",
                                                    src / "sub" / "d.parquet"]]
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_val_docs_holds_out_whole_documents(tmp_path):
    src = mixed_dir(tmp_path)
    prepare([str(src)], tmp_path / "out", PrepareOptions(tokenizer="byte", val_docs=2, progress=False))
    data = open_prepared(tmp_path / "out")
    assert ByteTokenizer().decode(data.val.tolist()) == DOCS[3] + DOCS[4]


def test_the_cli_prepares_globs_and_refuses_to_overwrite_without_force(cli, tmp_path, capsys):
    src = mixed_dir(tmp_path)
    out = tmp_path / "data" / "mix"
    result = cli("prepare", str(src / "*.txt"), str(src / "b.jsonl"), "--tokenizer", "byte", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "2 document(s) from 2 file(s)" in result.stdout
    from tinylm.cli import main

    assert main(["prepare", str(src), "--out", str(out)]) == 2
    assert "already holds a prepared dataset; pass --force" in capsys.readouterr().err
    assert main(["prepare", str(src), "--out", str(out), "--force", "--quiet"]) == 0
    assert json.loads((out / "meta.json").read_text())["tokenizer"] == "char"


def _bad_sources(tmp_path):
    """Each bad input: (extra CLI args, what the one-line error must say)."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "bins").mkdir()
    (tmp_path / "bins" / "x.dat").write_bytes(b"\x7fELF\x00\x00")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 au lait")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json\n', encoding="utf-8")
    (tmp_path / "nofield.jsonl").write_text('{"text": "ok"}\n{"body": "x"}\n', encoding="utf-8")
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "nocol.parquet")
    (tmp_path / "ok.txt").write_text("hello world\n" * 10, encoding="utf-8")
    (tmp_path / "surrogate.jsonl").write_text('{"text": "ok"}\n{"text": "hello \\ud800 world"}\n', encoding="utf-8")
    return [
        ([str(tmp_path / "missing.txt")], "source not found: "),
        ([str(tmp_path / "empty")], "holds no files"),
        ([str(tmp_path / "bins")], "1 binary file(s) skipped and none left (a NUL byte in the first 8 KB, e.g. "),
        ([str(tmp_path / "latin1.txt")], "latin1.txt is not UTF-8 (bad byte at offset 3)"),
        ([str(tmp_path / "bad.jsonl")], "bad.jsonl line 2 is not JSON"),
        ([str(tmp_path / "nofield.jsonl")], "nofield.jsonl line 2 has no text field 'text'"),
        ([str(tmp_path / "nocol.parquet")], "has no column 'text' (columns: body)"),
        ([str(tmp_path / "ok.txt"), "--tokenizer", "bpe", "--vocab-size", "256"], "use at least 257"),
        ([str(tmp_path / "surrogate.jsonl")], "surrogate.jsonl line 2 escapes a lone surrogate"),
        *[([str(tmp_path / "ok.txt"), "--tokenizer", "bpe", "--vocab-size", "300", "--bpe-sample-mb", mb],
           f"--bpe-sample-mb {mb} must be a finite number") for mb in ("nan", "inf", "0.0")],
    ]


def test_force_never_deletes_a_directory_that_is_not_a_dataset(tmp_path, capsys):
    from tinylm.cli import main

    (tmp_path / "ok.txt").write_text("hello\n" * 10, encoding="utf-8")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious", encoding="utf-8")
    assert main(["prepare", str(tmp_path / "ok.txt"), "--out", str(tmp_path / "mine"), "--force"]) == 2
    assert "not a dataset" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text(encoding="utf-8") == "precious"


def test_every_bad_input_is_one_line_exit_2_and_leaves_nothing(cli, tmp_path, capsys):
    """In-process through ``tinylm.cli.main`` (a subprocess each costs seconds); one case as a real process."""
    from tinylm.cli import main

    for args, message in _bad_sources(tmp_path):
        code = main(["prepare", *args, "--out", str(tmp_path / "out"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert err.startswith("tinylm: error: ") and err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))
    result = cli("prepare", str(tmp_path / "latin1.txt"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "offset 3" in result.stderr


def test_encoding_errors_replace_goes_on_past_bad_bytes(cli, tmp_path):
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 au lait\n")
    result = cli("prepare", str(tmp_path / "latin1.txt"), "--tokenizer", "byte", "--encoding-errors", "replace",
                 "--out", str(tmp_path / "out"), "--val-fraction", "0.5")
    assert result.returncode == 0, result.stderr
    data = open_prepared(tmp_path / "out")
    assert ByteTokenizer().decode(np.concatenate([data.train, data.val])) == "caf\ufffd au lait\n"


def test_a_full_disk_cleans_up_and_says_so(cli, tmp_path):
    """A stand-in for a full disk: RLIMIT_FSIZE makes the kernel refuse writes past 64 KB (EFBIG)."""
    import resource
    import signal
    import subprocess
    import sys

    (tmp_path / "big.txt").write_text("all the world's a stage\n" * 20_000, encoding="utf-8")

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    result = subprocess.run([sys.executable, "-m", "tinylm", "prepare", str(tmp_path / "big.txt"), "--tokenizer",
                             "byte", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                            preexec_fn=limit, timeout=120, check=False)
    assert result.returncode == 2 and "the disk filled while writing" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_ctrl_c_during_prepare_leaves_no_dataset(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "big.txt").write_text("to be or not to be\n" * 2_000_000, encoding="utf-8")  # 38 MB
    proc = subprocess.Popen([sys.executable, "-m", "tinylm", "prepare", str(tmp_path / "big.txt"), "--tokenizer",
                             "char", "--out", str(tmp_path / "out")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "nothing was written" in err, err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_big_text_cut_into_pieces_encodes_as_the_whole_text(bpe_on_verse, tmp_path, monkeypatch):
    from tinylm.data import sources

    monkeypatch.setattr(sources, "CHUNK_BYTES", 300)  # many pieces, many cuts
    text = "".join(f"Line {i}:  some  words,\n\n  indented {i}\t\nend.\n" for i in range(200))
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    whole = bpe_on_verse.encode(text)
    for search in (1 << 16, 12):  # a short search back finds no cut in some chunks: they wait for the next
        monkeypatch.setattr(sources, "CUT_SEARCH", search)
        pieces = [p for p, _ in sources.iter_pieces([tmp_path / "t.txt"])]
        assert len(pieces) > 10 and "".join(pieces) == text
        assert [i for p in pieces for i in bpe_on_verse.encode(p)] == whole
    parts = sources.split_safely(text, 100)
    assert len(parts) > 10 and [i for p in parts for i in bpe_on_verse.encode(p)] == whole


@pytest.fixture(scope="module")
def bpe_on_verse():
    return BPETokenizer.train(["Line 1:  some  words,\n\n  indented\t\nend.\n" * 50], vocab_size=300)


def test_a_killed_prepares_temp_dir_is_removed_by_the_next_one(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n" * 100, encoding="utf-8")
    stale = tmp_path / ".out.tmp-999999999"  # no such process
    (stale / "sub").mkdir(parents=True)
    prepare([str(tmp_path / "a.txt")], tmp_path / "out", PrepareOptions(tokenizer="byte", progress=False))
    assert not stale.exists() and (tmp_path / "out" / "meta.json").is_file()


def test_a_prepare_killed_between_its_two_renames_gets_the_old_dataset_back(tmp_path):
    """--force renames the old dataset aside, the new one in, then deletes the old: a kill in between
    leaves the old one whole beside ``out``, and the next prepare of ``out`` puts it back first."""
    ds, before = _dataset_to_keep(tmp_path)
    aside = tmp_path / ".ds.old-999999999"  # no such process: killed mid-swap
    ds.rename(aside)
    with pytest.raises(DataError, match="already holds a prepared dataset"):  # back, so --force is needed again
        prepare([str(tmp_path / "a.txt")], ds, PrepareOptions(tokenizer="byte", progress=False))
    assert {p.name: p.read_bytes() for p in ds.iterdir()} == before and not aside.exists()
    (tmp_path / ".ds.old-999999998").mkdir()  # a swap that finished but was killed while deleting
    prepare([str(tmp_path / "a.txt")], ds, PrepareOptions(tokenizer="char", force=True, progress=False))
    assert not list(tmp_path.glob(".ds.*")) and json.loads((ds / "meta.json").read_text())["tokenizer"] == "char"


def _dataset_to_keep(tmp_path):
    (tmp_path / "a.txt").write_text("hello world\n" * 20, encoding="utf-8")
    ds = tmp_path / "ds"
    prepare([str(tmp_path / "a.txt")], ds, PrepareOptions(tokenizer="byte", progress=False))
    return ds, {p.name: p.read_bytes() for p in ds.iterdir()}


@pytest.mark.parametrize("case, message", [
    ("dot", "is the current directory or holds it"), ("parent", "is the current directory or holds it"),
    ("symlink", "is a symbolic link; give the directory it points to"), ("source_inside", "is inside --out"),
])
def test_an_out_that_holds_the_cwd_or_a_source_or_is_a_symlink_is_refused_and_the_dataset_kept(
        tmp_path, monkeypatch, capsys, case, message):
    """`prepare --out . --force` inside a dataset once deleted it; such an --out is one line and deletes nothing."""
    from tinylm.cli import main

    ds, before = _dataset_to_keep(tmp_path)
    (tmp_path / "link").symlink_to(ds)
    monkeypatch.chdir(ds if case in ("dot", "parent") else tmp_path)
    source, out = {"dot": ("../a.txt", "."), "parent": ("../a.txt", ".."), "symlink": ("a.txt", "link"),
                   "source_inside": ("ds/tokenizer.json", "ds")}[case]
    assert main(["prepare", source, "--out", out, "--force", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert {p.name: p.read_bytes() for p in ds.iterdir()} == before
    assert not list(tmp_path.glob(".*.tmp-*")) and not list(ds.glob(".*"))


def test_a_directory_source_skips_hidden_paths_and_the_dataset_prepared_inside_it(tmp_path):
    """.git/config and prepare's own output (--out inside the source, then --force) are never corpus."""
    corp = tmp_path / "corp"
    (corp / ".git").mkdir(parents=True)
    (corp / ".git" / "config").write_text("[core]\n", encoding="utf-8")
    (corp / "sub").mkdir()
    (corp / "sub" / "a.txt").write_text("hello world\n" * 20, encoding="utf-8")
    for force in (False, True):
        meta = prepare([str(corp)], corp / "ds", PrepareOptions(tokenizer="byte", progress=False, force=force))
        assert [s["path"] for s in meta["sources"]] == [str(corp / "sub" / "a.txt")]
        assert meta["splits"]["train"]["bytes"] + meta["splits"]["val"]["bytes"] == 12 * 20


def test_a_utf8_file_named_outright_is_text_even_with_a_nul_byte(tmp_path):
    """NUL is UTF-8: a file asked for by name is read; only files a directory turns up are sniffed as binary."""
    (tmp_path / "nul.txt").write_bytes(b"hello\x00world\n" * 20)
    prepare([str(tmp_path / "nul.txt")], tmp_path / "out", PrepareOptions(tokenizer="byte", progress=False))
    data = open_prepared(tmp_path / "out")
    assert ByteTokenizer().decode(np.concatenate([data.train, data.val])) == "hello\x00world\n" * 20


def test_prepare_syncs_the_shards_before_meta_json_and_the_directory_after_the_rename(tmp_path, monkeypatch):
    """A power loss must not leave a meta.json vouching for shards that never reached the disk."""
    from tinylm.data import prepare as prepare_module

    synced = []
    real = prepare_module._fsync
    monkeypatch.setattr(prepare_module, "_fsync",  # (name, whether a meta.json exists yet), then the real sync
                        lambda path: (synced.append((path.name, any(tmp_path.rglob("meta.json")))), real(path)))
    (tmp_path / "a.txt").write_text("hello\n" * 100, encoding="utf-8")
    prepare([str(tmp_path / "a.txt")], tmp_path / "out", PrepareOptions(tokenizer="byte", progress=False))
    before_meta = {name for name, meta_there in synced if not meta_there}
    assert {"train.bin", "val.bin", "tokenizer.json"} <= before_meta
    assert synced[-1] == (tmp_path.name, True)  # last: the directory holding the renamed dataset
