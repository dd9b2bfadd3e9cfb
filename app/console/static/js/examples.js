// Example editors, one per kind of input: each builds the support set (classes or points) and
// the test inputs of its kind, and shows predictions. console.js picks one with editorFor().

import { RegressionPlot } from "./plot.js";

const MAX_PHOTO_SIDE = 1024;  // larger photos are shrunk (JPEG) before they are sent
let uid = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === false || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function labelled(text, input) {
  input.id = input.id || `f${(uid += 1)}`;
  return [el("label", { for: input.id, text }), input];
}

export function bars(probabilities, label) {
  const list = el("ol", { class: "bars" });
  const top = Object.entries(probabilities).sort((a, b) => b[1] - a[1]).slice(0, 5);
  for (const [name, p] of top) {
    const fill = el("span", { class: "fill" });
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    list.append(el("li", { class: name === String(label) ? "top" : "" },
      el("span", { class: "name", text: name }),
      el("span", { class: "bar", role: "presentation" }, fill),
      el("span", { class: "pct", text: `${(100 * p).toFixed(1)}%` })));
  }
  return list;
}

function predictionRow(shown, prediction) {
  const label = prediction.label === null ? "abstains (out of scope)" : String(prediction.label);
  return el("li", { class: "prediction" }, shown,
    el("div", {}, el("p", { class: "label" }, "Predicted: ", el("strong", { class: "predicted", text: label })),
      bars(prediction.probabilities, prediction.label)));
}

// ---- images: photos from files, drops and pastes; glyphs also drawn on a pad --------------

function readImage(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onerror = () => reject(new Error(`${file.name}: cannot be read`));
    reader.onload = async () => {
      const url = String(reader.result);
      try {
        const bitmap = await createImageBitmap(file);
        const side = Math.max(bitmap.width, bitmap.height);
        if (side <= MAX_PHOTO_SIDE) return resolve(url);
        const scale = MAX_PHOTO_SIDE / side;
        const canvas = el("canvas", { width: Math.round(bitmap.width * scale), height: Math.round(bitmap.height * scale) });
        canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
        return resolve(canvas.toDataURL("image/jpeg", 0.92));
      } catch {
        return resolve(url);  // not decodable here: the service answers with a precise 422
      }
    };
    reader.readAsDataURL(file);
  });
}

const base64 = (dataUrl) => dataUrl.slice(dataUrl.indexOf(",") + 1);

class DrawingPad {
  constructor(onAdd) {
    this.canvas = el("canvas", { width: 105, height: 105, class: "pad", "aria-label": "drawing pad: draw a character with the mouse or a finger" });
    this.clear();
    let drawing = false;
    const at = (event) => {
      const box = this.canvas.getBoundingClientRect();
      return [((event.clientX - box.left) / box.width) * 105, ((event.clientY - box.top) / box.height) * 105];
    };
    const ctx = this.canvas.getContext("2d");
    this.canvas.addEventListener("pointerdown", (event) => {
      drawing = true; this.canvas.setPointerCapture(event.pointerId);
      ctx.beginPath(); ctx.moveTo(...at(event));
    });
    this.canvas.addEventListener("pointermove", (event) => {
      if (!drawing) return;
      ctx.lineTo(...at(event)); ctx.stroke();
    });
    this.canvas.addEventListener("pointerup", () => { drawing = false; });
    this.node = el("div", { class: "pad-box" }, this.canvas,
      el("div", { class: "row" },
        el("button", { type: "button", text: "Add drawing", onclick: () => { onAdd(this.canvas.toDataURL("image/png")); this.clear(); } }),
        el("button", { type: "button", text: "Clear", onclick: () => this.clear() })));
  }

  clear() {
    const ctx = this.canvas.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, 105, 105);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 4; ctx.lineCap = "round"; ctx.lineJoin = "round";
  }
}

// a set of images: file input, drop zone, paste, optional drawing pad, thumbnails
class ImageSet {
  constructor(caption, drawable, onChange = () => {}) {
    this.images = [];
    this.onChange = onChange;
    const files = el("input", { type: "file", accept: "image/*", multiple: "" });
    files.addEventListener("change", async () => { await this.addFiles(files.files); files.value = ""; });
    this.thumbs = el("ul", { class: "thumbs", "aria-label": `${caption}: images` });
    this.node = el("div", { class: "drop", tabindex: "0", "aria-label": `${caption}: drop or paste images here` },
      el("div", { class: "row" }, ...labelled(`${caption}: add images`, files)),
      drawable ? new DrawingPad((url) => this.add(url)).node : null,
      this.thumbs);
    this.node.addEventListener("dragover", (event) => { event.preventDefault(); this.node.classList.add("over"); });
    this.node.addEventListener("dragleave", () => this.node.classList.remove("over"));
    this.node.addEventListener("drop", async (event) => {
      event.preventDefault(); this.node.classList.remove("over");
      await this.addFiles(event.dataTransfer.files);
    });
    this.node.addEventListener("paste", async (event) => {
      const pasted = [...event.clipboardData.items].filter((i) => i.kind === "file").map((i) => i.getAsFile());
      if (pasted.length) { event.preventDefault(); await this.addFiles(pasted); }
    });
  }

  async addFiles(fileList) {
    for (const file of fileList) if (file.type.startsWith("image/")) this.add(await readImage(file));
  }

  add(url) {
    const index = this.images.length;
    this.images.push(url);
    const item = el("li", {}, el("img", { src: url, alt: `image ${index + 1}` }),
      el("button", { type: "button", class: "remove", "aria-label": `remove image ${index + 1}`, text: "×",
        onclick: () => { this.images[this.images.indexOf(url)] = null; item.remove(); this.onChange(); } }));
    this.thumbs.append(item);
    this.onChange();
  }

  urls() { return this.images.filter(Boolean); }
  clear() { this.images = []; this.thumbs.replaceChildren(); this.onChange(); }
}

// ---- classification editors: classes of examples -----------------------------------------

class ClassesEditor {
  constructor(learner) {
    this.learner = learner;
    this.classes = [];
    this.list = el("div", { class: "classes" });
    this.supportNode = el("div", {}, this.list,
      el("button", { type: "button", text: "Add a class", onclick: () => this.addClass() }));
    this.addClass(); this.addClass();
  }

  addClass() {
    const n = this.classes.length + 1;
    const name = el("input", { type: "text", value: `class ${n}`, maxlength: "100", class: "class-name" });
    const entry = { name, examples: this.examples(`Class ${n}`) };
    const box = el("fieldset", { class: "class" }, el("legend", { text: `Class ${n}` }),
      ...labelled(`Class ${n} label`, name), entry.examples.node,
      el("button", { type: "button", class: "link", text: "Remove class",
        onclick: () => { this.classes.splice(this.classes.indexOf(entry), 1); box.remove(); } }));
    this.classes.push(entry);
    this.list.append(box);
  }

  support() {
    const inputs = [];
    const targets = [];
    for (const { name, examples } of this.classes) {
      const label = name.value.trim();
      const items = this.items(examples);
      if (!items.length) continue;
      if (!label) throw new Error("every class with examples needs a label");
      for (const item of items) { inputs.push(item); targets.push(label); }
    }
    if (new Set(targets).size < 2) throw new Error("add examples to at least two classes");
    return { inputs, targets };
  }

  showPredictions(results, data, shown) {
    results.replaceChildren(el("ol", { class: "predictions" },
      ...data.predictions.map((p, i) => predictionRow(shown[i], p))));
  }
}

class ImageClassesEditor extends ClassesEditor {
  drawable() { return this.learner.input.codec !== "photo" && this.learner.input.kind === "image"; }
  examples(caption) { return new ImageSet(caption, this.drawable()); }
  items(examples) { return examples.urls().map(base64); }

  testArea() {
    this.queries = new ImageSet("Test", this.drawable());
    return this.queries.node;
  }

  testInputs() {
    const urls = this.queries.urls();
    if (!urls.length) throw new Error("add an image to test");
    return { inputs: urls.map(base64), shown: urls.map((url, i) => el("img", { src: url, alt: `test image ${i + 1}`, class: "shown" })) };
  }
}

class TextClassesEditor extends ClassesEditor {
  examples(caption) {
    const area = el("textarea", { rows: "4", placeholder: "one sentence per line" });
    return { area, node: el("div", {}, ...labelled(`${caption}: sentences, one per line`, area)) };
  }

  items(examples) { return examples.area.value.split("\n").map((s) => s.trim()).filter(Boolean); }

  testArea() {
    this.queries = el("textarea", { rows: "4", placeholder: "one sentence per line" });
    return el("div", {}, ...labelled("Test sentences, one per line", this.queries));
  }

  testInputs() {
    const inputs = this.items({ area: this.queries });
    if (!inputs.length) throw new Error("write a sentence to test");
    return { inputs, shown: inputs.map((s) => el("q", { text: s })) };
  }
}

// ---- regression on one number: click points, see the adapted curve -----------------------

class PointsEditor {
  constructor(learner) {
    this.learner = learner;
    const range = learner.input.value_range || [-5, 5];
    const canvas = el("canvas", { width: 480, height: 300, class: "plot", "aria-label": "support points: click to add a point" });
    this.plot = new RegressionPlot(canvas, range, [-5, 5]);
    this.pointsList = el("ul", { class: "points", "aria-label": "support points" });
    this.plot.onChange = () => this.listPoints();
    const x = el("input", { type: "number", step: "any", value: "0" });
    const y = el("input", { type: "number", step: "any", value: "0" });
    this.supportNode = el("div", {}, canvas,
      el("div", { class: "row" }, ...labelled("x", x), ...labelled("y", y),
        el("button", { type: "button", text: "Add point", onclick: () => this.plot.add(Number(x.value), Number(y.value)) }),
        el("button", { type: "button", text: "Clear points", onclick: () => this.plot.clear() })),
      this.pointsList);
  }

  listPoints() {
    this.pointsList.replaceChildren(...this.plot.points.map(([x, y], i) => el("li", {},
      `(${x}, ${y}) `, el("button", { type: "button", class: "link", "aria-label": `remove point ${i + 1}`, text: "remove",
        onclick: () => this.plot.remove(i) }))));
  }

  support() {
    if (!this.plot.points.length) throw new Error("click the plot to add support points");
    return { inputs: this.plot.points.map(([x]) => [x]), targets: this.plot.points.map(([, y]) => y) };
  }

  testArea() { return el("p", { text: "Predict draws the adapted curve over the input range on the plot above (with ±std where the learner gives one)." }); }

  testInputs() {
    const [lo, hi] = this.plot.xRange;
    const xs = Array.from({ length: 101 }, (_, i) => lo + ((hi - lo) * i) / 100);
    return { inputs: xs.map((x) => [x]), xs };
  }

  showPredictions(results, data, shown, request) {
    this.plot.setCurve({ xs: request.xs, ys: data.predictions, std: data.std || null });
    results.replaceChildren(el("p", { class: "curve-note", text: `Curve drawn from ${data.predictions.length} predictions${data.std ? " with ±std" : ""}.` }));
  }
}

// ---- anything else: JSON in, JSON out ----------------------------------------------------

class JsonEditor {
  constructor(learner) {
    this.learner = learner;
    this.area = el("textarea", { rows: "6", class: "code", spellcheck: "false" });
    this.area.value = '{"inputs": [], "targets": []}';
    this.supportNode = el("div", {}, ...labelled(`Support set as JSON (input: ${learner.input.kind}, shape ${JSON.stringify(learner.input.shape)})`, this.area));
  }

  support() {
    try { return JSON.parse(this.area.value); } catch (err) { throw new Error(`support set: ${err.message}`); }
  }

  testArea() {
    this.queries = el("textarea", { rows: "3", class: "code", spellcheck: "false" });
    this.queries.value = "[]";
    return el("div", {}, ...labelled("Test inputs as a JSON array", this.queries));
  }

  testInputs() {
    try { return { inputs: JSON.parse(this.queries.value) }; } catch (err) { throw new Error(`test inputs: ${err.message}`); }
  }

  showPredictions(results, data) { results.replaceChildren(el("pre", { class: "code", text: JSON.stringify(data, null, 2) })); }
}

const EDITORS = [
  [(l) => l.task_type === "classification" && l.input.kind === "image", ImageClassesEditor],
  [(l) => l.task_type === "classification" && l.input.kind === "text", TextClassesEditor],
  [(l) => l.task_type === "regression" && l.input.kind === "vector" && l.input.shape.length === 1 && l.input.shape[0] === 1, PointsEditor],
  [() => true, JsonEditor],
];

export function editorFor(learner) {
  const [, Editor] = EDITORS.find(([fits]) => fits(learner));
  return new Editor(learner);
}

export { el, labelled };
