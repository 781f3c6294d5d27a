import hashlib
import http.server
import re
import threading

import pytest
import torch

from tinylm.data import BatchLoader, load_text, read_text, split
from tinylm.data import text as data_module
from tinylm.errors import DataError


def test_batches_are_windows_with_targets_shifted_by_one():
    data = torch.arange(1000)
    x, y = BatchLoader(data, block_size=16, batch_size=32).get_batch()
    assert x.shape == y.shape == (32, 16)
    assert x.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:])  # y is x moved one step ahead
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(32, 15, dtype=torch.long))  # contiguous windows


def test_same_seed_same_batches_and_the_stream_moves_on():
    data = torch.arange(10_000)
    a, b = BatchLoader(data, 8, 4, seed=7), BatchLoader(data, 8, 4, seed=7)
    first = a.get_batch()[0]
    assert torch.equal(first, b.get_batch()[0])
    assert not torch.equal(first, a.get_batch()[0])


def test_loader_state_restores_the_batch_stream():
    loader = BatchLoader(torch.arange(10_000), 8, 4, seed=3)
    loader.get_batch()
    state = loader.state_dict()
    expected = loader.get_batch()[0]
    loader.load_state_dict(state)
    assert torch.equal(loader.get_batch()[0], expected)


def test_every_window_start_is_reachable():
    loader = BatchLoader(torch.arange(20), block_size=4, batch_size=2000)
    starts = set(loader.get_batch()[0][:, 0].tolist())
    assert starts == set(range(16))  # 20 tokens, windows of 5 -> starts 0..15


def test_text_shorter_than_a_block_is_refused():
    with pytest.raises(DataError, match="block_size 16 needs at least 17"):
        BatchLoader(torch.arange(10), block_size=16, batch_size=2)


def test_split_is_first_ninety_percent_then_the_rest():
    train, val = split(torch.arange(100))
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))


@pytest.mark.parametrize("content, message", [(b"", "is empty"), (b"\n  \n", "is empty"),
                                              (b"caf\xe9 latin-1", "not UTF-8")])
def test_bad_files_are_refused_with_the_reason(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_text(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_text(tmp_path / "nope.txt")


class _Server:
    """A real HTTP server on 127.0.0.1 standing in for raw.githubusercontent.com."""

    def __init__(self, body: bytes):
        body_ = body

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body_)))
                self.end_headers()
                self.wfile.write(body_)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/input.txt"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_first_use_downloads_verifies_and_caches(tmp_path, monkeypatch, shakespeare):
    body = shakespeare.encode("utf-8")
    server = _Server(body)
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data_module, "TINYSHAKESPEARE_URL", server.url)
    try:
        assert load_text() == shakespeare
    finally:
        server.close()
    cached = tmp_path / "tinyshakespeare.txt"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == data_module.TINYSHAKESPEARE_SHA256
    assert [p.name for p in tmp_path.iterdir()] == ["tinyshakespeare.txt"]  # no temp file left


def test_a_wrong_download_is_refused_and_not_cached(tmp_path, monkeypatch):
    server = _Server(b"not shakespeare")
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data_module, "TINYSHAKESPEARE_URL", server.url)
    try:
        with pytest.raises(DataError, match="size 15 bytes"):
            load_text()
    finally:
        server.close()
    assert not (tmp_path / "tinyshakespeare.txt").exists()


def test_offline_error_names_the_exact_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data_module, "TINYSHAKESPEARE_URL", "http://127.0.0.1:9/input.txt")  # nothing listens
    with pytest.raises(DataError, match=r"from http://127.0.0.1:9/input.txt .*offline, copy input.txt from there to "
                       + re.escape(str(tmp_path / "tinyshakespeare.txt"))):
        load_text()


def test_windows_line_endings_are_read_as_lf_unless_kept(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"To be,\r\nor not\r\n")
    assert read_text(path) == "To be,\nor not\n"
    assert read_text(path, keep_crlf=True) == "To be,\r\nor not\r\n"


def test_a_cached_corpus_that_is_a_directory_is_one_line_naming_it(tmp_path, monkeypatch):
    """$TINYLM_DATA_DIR/tinyshakespeare.txt as a directory: no IsADirectoryError, the path and the fix."""
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    (tmp_path / "tinyshakespeare.txt").mkdir()
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'tinyshakespeare.txt'} is not a regular file")
                       + ".*remove it"):
        load_text()
