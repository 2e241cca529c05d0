import contextlib
import gzip
import hashlib
import http.server
import socket
import struct
import threading
import time

import numpy as np
import pytest
import torch
from torchvision import datasets

from vaelab import data
from vaelab.checks import check_images
from vaelab.data import DataFileError, batches, load_mnist


def idx_blobs(prefix, images, labels):
    """MNIST-format IDX bytes (magic 2051 images, 2049 labels), by file name."""
    n, h, w = images.shape
    return {f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, h, w) + images.tobytes(),
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, len(labels)) + labels.tobytes()}


def write_idx(folder, prefix, images, labels, compress=False):
    """Write the two IDX files of one split: extracted, or only the ``.gz`` files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in idx_blobs(prefix, images, labels).items():
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (folder / name).write_bytes(blob)


def fake_mnist(root, cls_name="MNIST", n_train=30, n_test=12, seed=0, compress=False):
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(root / cls_name / "raw", prefix, images, labels, compress)
        arrays[prefix] = images, labels
    return arrays


def test_embedded_subset_split(mnist):
    train, test = mnist
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    assert train.labels.bincount().tolist() == [400] * 10
    assert test.labels.bincount().tolist() == [100] * 10
    # No image is in both splits.
    flat_train = {row.numpy().tobytes() for row in (train.images * 255).to(torch.uint8).flatten(1)}
    assert not any(row.numpy().tobytes() in flat_train
                   for row in (test.images * 255).to(torch.uint8).flatten(1))


def test_embedded_is_deterministic_and_mixed(mnist):
    again = data.load_embedded_mnist(True)
    assert torch.equal(again.images, mnist[0].images)
    assert torch.equal(again.labels, mnist[0].labels)
    assert len(set(again.labels[:20].tolist())) > 5  # digits are mixed, not sorted


def test_load_mnist_offline_falls_back_to_embedded(tmp_path, capsys):
    d = load_mnist(True, root=tmp_path)
    assert d.source == "embedded" and len(d.images) == 4000
    out = capsys.readouterr().out
    assert "embedded" in out and "Full MNIST has 60,000 training and 10,000 test images" in out
    assert out.count("\n") == 1


@pytest.mark.parametrize("compress", [False, True], ids=["extracted", "gz-only"])
def test_idx_files_are_read_extracted_or_gz_only(tmp_path, capsys, compress):
    arrays = fake_mnist(tmp_path, compress=compress)
    if compress:
        assert all(p.suffix == ".gz" for p in (tmp_path / "MNIST" / "raw").iterdir())
    for train, prefix in ((True, "train"), (False, "t10k")):
        d = load_mnist(train, root=tmp_path)
        images, labels = arrays[prefix]
        assert d.source == "files"
        assert d.images.shape == (len(images), 1, 28, 28) and d.images.dtype == torch.float32
        assert torch.equal(d.images, torch.from_numpy(images).float().div(255).unsqueeze(1))
        assert torch.equal(d.labels, torch.from_numpy(labels).long())
    assert "from files under" in capsys.readouterr().out


def test_fashion_mnist_files(tmp_path):
    fake_mnist(tmp_path, "FashionMNIST", n_train=7, n_test=5)
    d = load_mnist(False, root=tmp_path, dataset="fashion")
    assert d.source == "files" and d.images.shape == (5, 1, 28, 28)


def test_fashion_without_files_says_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="FashionMNIST/raw"):
        load_mnist(True, root=tmp_path, dataset="fashion")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_mnist(dataset="cifar")


def test_download_fails_fast_when_host_refuses(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_OFFLINE", "0")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
    start = time.perf_counter()
    d = load_mnist(True, root=tmp_path, timeout=2)
    assert d.source == "embedded"
    assert time.perf_counter() - start < 30


def test_download_never_hangs_on_a_silent_server(tmp_path, monkeypatch):
    """A server that accepts connections but never answers: the timeout bounds the wait."""
    monkeypatch.setenv("VAELAB_OFFLINE", "0")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept_and_stay_silent():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
    try:
        start = time.perf_counter()
        d = load_mnist(True, root=tmp_path, timeout=1)
        elapsed = time.perf_counter() - start
    finally:
        stop.set()
        thread.join()
        server.close()
        for conn in accepted:
            conn.close()
    assert d.source == "embedded"
    assert accepted, "the download was really attempted"
    assert elapsed < 3, f"a 1 s download budget took {elapsed:.1f}s"


def test_vaelab_offline_skips_the_network(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("network touched")

    monkeypatch.setattr(data, "_host_reachable", boom)
    assert load_mnist(True, root=tmp_path, verbose=False).source == "embedded"


def test_download_false_skips_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_OFFLINE", "0")
    monkeypatch.setattr(data, "_try_download", lambda *a: pytest.fail("tried to download"))
    assert load_mnist(True, root=tmp_path, download=False, verbose=False).source == "embedded"


@pytest.mark.parametrize(("x", "message"), [
    (torch.rand(4, 1, 28, 28) * 255, "divide by 255"),
    (torch.rand(4, 28, 28), "unsqueeze"),
    (torch.randint(0, 255, (4, 1, 28, 28)), r"x.float\(\) / 255"),
    (torch.full((4, 1, 28, 28), float("nan")), "NaN"),
    (-torch.rand(4, 1, 28, 28), r"\[0, 1\]"),
])
def test_check_images_says_what_to_do(x, message):
    with pytest.raises(ValueError, match=message):
        check_images(x)


def test_batches_cover_every_index_once_in_seeded_order():
    a = list(batches(1000, 128, torch.Generator().manual_seed(3)))
    b = list(batches(1000, 128, torch.Generator().manual_seed(3)))
    c = list(batches(1000, 128, torch.Generator().manual_seed(4)))
    assert [len(i) for i in a] == [128] * 7 + [104]
    assert torch.equal(torch.cat(a).sort().values, torch.arange(1000))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(torch.cat(a), torch.cat(c))


def one_idx_file(tmp_path, blob, name="train-images-idx3-ubyte"):
    """MNIST files under tmp_path with ``name`` replaced by ``blob``; returns its path."""
    fake_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / name
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize(("blob", "what"), [
    (b"", "not an IDX file"),
    (bytes(range(256)) * 4, "not an IDX file"),
    (struct.pack(">IIII", 2051, 30, 28, 28) + b"\0" * 1000, "truncated"),
    (struct.pack(">II", 2051, 30), "truncated"),
    (struct.pack(">IIII", 2051, 1, 28, 28) + b"\0" * 800, "longer than its header says"),
])
def test_corrupt_idx_file_is_named_with_what_to_do(tmp_path, blob, what):
    path = one_idx_file(tmp_path, blob)
    with pytest.raises(DataFileError, match=what) as err:
        load_mnist(True, root=tmp_path, verbose=False)
    assert str(path) in str(err.value) and "delete it" in str(err.value)


def test_truncated_gz_from_an_interrupted_download_says_delete_it(tmp_path):
    fake_mnist(tmp_path, compress=True)
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataFileError, match="interrupted download: delete it") as err:
        load_mnist(False, root=tmp_path, verbose=False)
    assert str(path) in str(err.value)


def test_images_and_labels_of_different_counts_are_refused(tmp_path):
    fake_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 29) + bytes(29))
    with pytest.raises(DataFileError, match="30 images but .* 29 labels"):
        load_mnist(True, root=tmp_path, verbose=False)


def test_read_idx_reads_other_types_and_dims(tmp_path):
    values = np.arange(6, dtype=">i4").reshape(2, 3)
    path = tmp_path / "x.idx"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 2, 3) + values.tobytes())
    assert data.read_idx(path).tolist() == [[0, 1, 2], [3, 4, 5]]


@contextlib.contextmanager
def local_server(respond):
    """An HTTP server on 127.0.0.1 whose GET handler is ``respond(handler, stop_event)``;
    yields the mirror URL and stops the server (and any handler still sending) at the end."""
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            respond(self, stop)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_files(files):
    def respond(handler, stop):
        blob = files.get(handler.path.lstrip("/"))
        handler.send_response(200 if blob is not None else 404)
        handler.send_header("Content-Length", str(len(blob or b"")))
        handler.end_headers()
        handler.wfile.write(blob or b"")
    return respond


def mnist_gz_files(n=20):
    rng = np.random.default_rng(1)
    files = {}
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for name, blob in idx_blobs(prefix, images, labels).items():
            files[f"{name}.gz"] = gzip.compress(blob)
    return files


def test_download_writes_checked_gz_files_and_reads_them(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_OFFLINE", "0")
    files = mnist_gz_files()
    monkeypatch.setattr(datasets.MNIST, "resources",
                        [(name, hashlib.md5(blob).hexdigest()) for name, blob in files.items()])
    with local_server(serve_files(files)) as url:
        monkeypatch.setattr(datasets.MNIST, "mirrors", [url])
        d = load_mnist(True, root=tmp_path, timeout=5, verbose=False)
    assert d.source == "download" and d.images.shape == (20, 1, 28, 28)
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == sorted(files)
    assert load_mnist(False, root=tmp_path, verbose=False).source == "files"


def test_download_with_a_wrong_md5_leaves_no_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAELAB_OFFLINE", "0")
    files = mnist_gz_files()
    monkeypatch.setattr(datasets.MNIST, "resources", [(name, "0" * 32) for name in files])
    with local_server(serve_files(files)) as url:
        monkeypatch.setattr(datasets.MNIST, "mirrors", [url])
        d = load_mnist(True, root=tmp_path, timeout=5)
    assert d.source == "embedded" and "md5" in capsys.readouterr().out
    assert list((tmp_path / "MNIST" / "raw").iterdir()) == []


def test_slow_download_stops_within_timeout_and_leaves_no_partial_file(tmp_path, monkeypatch,
                                                                      capsys):
    """A server that sends one byte every 0.2 s: ``timeout`` bounds the whole download."""
    monkeypatch.setenv("VAELAB_OFFLINE", "0")

    def dribble(handler, stop):
        handler.send_response(200)
        handler.send_header("Content-Length", "10000000")
        handler.end_headers()
        with contextlib.suppress(OSError):
            while not stop.wait(0.2):
                handler.wfile.write(b"\x1f")
                handler.wfile.flush()

    with local_server(dribble) as url:
        monkeypatch.setattr(datasets.MNIST, "mirrors", [url])
        start = time.perf_counter()
        d = load_mnist(True, root=tmp_path, timeout=1)
        elapsed = time.perf_counter() - start
    assert d.source == "embedded" and "download stopped" in capsys.readouterr().out
    assert elapsed < 2.5, f"a 1 s download budget took {elapsed:.1f} s"
    assert list((tmp_path / "MNIST" / "raw").iterdir()) == []
