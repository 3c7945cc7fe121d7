// FastWan Serve playground: drives the public OpenAI Videos API (v1/videos) with relative URLs only, so it
// works wherever the service is mounted (behind Salad's gateway too). No framework, no external requests.
"use strict";

const API = "v1/videos";
const KEY_STORE = "fastwan.apiKey"; // the only thing the page stores, and only for this tab
const TERMINAL = new Set(["completed", "failed"]);
const POLL_WAIT_S = 1; // Prefer: wait=N: the poll returns at once when the job ends, else after N s
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

let following = 0; // token of the job the result panel follows; a newer one stops older loops
let shownId = null;
let blobUrl = null;
let galleryTimer = null;

function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  if (apiKey()) headers.set("Authorization", `Bearer ${apiKey()}`);
  let response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch (err) {
    throw new ApiError(0, `The service did not answer (${err.message}). Is it running?`, null);
  }
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  let param = null;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      param = body.error.param || null;
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch (_) { /* not JSON: keep the status line */ }
  if (response.status === 401) showKeyRow();
  throw new ApiError(response.status, message, param);
}

// --- errors and the key --------------------------------------------------------------------------
function showError(err) {
  const box = $("error");
  box.textContent = err.message;
  box.dataset.status = String(err.status ?? "");
  box.hidden = false;
}

function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function showKeyRow() {
  $("key-row").hidden = false;
  if (!apiKey()) $("api-key").focus();
}

// --- the reference image -------------------------------------------------------------------------
function chosenFile() {
  const files = $("image-file").files;
  return files && files.length ? files[0] : null;
}

function showImage() {
  const file = chosenFile();
  const preview = $("image-preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  if (file) {
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    $("drop-text").textContent = file.name;
    $("image-url").value = "";
  } else {
    preview.removeAttribute("src");
    preview.hidden = true;
    $("drop-text").textContent = "Drop an image here, or choose a file";
  }
  $("image-clear").hidden = !file && !$("image-url").value;
}

function clearImage() {
  $("image-file").value = "";
  $("image-url").value = "";
  showImage();
}

function wireImage() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (!file) return;
    const transfer = new DataTransfer();
    transfer.items.add(file);
    $("image-file").files = transfer.files;
    showImage();
  });
  $("image-file").addEventListener("change", showImage);
  $("image-url").addEventListener("input", () => {
    if ($("image-url").value) $("image-file").value = "";
    showImage();
  });
  $("image-clear").addEventListener("click", clearImage);
}

// --- creating a job --------------------------------------------------------------------------------
function numberField(id) {
  const raw = $(id).value.trim();
  return raw === "" ? null : Number(raw);
}

function requestFields() {
  const fields = { prompt: $("prompt").value };
  const size = $("size").value === "custom" ? $("custom-size").value.trim() : $("size").value;
  if (size) fields.size = size;
  const frames = numberField("frames");
  const seconds = numberField("seconds");
  if (frames !== null) fields.num_frames = frames;
  else if (seconds !== null) fields.seconds = String(seconds);
  if (!$("seed-random").checked && numberField("seed") !== null) fields.seed = numberField("seed");
  if ($("negative").value.trim()) fields.negative_prompt = $("negative").value;
  if (numberField("steps") !== null) fields.num_inference_steps = numberField("steps");
  if (numberField("guidance") !== null) fields.guidance_scale = numberField("guidance");
  return fields;
}

async function submit(event) {
  event.preventDefault();
  hideError();
  const fields = requestFields();
  const file = chosenFile();
  let init;
  if (file) { // multipart, as OpenAI's SDK sends an uploaded input_reference
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, String(value));
    form.append("input_reference", file, file.name);
    init = { method: "POST", body: form };
  } else {
    if ($("image-url").value.trim()) fields.input_reference = $("image-url").value.trim();
    init = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(fields) };
  }
  $("submit").disabled = true;
  try {
    const job = await (await api(API, init)).json();
    follow(job);
    refreshGallery();
  } catch (err) {
    showError(err);
  } finally {
    $("submit").disabled = false;
  }
}

// --- following one job -----------------------------------------------------------------------------
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function follow(job) {
  const token = ++following;
  showJob(job);
  while (!TERMINAL.has(job.status)) {
    try {
      const response = await api(`${API}/${encodeURIComponent(job.id)}`, { headers: { Prefer: `wait=${POLL_WAIT_S}` } });
      job = await response.json();
    } catch (err) {
      if (token !== following) return;
      showError(err);
      if (err.status === 404 || err.status === 401) return;
      await sleep(2000);
      continue;
    }
    if (token !== following) return;
    showJob(job);
  }
  if (token !== following) return;
  if (job.status === "completed") await play(job, token);
  refreshGallery();
}

function statusLine(job) {
  if (job.status === "queued") return "Queued…";
  if (job.status === "in_progress") return `Generating… ${job.progress}%`;
  if (job.status === "completed") return "Completed";
  return `Failed: ${job.error ? job.error.message : "unknown error"}`;
}

function showJob(job) {
  if (job.id !== shownId) resetResult();
  shownId = job.id;
  const progress = $("progress");
  progress.hidden = false;
  progress.value = job.progress;
  progress.setAttribute("aria-valuetext", `${job.progress}%`);
  const text = $("status-text");
  text.textContent = statusLine(job);
  text.dataset.status = job.status;
  text.className = job.status === "failed" ? "error" : "";
}

function resetResult() {
  const player = $("player");
  player.pause();
  player.removeAttribute("src");
  player.load();
  player.hidden = true;
  $("download").hidden = true;
  $("metrics").hidden = true;
  if (blobUrl) URL.revokeObjectURL(blobUrl);
  blobUrl = null;
}

async function play(job, token) {
  const url = `${API}/${encodeURIComponent(job.id)}/content`;
  let src = url;
  if (apiKey()) { // a <video> cannot send the key: fetch the MP4 with it, then play it from memory
    try {
      const blob = await (await api(url)).blob();
      if (token !== following) return;
      blobUrl = URL.createObjectURL(blob);
      src = blobUrl;
    } catch (err) {
      showError(err);
      return;
    }
  }
  const player = $("player");
  player.src = src;
  player.hidden = false;
  player.play().catch(() => { /* autoplay may be refused; the controls are there */ });
  const link = $("download");
  link.href = src;
  link.download = `${job.id}.mp4`;
  link.hidden = false;
  showMetrics(job);
}

function seconds(value) {
  return value === null || value === undefined ? null : `${value.toFixed(2)} s`;
}

function showMetrics(job) {
  const m = job.metrics || {};
  const rows = [
    ["Video", job.id],
    ["Seed", String(job.seed)],
    ["Size", m.generated_size && m.generated_size !== job.size ? `${job.size} (made at ${m.generated_size})` : job.size],
    ["Frames", `${job.num_frames} at ${job.fps} fps (${job.seconds} s)`],
    ["Model", job.model],
    ["Waited in queue", seconds(m.queue_sec)],
    ["Generation", seconds(m.generation_sec)],
  ];
  for (const [stage, value] of Object.entries(m.stages || {})) rows.push([`  ${stage}`, seconds(value)]);
  rows.push(["Encoding", seconds(m.encode_sec)], ["Storing", seconds(m.store_sec)], ["Total", seconds(m.total_sec)],
    ["Batch size", m.batch_size ? String(m.batch_size) : null],
    ["Peak GPU memory", m.peak_vram_gb ? `${m.peak_vram_gb.toFixed(1)} GB` : null],
    ["File size", m.video_bytes ? `${(m.video_bytes / 1e6).toFixed(2)} MB` : null]);
  const body = $("metrics").tBodies[0];
  body.replaceChildren();
  for (const [name, value] of rows) {
    if (value === null) continue;
    const tr = body.insertRow();
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = name;
    tr.appendChild(th);
    tr.insertCell().textContent = value;
  }
  $("metrics").hidden = false;
}

// --- the gallery -----------------------------------------------------------------------------------
function button(label, className, action, name) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  b.dataset.action = name;
  b.addEventListener("click", action);
  return b;
}

function galleryItem(job) {
  const li = document.createElement("li");
  li.dataset.id = job.id;
  li.dataset.status = job.status;
  const status = document.createElement("span");
  status.className = `status ${job.status}`;
  status.textContent = job.status === "in_progress" ? `in progress ${job.progress}%` : job.status.replace("_", " ");
  const prompt = document.createElement("span");
  prompt.className = "prompt";
  prompt.textContent = job.prompt || "(no prompt)";
  const meta = document.createElement("span");
  meta.className = "meta";
  const created = new Date(job.created_at * 1000).toLocaleString();
  meta.textContent = `${job.size} · ${job.seconds} s · ${created} · ${job.id}`;
  const actions = document.createElement("div");
  actions.className = "actions";
  if (job.status === "completed") actions.append(button("Play", "secondary", () => follow(job), "play"));
  if (job.status === "failed") actions.append(button("Details", "secondary", () => follow(job), "details"));
  if (!TERMINAL.has(job.status)) actions.append(button("Cancel", "danger", () => cancel(job.id), "cancel"));
  const del = button("Delete", "danger", () => confirmDelete(del, job.id), "delete");
  actions.append(del);
  li.append(status, prompt, meta, actions);
  return li;
}

function confirmDelete(b, id) {
  if (b.dataset.armed === "yes") return remove(id);
  b.dataset.armed = "yes";
  b.textContent = "Really delete?";
  setTimeout(() => { b.dataset.armed = ""; b.textContent = "Delete"; }, 4000);
}

async function cancel(id) {
  hideError();
  try {
    await api(`${API}/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  } catch (err) {
    showError(err);
  }
  refreshGallery();
}

async function remove(id) {
  hideError();
  try {
    await api(`${API}/${encodeURIComponent(id)}`, { method: "DELETE" });
    if (id === shownId) {
      following++;
      resetResult();
      shownId = null;
      $("progress").hidden = true;
      $("status-text").textContent = "Deleted.";
      $("status-text").className = "muted";
    }
  } catch (err) {
    showError(err);
  }
  refreshGallery();
}

async function refreshGallery() {
  clearTimeout(galleryTimer);
  let list;
  try {
    list = await (await api(`${API}?limit=24`)).json();
  } catch (err) {
    if (err.status !== 401) showError(err);
    return;
  }
  const gallery = $("gallery");
  gallery.replaceChildren(...list.data.map(galleryItem));
  $("gallery-empty").hidden = list.data.length > 0;
  if (list.data.some((job) => !TERMINAL.has(job.status))) galleryTimer = setTimeout(refreshGallery, 2000);
}

// --- start ---------------------------------------------------------------------------------------------
function start() {
  $("create").addEventListener("submit", submit);
  $("refresh").addEventListener("click", refreshGallery);
  $("size").addEventListener("change", () => { $("custom-size-row").hidden = $("size").value !== "custom"; });
  $("seed-random").addEventListener("change", () => {
    $("seed").disabled = $("seed-random").checked;
    if (!$("seed-random").checked) $("seed").focus();
  });
  $("api-key").value = apiKey();
  if (apiKey()) $("key-row").hidden = false;
  $("api-key").addEventListener("change", () => {
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    hideError();
    refreshGallery();
  });
  wireImage();
  refreshGallery();
}

start();
