"""A trained decoder as a small file that a web page can run: ``export_decoder`` / ``load_decoder``.

The file (format ``vaelab-decoder``, version 1) is::

    b"VAELABD1"                 8 bytes: magic
    uint32 little-endian        n, the length of the JSON header in bytes
    JSON header (UTF-8)         padded with spaces so the weights start at a multiple of 8
    weights                     every tensor at header["tensors"][i]["offset"] (from the
                                start of the weights), little-endian

The header holds ``format``, ``version``, ``kind`` (``"mlp"`` or ``"convvae"``),
``latent_dim``, ``image_shape`` ``[1, H, W]``, ``layers`` (what to do, in order) and
``tensors``: each with ``name``, ``shape`` (PyTorch's layout), ``dtype`` (``float32``,
``float16`` or ``int8``), ``offset``, ``nbytes`` and, for ``int8``, ``scale``: one float per
output channel (value = int8 × scale). Layers are ``{"op": "linear", "weight", "bias"}``
(weight ``(out, in)``), ``{"op": "relu"}``, ``{"op": "tanh"}``, ``{"op": "reshape", "shape":
[C, H, W]}`` and ``{"op": "conv_transpose2d", "weight", "bias", "stride": [s, s]}`` (weight
``(C_in, C_out, k, k)``, no padding). The last layer gives logits ``(1, H, W)``.

``vaelab/web/decoder.js`` reads the same file in the browser; ``load_decoder`` reads it back
into PyTorch (the dequantised weights), so tests can compare the two::

    data = export_decoder(model, "decoder.bin")     # the bytes, also written to the file
    logits = load_decoder(data).decode(z)            # ≈ model.decode(z)
"""

from __future__ import annotations

import base64
import functools
import json
import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checks import check_choice, check_codes
from .files import atomic_write
from .models import ConvVAE, MLPModel

FORMAT, VERSION, MAGIC = "vaelab-decoder", 1, b"VAELABD1"
DTYPES = ("float16", "int8", "auto")
SMALL = 65536  # tensors with fewer values (biases, small layers) stay float16 even in int8 mode
ALIGN = 8


# ---------------------------------------------------------------------------------------------
# The model → a list of layers.


def decoder_modules(model) -> tuple[str, list[tuple[str, nn.Module | dict]]]:
    """``(kind, [(name, module), ...])``: the decoder's layers in the order they run; a reshape
    is ``(name, {"op": "reshape", "shape": [C, H, W]})``."""
    if isinstance(model, MLPModel):
        return "mlp", [(n, m) for n, m in model.decoder.named_modules(prefix="decoder")
                       if not isinstance(m, nn.Sequential)]
    if isinstance(model, ConvVAE):
        head = [(n, m) for n, m in model.from_code.named_modules(prefix="from_code")
                if not isinstance(m, nn.Sequential)]
        tail = [(n, m) for n, m in model.decoder.named_modules(prefix="decoder")
                if not isinstance(m, nn.Sequential)]
        return "convvae", head + [("reshape", {"op": "reshape", "shape": [1024, 1, 1]})] + tail
    raise TypeError("export_decoder takes a vaelab VAE, AE or ConvVAE; got "
                    f"{type(model).__name__}")


def layer_entry(name: str, module) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(layer, {tensor name: tensor})`` for one decoder module."""
    if isinstance(module, dict):
        return module, {}
    if isinstance(module, nn.ReLU):
        return {"op": "relu"}, {}
    if isinstance(module, nn.Tanh):
        return {"op": "tanh"}, {}
    tensors = {f"{name}.weight": module.weight, f"{name}.bias": module.bias}
    layer = {"weight": f"{name}.weight", "bias": f"{name}.bias"}
    if isinstance(module, nn.Linear):
        return {"op": "linear", **layer}, tensors
    if isinstance(module, nn.ConvTranspose2d):
        if (module.padding != (0, 0) or module.output_padding != (0, 0) or module.groups != 1
                or module.dilation != (1, 1)):
            raise ValueError(f"{name}: only ConvTranspose2d without padding, groups or "
                             "dilation can be exported")
        return {"op": "conv_transpose2d", **layer, "stride": list(module.stride)}, tensors
    raise TypeError(f"{name}: cannot export a {type(module).__name__} layer")


# ---------------------------------------------------------------------------------------------
# Tensors → bytes.


def output_axis(name: str, shape) -> int:
    """The output-channel axis of a weight: 0 for Linear ``(out, in)``, 1 for
    ConvTranspose2d ``(in, out, k, k)``; biases ``(out,)``: 0."""
    return 1 if len(shape) == 4 else 0


def quantise_int8(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``(q, scale)``: int8 ``q`` and one float32 ``scale`` per index of ``axis`` with
    ``values ≈ q × scale`` (symmetric: the largest magnitude maps to 127)."""
    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    scale = np.abs(moved).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = -1
    q = np.clip(np.round(values / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def encode_tensor(name: str, tensor: torch.Tensor, dtype: str) -> tuple[dict, bytes]:
    """``(entry without offset, raw bytes)`` of one tensor stored as ``dtype``."""
    values = tensor.detach().cpu().float().numpy()
    entry = {"name": name, "shape": list(values.shape)}
    if dtype == "int8" and values.size >= SMALL:
        q, scale = quantise_int8(values, output_axis(name, values.shape))
        entry.update(dtype="int8", scale=[float(s) for s in scale])
        raw = q.tobytes()
    else:
        entry["dtype"] = "float16"
        raw = values.astype("<f2").tobytes()
    entry["nbytes"] = len(raw)
    return entry, raw


def choose_dtype(kind: str, dtype: str) -> str:
    """``"auto"``: float16 for the MLP decoders (about 0.6 MB), int8 for the ConvVAE's 5.4 M
    decoder parameters (5.4 MB); both decode within 2/255 of PyTorch (tests/test_web.py)."""
    dtype = check_choice(dtype, "dtype", DTYPES)
    if dtype == "auto":
        return "float16" if kind == "mlp" else "int8"
    return dtype


def header_and_weights(model, dtype: str) -> tuple[dict, bytes]:
    """The JSON header (as a dict) and the packed weights of ``model``'s decoder."""
    kind, modules = decoder_modules(model)
    dtype = choose_dtype(kind, dtype)
    layers, entries, chunks, offset = [], [], [], 0
    for name, module in modules:
        layer, tensors = layer_entry(name, module)
        layers.append(layer)
        for tname, tensor in tensors.items():
            entry, raw = encode_tensor(tname, tensor, dtype)
            pad = -len(raw) % ALIGN
            entries.append({**entry, "offset": offset})
            chunks.append(raw + b"\0" * pad)
            offset += len(raw) + pad
    header = {"format": FORMAT, "version": VERSION, "kind": kind, "dtype": dtype,
              "latent_dim": model.latent_dim, "image_shape": list(model.image_shape),
              "layers": layers, "tensors": entries}
    return header, b"".join(chunks)


def export_decoder(model, path=None, *, dtype: str = "auto") -> bytes:
    """The decoder of ``model`` (``VAE``, ``AE`` or ``ConvVAE``) as the bytes of a
    ``vaelab-decoder`` file (see the module docstring); with ``path``, also written there
    (atomically). ``dtype``: ``"float16"``, ``"int8"`` (per-output-channel scales) or
    ``"auto"`` (float16 for MLPs, int8 for the ConvVAE)."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.parent.is_dir():
            raise FileNotFoundError(f"path: folder {path.parent} does not exist; create it or "
                                    "pass another path")
    header, weights = header_and_weights(model, dtype)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(len(MAGIC) + 4 + len(text)) % ALIGN)
    data = MAGIC + struct.pack("<I", len(text)) + text + weights
    if path is not None:
        with atomic_write(path) as fh:
            fh.write(data)
    return data


# ---------------------------------------------------------------------------------------------
# Bytes → a PyTorch decoder.


def read_header(data: bytes) -> tuple[dict, memoryview]:
    """``(header, weights)`` of the bytes of a ``vaelab-decoder`` file."""
    if data[:len(MAGIC)] != MAGIC:
        raise ValueError("not a vaelab-decoder file (its first bytes are not b'VAELABD1'): "
                         "pass the bytes export_decoder wrote")
    (n,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(bytes(data[start:start + n]))
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(f"unsupported decoder file: format {header.get('format')!r} "
                         f"version {header.get('version')!r}; this vaelab reads version {VERSION}")
    return header, memoryview(data)[start + n:]


def decode_tensor(entry: dict, weights: memoryview) -> torch.Tensor:
    """One tensor of the file as float32, dequantised."""
    raw = weights[entry["offset"]:entry["offset"] + entry["nbytes"]]
    shape = entry["shape"]
    if entry["dtype"] == "int8":
        values = np.frombuffer(raw, dtype=np.int8).astype(np.float32).reshape(shape)
        scale_shape = [1] * len(shape)
        scale_shape[output_axis(entry["name"], shape)] = -1
        values = values * np.asarray(entry["scale"], dtype=np.float32).reshape(scale_shape)
    else:
        stored = {"float16": "<f2", "float32": "<f4"}[entry["dtype"]]
        values = np.frombuffer(raw, dtype=stored).astype(np.float32).reshape(shape)
    return torch.from_numpy(values.copy())


def torch_layer(layer: dict, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The PyTorch module for one layer of the header, holding the file's weights."""
    op = layer["op"]
    if op in ("relu", "tanh"):
        return nn.ReLU() if op == "relu" else nn.Tanh()
    if op == "reshape":
        return nn.Unflatten(1, layer["shape"])
    weight, bias = tensors[layer["weight"]], tensors[layer["bias"]]
    if op == "linear":
        module = nn.Linear(weight.shape[1], weight.shape[0])
    elif op == "conv_transpose2d":
        module = nn.ConvTranspose2d(weight.shape[0], weight.shape[1], weight.shape[2:],
                                    stride=tuple(layer["stride"]))
    else:
        raise ValueError(f"unknown layer op {op!r} in the decoder file")
    with torch.no_grad():
        module.weight.copy_(weight)
        module.bias.copy_(bias)
    return module


class WebDecoder(nn.Module):
    """The decoder a ``vaelab-decoder`` file describes, with its dequantised weights:
    ``decode(z)`` takes codes ``(N, latent_dim)`` and returns logits ``(N, 1, H, W)``."""

    def __init__(self, header: dict, tensors: dict[str, torch.Tensor]):
        super().__init__()
        self.header = header
        self.kind, self.latent_dim = header["kind"], header["latent_dim"]
        self.image_shape = tuple(header["image_shape"])
        self.layers = nn.Sequential(*(torch_layer(layer, tensors) for layer in header["layers"]))

    @torch.no_grad()
    def decode(self, z) -> torch.Tensor:
        """``(N, latent_dim)`` codes → logits ``(N, 1, H, W)``."""
        z = check_codes(z, self.latent_dim).float()
        return self.layers(z).reshape(-1, *self.image_shape)


def load_decoder(data_or_path) -> WebDecoder:
    """A ``WebDecoder`` from the bytes ``export_decoder`` returned, or from a file path."""
    if isinstance(data_or_path, (str, Path)):
        data = Path(data_or_path).expanduser().read_bytes()
    elif isinstance(data_or_path, (bytes, bytearray, memoryview)):
        data = bytes(data_or_path)
    else:
        raise TypeError("load_decoder takes the bytes of a decoder file or its path; got "
                        f"{type(data_or_path).__name__}")
    header, weights = read_header(data)
    tensors = {e["name"]: decode_tensor(e, weights) for e in header["tensors"]}
    return WebDecoder(header, tensors)


# ---------------------------------------------------------------------------------------------
# The in-page explorer's markup (vaelab.widgets fills in the config).

JS_DIR = Path(__file__).parent / "js"


@functools.cache
def inline_module() -> str:
    """decoder.js and explorer.js as ONE module for an inline ``<script type="module">``
    (the import between them dropped: both are in the same script), then ``startAll()``."""
    parts = [(JS_DIR / name).read_text(encoding="utf-8") for name in ("decoder.js", "explorer.js")]
    code = "\n".join(line for part in parts for line in part.splitlines()
                     if not line.startswith("import "))
    if "</script" in code.lower():
        raise RuntimeError("the explorer's JavaScript must not contain '</script'")
    return code + "\nstartAll();\n"


def script_json(value) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</`` can end it early)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")


def explorer_html(kind: str, config: dict, decoder: bytes, static_html: str) -> str:
    """The in-page explorer: ``div.vaelab-web-explorer[data-kind=kind]`` holding its config,
    the decoder bytes (base64, ``script.vaelab-web-decoder``), ``static_html`` (shown where
    scripts do not run) and the module that makes it live in any page."""
    check_choice(kind, "kind", ("latent", "interpolation"))
    payload = base64.b64encode(decoder).decode("ascii")
    return (f'<div class="vaelab-web-explorer" data-kind="{kind}">'
            f'<script type="application/json" class="vaelab-web-config">{script_json(config)}'
            "</script>"
            f'<script type="application/octet-stream" class="vaelab-web-decoder">{payload}'
            "</script>"
            f'<div class="vaelab-web-static">{static_html}</div>'
            f'<script type="module">{inline_module()}</script></div>')
