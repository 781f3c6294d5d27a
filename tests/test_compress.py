"""``tinylm compress``: byte-exact round trips, refusals, --adapt lockstep, and size == information.

Models are tiny (conftest TINY); one is trained for a few steps in-process, the others are freshly
initialised (the coder works with any model: a bad one only compresses worse).
"""

import math
import random

import pytest
import torch
from torch.nn import functional as F

from conftest import TINY
from tinylm.cli import main
from tinylm.compress import Adapt, CompressError, compress_bytes, decompress_bytes
from tinylm.compress.header import HEADER_SIZE, MODE_CODED, Header
from tinylm.compress.lockstep import Lockstep
from tinylm.config import ModelConfig, load_config
from tinylm.data import CharTokenizer
from tinylm.model import build_model
from tinylm.training.run import train_run
from tinylm.training.rundir import load_run

TEXT = "the quick brown fox jumps over the lazy dog. THE END!\n" * 60


def _train(path, seed):
    cfg = load_config(None, None, None, TINY + ["max_iters=20", "eval_interval=20", "device=cpu",
                                                f"seed={seed}", "rope=true", f"data={path.parent / 't.txt'}"])
    train_run(cfg, path, progress=False, log=lambda _: None)
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    (root / "t.txt").write_text(TEXT, encoding="utf-8")
    return _train(root / "a", 1), _train(root / "b", 2)


@pytest.fixture(scope="module")
def loaded(runs):
    model, tokenizer, _, _ = load_run(runs[0])
    return model, tokenizer


def _random_unicode(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    picks = [chr(rng.randrange(0x110000)) for _ in range(4 * n)]
    return "".join(ch for ch in picks if not 0xD800 <= ord(ch) < 0xE000)[:n]


CASES = {
    "empty": b"",
    "one byte": b"t",
    "random unicode": _random_unicode(300).encode("utf-8"),
    "unseen only": "日本語のテキスト ☃ 𝄞 émoji 🙂".encode(),
    "mixed": ("the fox said ☃ and " * 20).encode("utf-8"),
    "not utf-8": bytes(range(256)) + b"the fox \xff\xfe dog",
    "text": TEXT[:2000].encode("utf-8"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip(loaded, name):
    model, tokenizer = loaded
    data = CASES[name]
    blob = compress_bytes(data, model, tokenizer, segment=300)
    assert decompress_bytes(blob, model, tokenizer) == data
    if name == "text":  # a text the model was trained on really gets smaller, and is model-coded
        assert Header.unpack(blob)[0].mode == MODE_CODED and len(blob) < len(data) / 2


def test_adapt_encoder_and_decoder_agree_and_leave_the_model_alone(loaded):
    model, tokenizer = loaded
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = (TEXT[:1500] + "a new line of words the model has not seen\n" * 8).encode("utf-8")
    plain = compress_bytes(data, model, tokenizer, segment=400)
    adapted = compress_bytes(data, model, tokenizer, segment=400, adapt=Adapt(steps=2, every=8, lr=0.05))
    assert decompress_bytes(adapted, model, tokenizer) == data
    assert adapted != plain  # the SGD steps changed the probabilities
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("rope", [False, True])
def test_coded_size_is_the_information_content(rope):
    """Payload bytes == sum of -log2 p(symbol) under the model, within a few bytes (32-bit words + rounding)."""
    tokenizer = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_embed=32, n_heads=2, block_size=128, rope=rope),
                        tokenizer.vocab_size).eval()
    text = TEXT[:120]
    ids = tokenizer.encode(text)
    with torch.no_grad():
        logits = model(torch.tensor([[0] + ids[:-1]]))[0][0]  # (T, V): the empty context is token 0
    bits = -F.log_softmax(logits, dim=-1)[torch.arange(len(ids)), ids].sum().item() / math.log(2)
    cost: dict = {}
    blob = compress_bytes(text.encode(), model, tokenizer, cost=cost)
    assert abs(len(blob) - HEADER_SIZE - bits / 8) <= 5, (len(blob) - HEADER_SIZE, bits / 8)
    assert cost["model_bits"] == pytest.approx(bits, rel=1e-4)  # what the coder reports it was handed
    assert cost["table_bits"] >= cost["model_bits"] * 0.999


def test_cli_round_trip_and_refusals(runs, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_bytes(CASES["mixed"] + CASES["text"])
    assert main(["compress", str(src), "--run", runs[0], "--no-progress", "--segment", "500"]) == 0
    packed = tmp_path / "in.txt.tlm"
    assert main(["decompress", str(packed), "--run", runs[0], "-o", str(tmp_path / "out.txt"), "--no-progress"]) == 0
    assert (tmp_path / "out.txt").read_bytes() == src.read_bytes()
    capsys.readouterr()

    def refused(blob_path, run, needle):
        out = tmp_path / "never.txt"
        assert main(["decompress", str(blob_path), "--run", run, "-o", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tinylm: error:") and needle in err and err.count("\n") == 1, err
        assert not out.exists()

    refused(packed, runs[1], "another model")
    blob = bytearray(packed.read_bytes())
    for where, needle in ((HEADER_SIZE + 1, "damaged"), (20, "damaged"), (0, "not a tinylm")):
        bad = bytearray(blob)
        bad[where] ^= 0x01
        (tmp_path / "bad.tlm").write_bytes(bytes(bad))
        refused(tmp_path / "bad.tlm", runs[0], needle)
    (tmp_path / "short.tlm").write_bytes(bytes(blob[:HEADER_SIZE + 3]))
    refused(tmp_path / "short.tlm", runs[0], "damaged")


def test_both_formats_round_trip_and_each_file_names_its_own(loaded):
    """Format 2 rolls a rope model's cache lazily, format 1 at every character (other floats, about
    the same size); this tinylm writes either and reads both."""
    model, tokenizer = loaded
    data = CASES["text"]  # rows of 300 characters through a 16-character window: ~280 slides per row
    files = {version: compress_bytes(data, model, tokenizer, segment=300, version=version) for version in (1, 2)}
    for version, blob in files.items():
        assert Header.unpack(blob)[0].version == version
        assert decompress_bytes(blob, model, tokenizer) == data
    assert abs(len(files[1]) - len(files[2])) <= 8
    with pytest.raises(ValueError, match="format version 3"):
        compress_bytes(data, model, tokenizer, version=3)


def test_the_coders_history_is_bounded_whatever_length_a_header_claims(loaded):
    """The decoder allocates for the window, not for the length in the header (which may be hostile)."""
    model, _ = loaded
    lockstep = Lockstep(model, n_rows=256, n_steps=10**12)
    assert lockstep.idx.shape == (256, 2 * (model.block_size + 1))


def test_cli_will_not_overwrite(runs, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("the fox", encoding="utf-8")
    (tmp_path / "in.txt.tlm").write_bytes(b"keep")
    assert main(["compress", str(src), "--run", runs[0], "--no-progress"]) == 2
    assert "--force" in capsys.readouterr().err and (tmp_path / "in.txt.tlm").read_bytes() == b"keep"


@pytest.mark.slow
def test_200_kb_round_trip(loaded):
    model, tokenizer = loaded
    rng = random.Random(1)
    words = TEXT.split() + ["naïve", "☃", "日本"]  # a few words with characters the model never saw
    data = " ".join(rng.choice(words) for _ in range(40_000)).encode("utf-8")[:200_000]
    blob = compress_bytes(data, model, tokenizer, segment=4096)
    assert decompress_bytes(blob, model, tokenizer) == data
    with pytest.raises(CompressError, match="damaged"):
        decompress_bytes(blob[:-4], model, tokenizer)


def test_an_adapt_rate_that_diverges_still_round_trips(loaded):
    """SGD at lr 99 drives the weights to inf/nan; such rows code with a uniform table on both sides."""
    model, tokenizer = loaded
    data = (TEXT[:600] + "words the model has not seen\n" * 4).encode("utf-8")
    blob = compress_bytes(data, model, tokenizer, segment=200, adapt=Adapt(steps=3, every=4, lr=99.0))
    assert decompress_bytes(blob, model, tokenizer) == data


def test_an_ensemble_written_as_the_readme_shows_codes_within_its_members_mean_size(runs, tmp_path, capsys):
    """The mean of two models' probabilities costs at most the mean of their code lengths (-log is
    convex); decoding needs the same runs in the same order. FILE comes last, after the runs."""
    src = tmp_path / "in.txt"
    src.write_bytes(CASES["text"] + CASES["mixed"])
    sizes = {}
    for name, model_args in (("a", ["--run", runs[0]]), ("b", ["--run", runs[1]]), ("ab", ["--ensemble", *runs])):
        out = tmp_path / f"{name}.tlm"
        assert main(["compress", *model_args, str(src), "-o", str(out), "--no-progress", "--segment", "700"]) == 0
        sizes[name] = out.stat().st_size
    assert sizes["ab"] <= (sizes["a"] + sizes["b"]) / 2 + 8, sizes  # + a few bytes of coder overhead
    restored = tmp_path / "out.txt"
    assert main(["decompress", "--ensemble", *runs, str(tmp_path / "ab.tlm"), "-o", str(restored),
                 "--no-progress"]) == 0
    assert restored.read_bytes() == src.read_bytes()
    capsys.readouterr()
    for model_args in (["--run", runs[0]], ["--ensemble", runs[1], runs[0]]):
        assert main(["decompress", *model_args, str(tmp_path / "ab.tlm"), "-o", str(tmp_path / "no.txt"),
                     "--no-progress"]) == 2
        assert "another model" in capsys.readouterr().err and not (tmp_path / "no.txt").exists()
