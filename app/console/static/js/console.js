// The console: pick a meta-learner, give it examples, adapt, test, manage adapted models.
// Every request goes to this origin's /v1 API (api.js); nothing is loaded from elsewhere.

import { apiKey, call, Problem, setApiKey, sleep } from "./api.js";
import { editorFor, el } from "./examples.js";

const $ = (id) => document.getElementById(id);
const state = { learners: [], learner: null, editor: null, model: null };
const PENDING = new Set(["queued", "running"]);

function showError(err) {
  const box = $("error");
  if (!err) { box.hidden = true; return; }
  $("error-title").textContent = err instanceof Problem ? err.title : "Cannot do that";
  $("error-detail").textContent = err instanceof Problem ? err.detail : err.message;
  box.hidden = false;
  if (err instanceof Problem && err.status === 401) $("api-key").focus();
}

async function guarded(button, work) {
  showError(null);
  button.disabled = true;
  try { await work(); } catch (err) { showError(err); } finally { button.disabled = false; }
}

// ---- meta-learners ----------------------------------------------------------------------

function metricsSummary(metrics) {
  const leaves = [];
  const walk = (value, path) => {
    if (leaves.length >= 3) return;
    if (typeof value === "number") leaves.push(`${path}: ${Number.isInteger(value) ? value : value.toFixed(3)}`);
    else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) walk(v, path ? `${path}.${k}` : k);
  };
  walk(metrics || {}, "");
  return leaves.join(" · ") || "no metrics recorded";
}

function card(learner) {
  const input = learner.input.codec ? `${learner.input.kind} (${learner.input.codec})` : learner.input.kind;
  return el("li", {}, el("button", { type: "button", class: "card", "aria-pressed": "false", "data-name": learner.name,
    onclick: () => pickLearner(learner.name) },
  el("span", { class: "card-title", text: learner.name }),
  el("span", { text: `${learner.family} · ${learner.task_type} · input: ${input}` }),
  el("span", { class: "muted", text: metricsSummary(learner.metrics) }),
  el("span", { class: "muted", text: `versions: ${learner.versions.map((v) => v.version + (v.state === "retired" ? " (retired)" : "")).join(", ")}` })));
}

async function loadLearners() {
  const { data } = await call("GET", "/v1/meta-learners");
  state.learners = data.items;
  $("learners").replaceChildren(...data.items.map(card));
  $("key-state").textContent = apiKey() ? "Key in use (kept in this tab's session storage only)." : "No key: the service has authentication off, or add one.";
}

function pickLearner(name, model = null) {
  const learner = state.learners.find((l) => l.name === name);
  if (!learner) throw new Error(`${name} is not served here`);
  state.learner = learner;
  state.editor = editorFor(learner);
  state.model = model;
  for (const button of document.querySelectorAll(".card")) button.setAttribute("aria-pressed", String(button.dataset.name === name));
  $("learner-summary").textContent = `${learner.name}: ${learner.family}-based ${learner.task_type}; input ${learner.input.kind}.`;
  $("version").replaceChildren(...learner.versions.filter((v) => v.state !== "retired").map((v) =>
    el("option", { value: v.version, text: v.version + (v.newest ? " (default)" : ""), selected: v.newest })));
  $("steps-box").hidden = learner.family !== "optimization";
  $("support").replaceChildren(state.editor.supportNode);
  $("test-inputs").replaceChildren(state.editor.testArea());
  $("results").replaceChildren();
  $("topk-box").hidden = learner.task_type !== "classification";
  $("adapt-section").hidden = false;
  showModel(model);
  $("adapt-section").scrollIntoView({ block: "start" });
}

// ---- adapting ---------------------------------------------------------------------------

function showModel(model) {
  state.model = model;
  $("test-section").hidden = !(model && model.status === "ready");
  const out = $("adapted");
  if (!model) { out.replaceChildren(); return; }
  const report = model.adaptation || {};
  const loss = (v) => (v === null || v === undefined ? "–" : v.toFixed(4));
  const rows = [
    ["Adapted-model ID", model.id],
    ["Meta-learner", `${model.meta_learner}@${model.meta_learner_version}`],
    ["Status", model.status],
  ];
  if (model.status === "ready") {
    rows.push(["Adaptation time", `${(report.duration_ms ?? 0).toFixed(1)} ms`],
      ["Support loss", `${loss(report.support_loss_before)} → ${loss(report.support_loss_after)}`],
      ["Steps", `${report.steps ?? 0}${report.steps_chosen_by ? ` (${report.steps_chosen_by})` : ""}`]);
    if (model.labels) rows.push(["Labels", model.labels.join(", ")]);
  }
  out.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v), "data-field": k })]));
}

async function waitForJob(model) {
  const bar = $("job-progress");
  bar.hidden = false;
  try {
    while (PENDING.has(model.status)) {
      bar.value = model.progress || 0;
      $("job-state").textContent = `Job ${model.status}: ${Math.round(100 * (model.progress || 0))}%`;
      await sleep(500);
      model = (await call("GET", `/v1/adapted-models/${model.id}`)).data;
    }
  } finally {
    bar.hidden = true;
  }
  $("job-state").textContent = `Job ${model.status}.`;
  if (model.status === "failed") throw new Problem(model.error?.status || 0, model.error || { title: "The adaptation failed" });
  return model;
}

async function adapt() {
  const support = state.editor.support();
  const options = {};
  const steps = $("steps").value.trim();
  if (!$("steps-box").hidden && steps !== "") options.steps = Number(steps);
  const body = { meta_learner: `${state.learner.name}@${$("version").value}`, support, options };
  const headers = $("async").checked ? { Prefer: "respond-async" } : {};
  $("job-state").textContent = "Adapting…";
  showModel(null);
  let { data: model } = await call("POST", "/v1/adapted-models", { body, headers });
  if (PENDING.has(model.status)) model = await waitForJob(model);
  else $("job-state").textContent = "";
  showModel(model);
  await listModels();
}

// ---- testing ----------------------------------------------------------------------------

async function predict() {
  const request = state.editor.testInputs();
  const body = { inputs: request.inputs };
  const k = Number($("topk").value);
  if (!$("topk-box").hidden && k > 0) body.top_k = k;
  const { data } = await call("POST", `/v1/adapted-models/${state.model.id}/predictions`, { body });
  state.editor.showPredictions($("results"), data, request.shown || [], request);
}

// ---- the tenant's adapted models ---------------------------------------------------------

async function listModels() {
  const { data } = await call("GET", "/v1/adapted-models?limit=50");
  const rows = data.items.map((m) => el("tr", {},
    el("td", { class: "mono", text: m.id }),
    el("td", { text: `${m.meta_learner}@${m.meta_learner_version}` }),
    el("td", { text: m.status }),
    el("td", { text: new Date(m.expires_at).toLocaleString() }),
    el("td", {},
      el("button", { type: "button", text: "Test", "aria-label": `test ${m.id}`, disabled: m.status !== "ready",
        onclick: (e) => guarded(e.target, async () => pickLearner(m.meta_learner, m)) }),
      el("button", { type: "button", text: "Delete", "aria-label": `delete ${m.id}`,
        onclick: (e) => guarded(e.target, async () => {
          await call("DELETE", `/v1/adapted-models/${m.id}`);
          if (state.model?.id === m.id) showModel(null);
          await listModels();
        }) }))));
  $("models-body").replaceChildren(...rows);
  $("models-empty").hidden = rows.length > 0;
}

// ---- start ------------------------------------------------------------------------------

async function start() {
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey($("api-key").value.trim());
    guarded($("use-key"), async () => { await loadLearners(); await listModels(); });
  });
  $("forget-key").addEventListener("click", () => { setApiKey(""); $("api-key").value = ""; $("key-state").textContent = "Key forgotten."; });
  $("adapt").addEventListener("click", (e) => guarded(e.target, adapt));
  $("predict").addEventListener("click", (e) => guarded(e.target, predict));
  $("refresh").addEventListener("click", (e) => guarded(e.target, listModels));
  await guarded($("refresh"), async () => { await loadLearners(); await listModels(); });
}

start();
