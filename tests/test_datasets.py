"""Dataset loading: a local HTTP server on 127.0.0.1 serves small generated
IDX files and name lists."""
import gzip
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from crad.datasets import FILES, NAMES_SHA256, DatasetError, load_mnist, load_names, parse_idx

# the data root (mnist/, names/), as CI sets it
SHARED = os.environ.get("CRAD_DATA_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def idx(arr, magic_dims=None):
    arr = np.asarray(arr, np.uint8)
    nd = arr.ndim if magic_dims is None else magic_dims
    return bytes([0, 0, 8, nd]) + np.array(arr.shape, ">u4").tobytes() + arr.tobytes()


def small_set(n=6):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n, 28, 28)), "y_train": rng.integers(0, 10, n),
              "x_test": rng.integers(0, 256, (n // 2, 28, 28)), "y_test": rng.integers(0, 10, n // 2)}
    raw = {FILES[k]: idx(v) for k, v in arrays.items()}
    return arrays, raw, {name: hashlib.sha256(b).hexdigest() for name, b in raw.items()}


class Server:
    """Serves ``routes`` (path -> bytes, or (bytes, announced length) for a cut transfer)."""

    def __init__(self):
        self.routes, self.hits = {}, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                body = outer.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                body, length = body if isinstance(body, tuple) else (body, len(body))
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def files_under(path):
    return [f for _, _, files in os.walk(path) for f in files]


def serve(server, prefix, raw):
    for name, b in raw.items():
        server.routes[f"{prefix}/{name}.gz"] = gzip.compress(b)


def test_download_then_cache(server, tmp_path):
    arrays, raw, sums = small_set()
    serve(server, "/m", raw)
    got = load_mnist(tmp_path, mirrors=[server.url + "/m/"], sha256=sums, progress=False)
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v)
    assert os.listdir(tmp_path) == ["mnist"]  # tmp_path is the data root
    assert sorted(os.listdir(tmp_path / "mnist")) == sorted(n + ".gz" for n in raw)
    hits = len(server.hits)
    load_mnist(tmp_path, mirrors=[server.url + "/m/"], sha256=sums, progress=False)
    assert len(server.hits) == hits  # second call: no network


def test_failing_first_mirror_then_second(server, tmp_path):
    _, raw, sums = small_set()
    serve(server, "/good", raw)
    got = load_mnist(tmp_path, mirrors=[server.url + "/missing/", server.url + "/good/"], sha256=sums,
                     retries=0, progress=False)
    assert got["x_train"].shape == (6, 28, 28)
    assert any(h.startswith("/missing/") for h in server.hits)


def test_checksum_mismatch_is_refused(server, tmp_path):
    _, raw, sums = small_set()
    serve(server, "/m", raw)
    bad = dict(sums, **{FILES["y_test"]: "0" * 64})
    with pytest.raises(DatasetError, match="sha256"):
        load_mnist(tmp_path, mirrors=[server.url + "/m/"], sha256=bad, retries=0, progress=False)
    assert FILES["y_test"] + ".gz" not in os.listdir(tmp_path / "mnist")
    assert not [f for f in os.listdir(tmp_path / "mnist") if f.endswith(".part")]


def test_interrupted_transfer_leaves_no_file(server, tmp_path):
    _, raw, sums = small_set()
    serve(server, "/m", raw)
    name = FILES["x_train"]
    body = gzip.compress(raw[name])
    server.routes[f"/m/{name}.gz"] = (body[:100], len(body))  # announces more than it sends
    with pytest.raises(DatasetError, match=name):
        load_mnist(tmp_path, mirrors=[server.url + "/m/"], sha256=sums, retries=1, progress=False)
    assert files_under(tmp_path) == []


def test_corrupt_local_files_name_the_file(tmp_path):
    arrays, raw, sums = small_set()
    for name, b in raw.items():
        (tmp_path / name).write_bytes(b)
    name = FILES["x_test"]
    (tmp_path / name).write_bytes(raw[name][:-10])  # truncated
    with pytest.raises(DatasetError, match=name):
        load_mnist(tmp_path, download=False, sha256={})
    (tmp_path / name).write_bytes(raw[name] + b"\x00")  # trailing bytes: not the file its header describes
    with pytest.raises(DatasetError, match="corrupt"):
        load_mnist(tmp_path, download=False, sha256={})
    (tmp_path / name).write_bytes(b"\x00\x00\x08\x05" + raw[name][4:])  # wrong dims
    with pytest.raises(DatasetError, match="dimensions"):
        load_mnist(tmp_path, download=False, sha256={})
    (tmp_path / name).write_bytes(b"PK\x03\x04" + raw[name][4:])  # wrong magic
    with pytest.raises(DatasetError, match="magic"):
        load_mnist(tmp_path, download=False, sha256={})
    (tmp_path / name).unlink()
    (tmp_path / (name + ".gz")).write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=name):
        load_mnist(tmp_path, download=False, sha256={})
    (tmp_path / (name + ".gz")).write_bytes(gzip.compress(raw[name]))
    with pytest.raises(DatasetError, match="sha256"):
        load_mnist(tmp_path, download=False, sha256=dict(sums, **{name: "f" * 64}))
    got = load_mnist(tmp_path, download=False, sha256=sums)
    np.testing.assert_array_equal(got["x_test"], arrays["x_test"])


def test_offline_gives_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=str(tmp_path)):
        load_mnist(tmp_path, download=False)
    with pytest.raises(DatasetError, match="CRAD_DATA_DIR"):  # nothing listens on port 9 of loopback
        load_mnist(tmp_path, mirrors=["http://127.0.0.1:9/"], retries=0, timeout=2, progress=False)
    assert files_under(tmp_path) == []


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CRAD_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=str(tmp_path)):
        load_mnist(download=False)


def test_parse_idx_rejects_short_header():
    with pytest.raises(DatasetError, match="truncated"):
        parse_idx(b"\x00\x00\x08\x03\x00", "f", 3)


def test_names_download_then_cache(server, tmp_path):
    text = b"emma\nolivia\n\nava\n"
    server.routes["/mm/names.txt"] = text
    sums = {"names.txt": hashlib.sha256(text).hexdigest()}
    assert load_names(tmp_path, mirrors=[server.url + "/mm/"], sha256=sums, progress=False) == ["emma", "olivia",
                                                                                              "ava"]
    assert (tmp_path / "names" / "names.txt").read_bytes() == text  # raw, renamed into place once verified
    hits = len(server.hits)
    assert load_names(tmp_path / "names", download=False, sha256=sums) == ["emma", "olivia", "ava"]
    assert len(server.hits) == hits


def test_names_refuses_wrong_checksum_and_says_where(server, tmp_path):
    server.routes["/mm/names.txt"] = b"mallory\n"
    with pytest.raises(DatasetError, match="sha256"):
        load_names(tmp_path, mirrors=[server.url + "/mm/"], retries=0, progress=False)  # the real sha256
    assert files_under(tmp_path) == []
    with pytest.raises(DatasetError, match="load_names"):
        load_names(tmp_path, download=False)
    (tmp_path / "names").mkdir(exist_ok=True)
    (tmp_path / "names" / "names.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(DatasetError, match="UTF-8"):
        load_names(tmp_path, sha256={})


@pytest.mark.skipif(not os.path.isfile(os.path.join(SHARED, "names", "names.txt")),
                    reason="the shared names file is not on this machine")
def test_real_names_file(monkeypatch):
    monkeypatch.setenv("CRAD_DATA_DIR", SHARED)
    names = load_names(download=False)
    # 32,033 names: `wc -l` counts 32,032 lines because the last name has no newline
    assert len(names) == 32033 and names[:3] == ["emma", "olivia", "ava"] and names[-1] == "zzyzx"
    assert len(NAMES_SHA256["names.txt"]) == 64


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "mnist")), reason="the shared MNIST directory is not on "
                                                                            "this machine")
def test_real_mnist_files():
    d = load_mnist(SHARED, download=False, progress=False)
    assert d["x_train"].shape == (60000, 28, 28) and d["x_test"].shape == (10000, 28, 28)
    assert np.bincount(d["y_train"]).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert d["y_test"].shape == (10000,)


def test_default_hashes_refuse_well_formed_but_wrong_files(server, tmp_path, monkeypatch):
    """Without sha256=, the built-in table is checked: parseable IDX files
    that are not MNIST are refused, found locally (through $CRAD_DATA_DIR, the
    default directory) or downloaded."""
    _, raw, _ = small_set()
    local = tmp_path / "local"
    local.mkdir()
    for name, b in raw.items():
        (local / (name + ".gz")).write_bytes(gzip.compress(b))
    monkeypatch.setenv("CRAD_DATA_DIR", str(local))
    with pytest.raises(DatasetError, match="sha256"):
        load_mnist(download=False)
    serve(server, "/m", raw)
    fetched = tmp_path / "fetched"
    with pytest.raises(DatasetError, match="sha256"):
        load_mnist(fetched, mirrors=[server.url + "/m/"], retries=0, progress=False)
    assert [f for _, _, files in os.walk(fetched) for f in files] == []  # nothing kept, no partial file


def test_builtin_hashes_are_the_published_ones():
    from crad.datasets import SHA256
    assert sorted(SHA256) == sorted(FILES.values())
    sums = os.path.join(SHARED, "SHA256SUMS.raw")
    if os.path.exists(sums):
        with open(sums) as f:
            assert dict(line.split()[::-1] for line in f if line.strip()) == SHA256
