"""A .tlm file is hostile input: forged headers are refused quickly and in one line, never decoded for
hours; genuine files, however predictable, still round trip. Tiny untrained models, no training."""

import math
import time
import zlib

import pytest
import torch

from tinylm.cli import main
from tinylm.compress import CompressError, compress_bytes, decompress_bytes
from tinylm.compress.header import _CRC, _LAYOUT, HEADER_SIZE, MODE_CODED, Header
from tinylm.config import ModelConfig
from tinylm.data import CharTokenizer
from tinylm.model import build_model

FIELDS = ["magic", "version", "mode", "kind", "res", "model_id", "n_bytes", "n_symbols", "segment", "adapt_steps",
          "adapt_every", "adapt_lr", "checksum"]


def forge(blob: bytes, **fields) -> bytes:
    """``blob`` with header fields replaced and the header CRC recomputed, as a forger would."""
    values = list(_LAYOUT.unpack(blob[:_LAYOUT.size]))
    for name, value in fields.items():
        values[FIELDS.index(name)] = value
    body = _LAYOUT.pack(*values)
    return body + _CRC.pack(zlib.crc32(body)) + blob[HEADER_SIZE:]


@pytest.fixture(scope="module")
def gpt():
    tokenizer = CharTokenizer.from_text("the quick brown fox jumps over the lazy dog.\n")
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=1, n_embed=16, n_heads=2, block_size=16), tokenizer.vocab_size)
    return model.eval(), tokenizer


def certain_bigram():
    """A bigram model sure that 'a' follows 'a' (logit 60): 'a' * N codes to a few words."""
    tokenizer = CharTokenizer.from_text("ab")
    model = build_model(ModelConfig(kind="bigram"), tokenizer.vocab_size).eval()
    with torch.no_grad():
        model.token_embedding_table.weight.copy_(torch.tensor([[60.0, 0.0], [60.0, 0.0]]))
    return model, tokenizer


@pytest.mark.parametrize("steps, every, lr", [(1, 0, 0.1), (1, 8, math.nan), (1, 8, math.inf), (1, 8, -0.1)])
def test_forged_adapt_settings_are_refused_as_damaged_or_forged(gpt, steps, every, lr):
    model, tokenizer = gpt
    blob = compress_bytes(b"the lazy dog jumps over the quick brown fox.\n" * 4, model, tokenizer, segment=64)
    with pytest.raises(CompressError, match="damaged or forged"):
        decompress_bytes(forge(blob, adapt_steps=steps, adapt_every=every, adapt_lr=lr), model, tokenizer)


def test_decoding_never_outruns_what_the_payload_can_hold_and_genuine_files_still_round_trip(gpt):
    model, tokenizer = gpt
    text = b"the quick brown fox jumps over the lazy dog.\n" * 20
    blob = compress_bytes(text, model, tokenizer, segment=100)
    assert Header.unpack(blob)[0].mode == MODE_CODED and decompress_bytes(blob, model, tokenizer) == text
    certain, letters = certain_bigram()
    predictable = b"a" * 30_000  # ~1e-21 bits a character: the whole file is the coder's few state words
    small = compress_bytes(predictable, certain, letters, segment=4096)
    assert len(small) <= HEADER_SIZE + 12 and decompress_bytes(small, certain, letters) == predictable
    start = time.perf_counter()
    for n in (256 * (2**32 - 1), 10**6):  # beyond any payload (refused from the header), then within
        for payload in (b"", blob[HEADER_SIZE:HEADER_SIZE + 8]):
            forged = forge(blob[:HEADER_SIZE] + payload, n_bytes=n, n_symbols=n, segment=-(-n // 256))
            with pytest.raises(CompressError, match="claims more characters than its payload can hold"):
                decompress_bytes(forged, model, tokenizer)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("command, name", [("compress", "in.txt"), ("decompress", "in.txt.tlm"),
                                           ("decompress", ".tlm")])
def test_a_directory_as_output_is_refused_before_any_work(tmp_path, capsys, command, name):
    """Even with --force; checked before the run is loaded (this one does not exist)."""
    (tmp_path / "adir").mkdir()
    (tmp_path / name).write_bytes(b"x")
    out = ["-o", str(tmp_path / "adir")] if name != ".tlm" else []  # "DIR/.tlm" would decompress to DIR/
    rc = main([command, str(tmp_path / name), "--run", str(tmp_path / "no-run"), *out, "--force", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "is a directory" in err, err



@pytest.mark.parametrize("name, problem", [("missing.txt", "not found"), ("/dev/zero", "is not a regular file"),
                                           (".", "is not a regular file")])
def test_an_input_that_is_missing_or_not_a_file_is_named_in_one_line(tmp_path, capsys, name, problem):
    path = name if name.startswith("/") else str(tmp_path / name)
    rc = main(["compress", path, "--run", str(tmp_path / "no-run"), "-o", str(tmp_path / "out.tlm"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"input file {path} {problem}" in err, err
