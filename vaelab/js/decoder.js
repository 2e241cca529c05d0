// Decode a latent code in the browser: reads the `vaelab-decoder` file that
// vaelab.web.export_decoder writes (see vaelab/web.py for the format) and runs its layers.
// Plain JavaScript, no dependencies.
//
//   const decoder = parseDecoder(bytes);          // ArrayBuffer or Uint8Array
//   const logits = decoder.decode(z);             // Float32Array (H*W), z a Float32Array (L)
//   const grey = toPixels(logits);                // Uint8ClampedArray, round(255 * sigmoid)
//
// Activations are kept channels-last (pixel-major: index (y * W + x) * C + c), so the inner
// loops of both layer types run over contiguous memory.

const MAGIC = "VAELABD1";

let halfTable = null;

function float16Table() {
  // All 65,536 float16 values as float32: decoding a weight is one table look-up.
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    let v;
    if (exp === 0) v = frac * 2 ** -24;
    else if (exp === 31) v = frac ? NaN : Infinity;
    else v = (1 + frac / 1024) * 2 ** (exp - 15);
    halfTable[h] = sign * v;
  }
  return halfTable;
}

function readTensor(entry, weights) {
  // One tensor of the file as a Float32Array in PyTorch's layout (int8 values × scale).
  const n = entry.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const at = weights.byteOffset + entry.offset;
  if (entry.dtype === "float16") {
    const table = float16Table();
    const view = new DataView(weights.buffer, at, 2 * n);
    for (let i = 0; i < n; i++) out[i] = table[view.getUint16(2 * i, true)];
  } else if (entry.dtype === "float32") {
    const view = new DataView(weights.buffer, at, 4 * n);
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
  } else if (entry.dtype === "int8") {
    const q = new Int8Array(weights.buffer, at, n);
    const s = entry.shape;
    // Output channel: axis 0 of a Linear weight (out, in); axis 1 of a ConvTranspose2d
    // weight (in, out, k, k).
    const inner = s.length === 4 ? s[2] * s[3] : s.slice(1).reduce((a, b) => a * b, 1);
    const channels = s.length === 4 ? s[1] : s[0];
    for (let i = 0; i < n; i++) out[i] = q[i] * entry.scale[Math.floor(i / inner) % channels];
  } else {
    throw new Error(`vaelab decoder: unknown dtype ${entry.dtype}`);
  }
  return out;
}

function linearLayer(layer, tensors, shape) {
  // y[o] = b[o] + W[o, :] · x, W (out, in) row-major.
  const w = tensors[layer.weight];
  const b = tensors[layer.bias];
  const nOut = b.length;
  const nIn = w.length / nOut;
  const run = (x) => {
    const y = new Float32Array(nOut);
    for (let o = 0; o < nOut; o++) {
      let sum = b[o];
      const row = o * nIn;
      for (let i = 0; i < nIn; i++) sum += w[row + i] * x[i];
      y[o] = sum;
    }
    return y;
  };
  return { run, shape: [nOut, 1, 1] };
}

function convTransposeLayer(layer, tensors, shape) {
  // Transposed convolution, stride s, no padding: input pixel (iy, ix) of channel ci adds
  // x · W[ci, :, ky, kx] to output pixel (s·iy + ky, s·ix + kx). Weights are rearranged once
  // to (ci, ky, kx, co) so the innermost loop runs over output channels; zero inputs (after
  // a ReLU, about half of them) are skipped.
  const src = tensors[layer.weight];
  const bias = tensors[layer.bias];
  const cIn = shape[0];
  const cOut = bias.length;
  const k = Math.round(Math.sqrt(src.length / (cIn * cOut)));
  const [sy, sx] = layer.stride;
  const [, h, w] = shape;
  const oh = (h - 1) * sy + k;
  const ow = (w - 1) * sx + k;
  const wt = new Float32Array(src.length);
  for (let ci = 0; ci < cIn; ci++)
    for (let co = 0; co < cOut; co++)
      for (let t = 0; t < k * k; t++)
        wt[(ci * k * k + t) * cOut + co] = src[(ci * cOut + co) * k * k + t];
  const run = (x) => {
    const y = new Float32Array(oh * ow * cOut);
    for (let p = 0; p < oh * ow; p++) y.set(bias, p * cOut);
    for (let iy = 0; iy < h; iy++) {
      for (let ix = 0; ix < w; ix++) {
        const pixel = (iy * w + ix) * cIn;
        for (let ci = 0; ci < cIn; ci++) {
          const v = x[pixel + ci];
          if (v === 0) continue;
          for (let ky = 0; ky < k; ky++) {
            for (let kx = 0; kx < k; kx++) {
              const wo = (ci * k * k + ky * k + kx) * cOut;
              const yo = ((iy * sy + ky) * ow + ix * sx + kx) * cOut;
              for (let co = 0; co < cOut; co++) y[yo + co] += v * wt[wo + co];
            }
          }
        }
      }
    }
    return y;
  };
  return { run, shape: [cOut, oh, ow] };
}

function reshapeLayer(layer) {
  // (C·H·W,) in PyTorch's channel-major order → channels-last (H, W, C).
  const [c, h, w] = layer.shape;
  const run = (x) => {
    if (h * w === 1) return x;
    const y = new Float32Array(c * h * w);
    for (let ci = 0; ci < c; ci++)
      for (let p = 0; p < h * w; p++) y[p * c + ci] = x[ci * h * w + p];
    return y;
  };
  return { run, shape: [c, h, w] };
}

function activation(op, shape) {
  const f = op === "relu" ? (v) => (v > 0 ? v : 0) : Math.tanh;
  const run = (x) => {
    for (let i = 0; i < x.length; i++) x[i] = f(x[i]);
    return x;
  };
  return { run, shape };
}

function buildLayer(layer, tensors, shape) {
  if (layer.op === "linear") return linearLayer(layer, tensors, shape);
  if (layer.op === "conv_transpose2d") return convTransposeLayer(layer, tensors, shape);
  if (layer.op === "reshape") return reshapeLayer(layer);
  if (layer.op === "relu" || layer.op === "tanh") return activation(layer.op, shape);
  throw new Error(`vaelab decoder: unknown layer ${layer.op}`);
}

export function parseDecoder(data) {
  // The decoder in `data` (ArrayBuffer or Uint8Array holding a vaelab-decoder file).
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const magic = String.fromCharCode(...bytes.subarray(0, 8));
  if (magic !== MAGIC) throw new Error("vaelab decoder: not a vaelab-decoder file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + n)));
  if (header.format !== "vaelab-decoder" || header.version !== 1)
    throw new Error(`vaelab decoder: unsupported ${header.format} version ${header.version}`);
  const weights = bytes.subarray(12 + n);
  const tensors = {};
  for (const entry of header.tensors) tensors[entry.name] = readTensor(entry, weights);
  let shape = [header.latent_dim, 1, 1];
  const layers = header.layers.map((layer) => {
    const built = buildLayer(layer, tensors, shape);
    shape = built.shape;
    return built;
  });
  const [channels, height, width] = header.image_shape;
  const decode = (z) => {
    if (z.length !== header.latent_dim)
      throw new Error(`vaelab decoder: z has ${z.length} values, the decoder takes ${header.latent_dim}`);
    let x = Float32Array.from(z);
    for (const layer of layers) x = layer.run(x);
    return x; // channels-last; for one channel that is the (H, W) image itself
  };
  return { header, latentDim: header.latent_dim, channels, height, width, decode };
}

export function toPixels(logits) {
  // Grey values 0..255: round(255 · sigmoid(logit)), as vaelab.widgets.image_pixels.
  const out = new Uint8ClampedArray(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = Math.round(255 / (1 + Math.exp(-logits[i])));
  return out;
}

export function base64Bytes(text) {
  // The bytes of base64 `text` (whitespace ignored).
  const raw = atob(text.replace(/\s+/g, ""));
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}
