"""Datasets (MNIST, makemore's names): find them locally, or download them
(requests), verify them, parse them.

The data root holds one folder per dataset (``mnist/``, ``names/``): it is
``data_dir=``, else ``$CRAD_DATA_DIR``, else ``$XDG_CACHE_HOME/crad``
(``~/.cache/crad``). A ``data_dir`` that holds a dataset's files directly is
accepted too. Missing files are downloaded from the mirrors in order, with
timeouts and retries and a progress bar; each file's sha256 is checked on
its decompressed bytes; a download goes to a temporary name and is renamed
only once complete and verified, so an interrupted transfer never leaves a
corrupt file in the cache. Both loaders share that one download function.
"""
import gzip
import hashlib
import os
import tempfile
import time

import numpy as np

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# sha256 of the decompressed files (the same as shared/data/mnist/SHA256SUMS.raw).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
NAMES_FILE = "names.txt"
NAMES_SHA256 = {NAMES_FILE: "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"}
NAMES_MIRRORS = ("https://raw.githubusercontent.com/karpathy/makemore/master/",)
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


class DatasetError(RuntimeError):
    """A data file is missing, cannot be downloaded, or is corrupt."""


def default_data_dir():
    """The data root: $CRAD_DATA_DIR, else the user cache (~/.cache/crad)."""
    env = os.environ.get("CRAD_DATA_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "crad")


def dataset_dir(data_dir, dataset, probe):
    """The folder of one dataset: ``<root>/<dataset>``, with the root from
    ``data_dir`` or ``default_data_dir()``; or the root itself when it already
    holds the file ``probe`` (raw or gzip), as a dataset folder would (so a
    ``$CRAD_DATA_DIR`` that points at an MNIST folder keeps working)."""
    root = os.path.abspath(os.path.expanduser(os.fspath(data_dir))) if data_dir else default_data_dir()
    if any(os.path.exists(os.path.join(root, probe + ext)) for ext in ("", ".gz")):
        return root
    return os.path.join(root, dataset)


def parse_idx(raw, name, expect_dims):
    """A numpy uint8 array from IDX bytes; strict about magic, dims and size."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{name}: wrong magic number {raw[:4].hex() or '(empty)'}; "
                           f"expected 0x000008{expect_dims:02x} (unsigned bytes, {expect_dims} dims)")
    ndim = raw[3]
    if ndim != expect_dims:
        raise DatasetError(f"{name}: {ndim} dimensions, expected {expect_dims}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{name}: truncated header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    size = int(np.prod(dims))
    if len(raw) != header + size:
        raise DatasetError(f"{name}: {len(raw) - header} data bytes for dims {dims}, expected {size} "
                           f"(truncated or corrupt file)")
    return np.frombuffer(raw, np.uint8, size, header).reshape(dims)


def _read_local(folder, name):
    """Decompressed bytes of name (raw) or name.gz in folder, or None."""
    for fname, opener in ((name, open), (name + ".gz", gzip.open)):
        path = os.path.join(folder, fname)
        if os.path.exists(path):
            try:
                with opener(path, "rb") as f:
                    return f.read(), path
            except (OSError, EOFError) as e:  # bad gzip stream, truncated gzip
                raise DatasetError(f"{path}: cannot be read ({e}); delete it to download again") from e
    return None


def _check(raw, name, path, sha256):
    want = sha256.get(name)
    got = hashlib.sha256(raw).hexdigest()
    if want and got != want:
        raise DatasetError(f"{path}: sha256 {got} does not match the expected {want}")


def _download(name, folder, mirrors, timeout, retries, sha256, progress, gz=True):
    """Fetch name (name.gz when gz) from the first mirror that serves a copy
    whose (decompressed) bytes match sha256; returns (bytes, final path)."""
    import requests
    from tqdm import tqdm
    os.makedirs(folder, exist_ok=True)
    errors = []
    for mirror in mirrors:
        remote = name + ".gz" if gz else name
        url = mirror.rstrip("/") + "/" + remote
        for attempt in range(retries + 1):
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f, requests.get(url, stream=True, timeout=timeout) as r:
                    r.raise_for_status()
                    total = int(r.headers.get("Content-Length") or 0)
                    got = 0
                    with tqdm(total=total or None, unit="B", unit_scale=True, desc=name,
                              disable=not progress, leave=False) as bar:
                        for chunk in r.iter_content(1 << 16):
                            f.write(chunk)
                            got += len(chunk)
                            bar.update(len(chunk))
                    if total and got != total:
                        raise DatasetError(f"{url}: transfer interrupted after {got} of {total} bytes")
                with (gzip.open if gz else open)(tmp, "rb") as g:
                    raw = g.read()
                _check(raw, name, url, sha256)
                final = os.path.join(folder, remote)
                os.replace(tmp, final)
                return raw, final
            except DatasetError as e:  # a wrong or short file: this mirror will not do
                errors.append(str(e))
                break
            except (requests.RequestException, OSError, EOFError) as e:
                errors.append(f"{url}: {type(e).__name__}: {e}")
                if isinstance(e, requests.HTTPError) and e.response is not None and e.response.status_code < 500:
                    break  # 404 and the like: retrying will not help
                time.sleep(min(0.5 * 2 ** attempt, 4))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    raise DatasetError(f"could not download {name}: " + "; ".join(errors) +
                       f". Put {name} (gzip or raw) in {folder}, or set CRAD_DATA_DIR to a root holding "
                       f"{os.path.basename(folder)}/")


def _obtain(name, folder, download, loader, mirrors, timeout, retries, sha256, progress, gz=True):
    """(verified bytes, path) of name from folder, downloading it if missing."""
    found = _read_local(folder, name)
    if found is None:
        if not download:
            raise DatasetError(f"{name}(.gz) is not in {folder}; download it there, set "
                               f"CRAD_DATA_DIR to the data root, or call {loader}(download=True)")
        found = _download(name, folder, mirrors, timeout, retries, sha256, progress, gz)
    _check(found[0], name, found[1], sha256)
    return found


def load_mnist(data_dir=None, *, download=True, mirrors=MIRRORS, timeout=30.0, retries=2,
               sha256=None, progress=True):
    """The MNIST arrays (from ``<data root>/mnist``): x_train (60000, 28, 28)
    and y_train (60000,), x_test (10000, 28, 28) and y_test (10000,), all
    uint8, in a dict.

    Files already in the data directory are used without any network access.
    Raises DatasetError naming the file for a corrupt one, and naming the
    directory when a file is missing and cannot be downloaded.
    """
    folder = dataset_dir(data_dir, "mnist", FILES["x_train"])
    sha256 = SHA256 if sha256 is None else sha256
    out = {}
    for key, name in FILES.items():
        raw, path = _obtain(name, folder, download, "load_mnist", mirrors, timeout, retries, sha256, progress)
        out[key] = parse_idx(raw, path, 3 if key.startswith("x") else 1)
    for split in ("train", "test"):
        if len(out[f"x_{split}"]) != len(out[f"y_{split}"]):
            raise DatasetError(f"{split}: {len(out[f'x_{split}'])} images but {len(out[f'y_{split}'])} labels")
    return out


def load_names(data_dir=None, *, download=True, mirrors=NAMES_MIRRORS, timeout=30.0, retries=2,
               sha256=None, progress=True):
    """makemore's names (``<data root>/names/names.txt``: 32,033 names) as a
    list of str, in file order, blank lines dropped.

    Downloaded from karpathy/makemore (master) when missing, like MNIST.
    Raises DatasetError naming the file when it is corrupt (sha256) or not
    UTF-8, and naming the folder when it is missing and cannot be downloaded.
    """
    folder = dataset_dir(data_dir, "names", NAMES_FILE)
    sha256 = NAMES_SHA256 if sha256 is None else sha256
    raw, path = _obtain(NAMES_FILE, folder, download, "load_names", mirrors, timeout, retries, sha256, progress,
                        gz=False)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e})") from e
    return [line.strip() for line in text.splitlines() if line.strip()]
