// The in-page latent explorers: sliders, a canvas picture decoded in the browser, the scatter
// marker and the readout, built inside every `div.vaelab-web-explorer` of the page that is not
// live yet. vaelab.widgets writes that markup (see `web_explorer_html` there):
//
//   div.vaelab-web-explorer[data-kind="latent"|"interpolation"]
//     script.vaelab-web-config  (application/json)   sliders, start code, scatter placement
//     script.vaelab-web-decoder (application/octet-stream, base64), or the root's
//                               data-decoder = the id of such a script on the page
//     div.vaelab-web-static     the picture shown where scripts do not run (hidden when live)
//
// When live: root.dataset.ready = "1" and root.vaelab = { code(), pixels() }.
import { base64Bytes, parseDecoder, toPixels } from "./decoder.js";

const decoders = new Map(); // one parse per decoder script, shared by explorers that use it

function decoderFor(root) {
  const ref = root.dataset.decoder;
  const script = ref ? document.getElementById(ref) : root.querySelector("script.vaelab-web-decoder");
  if (!script) throw new Error("vaelab explorer: no script.vaelab-web-decoder for this explorer");
  if (!decoders.has(script)) decoders.set(script, parseDecoder(base64Bytes(script.textContent)));
  return decoders.get(script);
}

function element(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "style") node.style.cssText = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function describeCode(z, perLine = 5) {
  // "z = (0.35, −1.20)", as vaelab.widgets.describe_code writes it.
  const values = Array.from(z, (v) => v.toFixed(2).replace("-", "\u2212"));
  const lines = [];
  for (let i = 0; i < values.length; i += perLine) lines.push(values.slice(i, i + perLine).join(", "));
  return "z = (" + lines.join(",\n     ") + ")";
}

function sliderRow(spec, onInput) {
  const input = element("input", {
    type: "range", min: spec.min, max: spec.max, step: spec.step, value: spec.value,
    "aria-label": spec.label, style: "flex:1 1 auto;min-width:120px",
  });
  const value = element("span", { style: "width:3.5em;text-align:right;font-family:monospace" });
  const show = () => { value.textContent = Number(input.value).toFixed(2).replace("-", "\u2212"); };
  input.addEventListener("input", () => { show(); onInput(); });
  show();
  const row = element("label", { style: "display:flex;align-items:center;gap:6px;width:300px" },
    [element("span", { text: spec.label, style: "width:32px" }), input, value]);
  return { row, input, show };
}

function scatterPanel(scatter) {
  // The rendered scatter (no marker) and a ring placed on it by the affine map code → pixels.
  const ring = element("div", {
    style: "position:absolute;width:14px;height:14px;margin:-9px 0 0 -9px;border:3px solid white;"
      + "border-radius:50%;box-shadow:0 0 0 2px black;pointer-events:none",
  });
  const dot = element("div", {
    style: "position:absolute;left:5px;top:5px;width:4px;height:4px;border-radius:50%;background:black",
  });
  ring.append(dot);
  const img = element("img", { src: scatter.src, alt: "latent scatter, z ringed",
    style: `display:block;width:${scatter.width}px;max-width:100%` });
  const panel = element("div", { class: "vaelab-web-scatter", style: "position:relative" }, [img, ring]);
  const [left, top, right, bottom] = scatter.box;
  const place = (z) => {
    const m = scatter.matrix; // 2 × (L + 1): pixel = m · [z, 1]
    const at = [0, 1].map((r) => m[r].reduce((s, c, i) => s + c * (i < z.length ? z[i] : 1), 0));
    const inside = at[0] >= left && at[0] <= right && at[1] >= top && at[1] <= bottom;
    const x = Math.min(Math.max(at[0], left), right);
    const y = Math.min(Math.max(at[1], top), bottom);
    ring.style.left = `${(100 * x) / scatter.width}%`;
    ring.style.top = `${(100 * y) / scatter.height}%`;
    dot.style.background = inside ? "black" : "grey";
  };
  return { panel, place };
}

function picture(decoder, scale) {
  const canvas = element("canvas", {
    class: "vaelab-web-picture", width: decoder.width, height: decoder.height,
    style: `width:${decoder.width * scale}px;height:${decoder.height * scale}px;`
      + "image-rendering:pixelated;image-rendering:crisp-edges;display:block",
  });
  const context = canvas.getContext("2d");
  const image = context.createImageData(decoder.width, decoder.height);
  let grey = new Uint8ClampedArray(decoder.width * decoder.height);
  const draw = (z) => {
    grey = toPixels(decoder.decode(z));
    for (let i = 0; i < grey.length; i++) {
      image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = grey[i];
      image.data[4 * i + 3] = 255;
    }
    context.putImageData(image, 0, 0);
  };
  return { canvas, draw, pixels: () => grey };
}

function caption(html) {
  return element("div", { style: "font-size:13px" }, [document.createRange().createContextualFragment(html)]);
}

function build(root, config, decoder) {
  const start = Float32Array.from(config.start);
  const z = Float32Array.from(start);
  const pic = picture(decoder, config.scale);
  const readout = element("code", { class: "vaelab-web-readout", style: "white-space:pre" });
  const scatter = config.scatter ? scatterPanel(config.scatter) : null;
  const interpolation = config.kind === "interpolation";
  let rows = [];
  const update = () => {
    if (interpolation) {
      const t = Number(rows[0].input.value);
      for (let i = 0; i < z.length; i++) z[i] = (1 - t) * config.a[i] + t * config.b[i];
      readout.textContent = `t = ${t.toFixed(2)}: ${describeCode(z)}`;
    } else {
      rows.forEach((row, i) => { z[i] = Number(row.input.value); });
      readout.textContent = describeCode(z);
    }
    pic.draw(z);
    if (scatter) scatter.place(z);
  };
  rows = config.sliders.map((spec) => sliderRow(spec, update));
  const reset = element("button", { type: "button", text: "Reset", title: "back to the start code" });
  reset.addEventListener("click", () => {
    rows.forEach((row, i) => { row.input.value = config.sliders[i].value; row.show(); });
    update();
  });
  const note = element("div", { class: "vaelab-web-note", style: "font-size:12px;font-style:italic" },
    [config.note]);
  const controls = element("div", { style: "display:flex;flex-direction:column;gap:4px;width:304px" },
    [...rows.map((r) => r.row), ...(config.extra ? [caption(config.extra)] : []),
     element("div", { style: "display:flex;align-items:center;gap:8px;flex-wrap:wrap" }, [reset, readout]),
     note]);
  // As wide as the picture: a caption in a wider font wraps instead of pushing the scatter
  // onto a new row (the three panels fit a 1,400-px JupyterLab with the file browser open).
  const middle = element("div", { style: `width:${decoder.width * config.scale}px` },
    [caption(config.caption), pic.canvas]);
  let panels;
  if (interpolation) {
    const end = (e) => element("div", {}, [caption(e.name), element("img", { src: e.src, alt: e.name })]);
    panels = [controls, element("div", { style: "display:flex;gap:12px;align-items:flex-end" },
      [end(config.ends[0]), middle, end(config.ends[1])])];
  } else {
    panels = [controls, middle, ...(scatter ? [scatter.panel] : [])];
  }
  const live = element("div", { class: "vaelab-web-live",
    style: "display:flex;flex-wrap:wrap;align-items:center;gap:12px" }, panels);
  update();
  return { live, code: () => Float32Array.from(z), pixels: () => pic.pixels() };
}

export function startExplorer(root) {
  // Make one explorer live; on failure its static picture stays and the error is logged.
  if (root.dataset.ready) return;
  root.dataset.ready = "0";
  const config = JSON.parse(root.querySelector("script.vaelab-web-config").textContent);
  const decoder = decoderFor(root);
  const { live, code, pixels } = build(root, config, decoder);
  const fallback = root.querySelector(".vaelab-web-static");
  if (fallback) fallback.style.display = "none";
  root.append(live);
  root.vaelab = { code, pixels };
  root.dataset.ready = "1";
}

export function startAll(scope = document) {
  // Every explorer under `scope` that is not live yet.
  for (const root of scope.querySelectorAll("div.vaelab-web-explorer:not([data-ready])")) {
    try {
      startExplorer(root);
    } catch (error) {
      root.dataset.ready = "error";
      console.error("vaelab explorer:", error);
    }
  }
}
