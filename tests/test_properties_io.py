"""Property-based tests of what vaelab reads and writes: IDX files, checkpoints, metadata.

Whatever the bytes or the metadata, the outcome is either a correct result or a vaelab error
that names the file or the key — never a raw internal error — and a good file is never lost.
"""

import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab.checkpoints import CheckpointError, load, save
from vaelab.data import DataFileError, read_idx
from vaelab.models import VAE

FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@st.composite
def idx_files(draw):
    """Bytes shaped like an IDX file: a header (sometimes with a wrong type code) and a body of
    the announced length, or off by a few bytes. Returns (bytes, expected array or None)."""
    code = draw(st.sampled_from([*CODES, 0x07, 0xFF]))
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    header = bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    itemsize = np.dtype(CODES.get(code, ">u1")).itemsize
    size = int(np.prod(shape)) * itemsize
    body = draw(st.binary(min_size=size, max_size=size))
    off = draw(st.sampled_from([0, 0, 0, -1, 1, 7]))
    body = body[:size + off] if off < 0 else body + bytes(off)
    return header + body, _parse_or_none(header + body)


def check_read(path, expected):
    """``read_idx(path)`` gives ``expected``, or (expected None) a DataFileError naming path."""
    try:
        got = read_idx(path)
    except DataFileError as err:
        assert str(path) in str(err) and "delete it" in str(err)
        assert expected is None, f"a good file was refused: {err}"
        return
    assert expected is not None, "a damaged file was read"
    assert got.shape == expected.shape and got.tobytes() == expected.tobytes()


@FAST
@given(case=st.one_of(idx_files(), st.binary(max_size=64).map(lambda b: (b, _parse_or_none(b)))))
def test_idx_reader_reads_good_files_and_names_bad_ones(tmp_path_factory, case):
    blob, expected = case
    folder = tmp_path_factory.mktemp("idx")
    plain, packed = folder / "data-idx", folder / "data-idx.gz"
    plain.write_bytes(blob)
    packed.write_bytes(gzip.compress(blob))
    check_read(plain, expected)
    check_read(packed, expected)


def _parse_or_none(blob):
    """The array in ``blob`` by an independent reading of the IDX format, or None."""
    if len(blob) < 4 or blob[:2] != b"\0\0":
        return None
    code, ndim = blob[2], blob[3]
    if code not in CODES or not 1 <= ndim <= 4 or len(blob) < 4 + 4 * ndim:
        return None
    shape = struct.unpack(f">{ndim}I", blob[4:4 + 4 * ndim])
    body = blob[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape, dtype=object)) * np.dtype(CODES[code]).itemsize:
        return None
    return np.frombuffer(body, CODES[code]).reshape(shape)


@FAST
@given(case=idx_files(), cut=st.integers(0, 200))
def test_truncated_gz_is_named_and_never_read_as_data(tmp_path_factory, case, cut):
    blob, expected = case
    packed = gzip.compress(blob)
    path = tmp_path_factory.mktemp("gz") / "data-idx.gz"
    path.write_bytes(packed[:cut])
    check_read(path, expected if cut >= len(packed) else None)


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    """The bytes of a good checkpoint of a tiny VAE, and that VAE."""
    torch.manual_seed(0)
    model = VAE(2, hidden=(8,))
    path = save(model, tmp_path_factory.mktemp("good") / "m.pt", note="good")
    return path.read_bytes(), model


@FAST
@given(data=st.data())
def test_damaged_checkpoint_loads_intact_or_is_a_checkpoint_error(tmp_path_factory,
                                                                  good_checkpoint, data):
    blob, model = good_checkpoint
    how = data.draw(st.sampled_from(["truncate", "flip", "garbage"]))
    if how == "truncate":
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    elif how == "flip":
        i = data.draw(st.integers(0, len(blob) - 1))
        blob = blob[:i] + bytes([blob[i] ^ data.draw(st.integers(1, 255))]) + blob[i + 1:]
    else:
        blob = data.draw(st.binary(max_size=300))
    path = tmp_path_factory.mktemp("bad") / "m.pt"
    path.write_bytes(blob)
    try:
        loaded = load(path)
    except CheckpointError as err:
        assert str(path) in str(err) and "weights_only=False" not in str(err)
        return
    # It loaded: then the weights and configuration are the saved ones (the digest holds).
    assert loaded.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 model.state_dict().values(), strict=True))


def _unstorable(value) -> bool:
    """True when ``value`` holds something no checkpoint may hold (a function, a frozenset)."""
    if callable(value) and not isinstance(value, type) or isinstance(value, frozenset):
        return True
    if isinstance(value, dict):
        return any(_unstorable(v) for v in value.values())
    if isinstance(value, list | tuple | set):
        return any(_unstorable(v) for v in value)
    return False


def _expected(value):
    """What a checkpoint gives back: numpy values as Python ones, the rest unchanged."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _expected(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_expected(v) for v in value)
    return value


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=5),
    st.floats(allow_nan=False), st.integers(-100, 100).map(np.int64),
    st.floats(-1e6, 1e6, width=32).map(np.float32), st.booleans().map(np.bool_),
    st.lists(st.integers(0, 9), max_size=4).map(np.array),
    st.integers(1, 3).map(lambda n: torch.arange(n, dtype=torch.float32)),
    st.frozensets(st.integers(0, 3), max_size=2), st.sets(st.integers(0, 3), max_size=2),
    st.sampled_from([len, print]),
)
metadata_values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner),
    st.dictionaries(st.text(max_size=4), inner, max_size=3)), max_leaves=8)


@FAST
@given(metadata=st.dictionaries(st.text(min_size=1, max_size=6).filter(str.isidentifier),
                                metadata_values, max_size=3))
def test_save_round_trips_metadata_or_refuses_it_and_keeps_the_old_file(
        tmp_path_factory, good_checkpoint, metadata):
    metadata.pop("model", None)
    metadata.pop("path", None)
    path = tmp_path_factory.mktemp("meta") / "m.pt"
    path.write_bytes(good_checkpoint[0])
    try:
        save(VAE(2, hidden=(8,)), path, **metadata)
    except TypeError as err:
        assert _unstorable(metadata), f"refused storable metadata: {err}"
        assert str(err).startswith("metadata["), err
        assert path.read_bytes() == good_checkpoint[0]
        assert [p.name for p in path.parent.iterdir()] == ["m.pt"]
        return
    assert not _unstorable(metadata), "stored a function or a frozenset"
    assert _same(load(path).metadata, _expected(metadata))
