"""The topic image's build-time word-vector download, against a local HTTP server (no network)."""

import functools
import http.server
import threading

import numpy as np
import pytest
from gensim.models import KeyedVectors

from deploy import fetch_word_vectors


@pytest.fixture
def vector_server(tmp_path):
    """Serves tmp_path/served over HTTP on 127.0.0.1 and yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/vectors"
    server.shutdown()
    server.server_close()


def save_vectors(path, words, dimensions):
    vectors = KeyedVectors(vector_size=dimensions)
    vectors.add_vectors(words, np.random.default_rng(0).random((len(words), dimensions), dtype=np.float32))
    vectors.save(str(path))


def test_downloads_and_verifies_every_named_file(vector_server, tmp_path):
    served, base_url = vector_server
    (served / "vectors").mkdir()
    names = ["enwiki-x.kv", "arwiki-x.kv"]
    for index, name in enumerate(names):
        save_vectors(served / "vectors" / name, [f"w{i}" for i in range(10 + index)], 50)
    dest = tmp_path / "word2vec"
    assert fetch_word_vectors.main(["--dest", str(dest), "--base-url", base_url, "--verify", *names]) == 0
    for index, name in enumerate(names):
        loaded = KeyedVectors.load(str(dest / name), mmap="r")
        assert loaded.vector_size == 50 and len(loaded.index_to_key) == 10 + index
    assert not list(dest.glob("*.part"))


def test_refuses_an_html_error_page(vector_server, tmp_path):
    served, base_url = vector_server
    (served / "vectors").mkdir()
    (served / "vectors" / "enwiki-x.kv").write_text("<html>Not here</html>")
    with pytest.raises(RuntimeError, match="not a pickled KeyedVectors"):
        fetch_word_vectors.fetch(f"{base_url}/enwiki-x.kv", tmp_path / "enwiki-x.kv", attempts=1)
    assert not (tmp_path / "enwiki-x.kv").exists()


def test_fails_on_a_missing_file(vector_server, tmp_path):
    _, base_url = vector_server
    with pytest.raises(RuntimeError, match="404"):
        fetch_word_vectors.fetch(f"{base_url}/nowhere.kv", tmp_path / "nowhere.kv", attempts=1)


def test_verify_rejects_vectors_of_the_wrong_size(tmp_path):
    save_vectors(tmp_path / "small.kv", ["a", "b"], 20)
    with pytest.raises(ValueError, match="20 dimensions"):
        fetch_word_vectors.verify(tmp_path / "small.kv", 50)
