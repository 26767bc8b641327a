// skinedge page: send a photo to POST /api/classify and show what comes back.
// No framework and nothing loaded from elsewhere (the server's Content-Security-Policy forbids it).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, photoUrl: null, busy: false };

function percent(score) {
  return `${(100 * score).toFixed(1)}%`;
}

function show(id, visible) {
  $(id).hidden = !visible;
}

// One way to write a size, for the drop box and the refusal alike (MB of 1024 x 1024 bytes, as the server counts).
function megabytes(bytes) {
  const mb = bytes / (1024 * 1024);
  return `${mb >= 10 ? Math.round(mb) : mb.toFixed(1)} MB`;
}

// The kiosk's sign-in (skinedge serve --token-file): the API answers 401 until the session cookie is set.
function showSignIn(message) {
  show("app", false);
  show("session-line", false);
  show("signin-panel", true);
  $("signin-error").textContent = message || "";
  show("signin-error", Boolean(message));
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  let response;
  let body = {};
  try {
    response = await fetch("/api/signin", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: $("token").value }),
    });
    body = await response.json();
  } catch (err) {
    showSignIn(`Cannot reach the skinedge server (${err.message}).`);
    return;
  }
  $("token").value = "";
  if (!response.ok) {
    const wait = response.headers.get("Retry-After");
    showSignIn(response.status === 429 ? `Too many wrong tokens: wait ${wait || "a few"} seconds and try again.`
      : `Not signed in: ${body.reason || response.status}.`);
    return;
  }
  show("signin-panel", false);
  show("app", true);
  loadInfo();
}

async function signOut() {
  try {
    await fetch("/api/signout", { method: "POST" });
  } finally {
    showSignIn("Signed out.");
  }
}

async function loadInfo() {
  try {
    const response = await fetch("/api/info");
    if (response.status === 401) {
      showSignIn();
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    state.info = await response.json();
  } catch (err) {
    showError(`Cannot reach the skinedge server (${err.message}).`);
    return;
  }
  const info = state.info;
  show("session-line", Boolean(info.auth));
  if (info.case_log) {  // the kiosk's case log (skinedge serve --case-log): say what is kept
    $("storage-note").textContent = info.photos_kept
      ? "The photo is analysed on this device; the photo and its result are kept in this board's case log."
      : "The photo is analysed in memory on this device; its result (not the photo) is kept in this board's case log.";
  }
  $("disclaimer").textContent = info.disclaimer;
  $("max-size").textContent = megabytes(info.limits.max_body_bytes);
  const abstain = info.abstain_threshold > 0 ? `; no answer below ${percent(info.abstain_threshold)}` : "";
  $("model-line").textContent =
    `Model ${info.name || info.model}: ${info.labels.length} classes, ${info.backend}, ${info.delegate}${abstain}.`;
  if (info.live) startLive();
}

function showError(message) {
  $("error").textContent = message;
  show("error", true);
}

function setPhoto(file) {
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = URL.createObjectURL(file);
  $("photo").src = state.photoUrl;
  $("overlay").removeAttribute("src");
  show("overlay", false);
  show("photo", true);
  show("overlay-toggle", false);
  show("overlay-note", false);
  show("preview", true);
}

async function classify(file) {
  if (!file || state.busy) return;
  show("error", false);
  show("result", false);
  const limit = state.info ? state.info.limits.max_body_bytes : Infinity;
  if (file.type && !file.type.startsWith("image/")) {  // a PDF, a text file...: say so in words
    showError(`This file is not a photo (${file.name || file.type}). Choose a JPEG, PNG, WebP, BMP, GIF or TIFF photo.`);
    $("status").textContent = "Not sent.";
    return;
  }
  if (file.size > limit) {
    showError(`This file is ${megabytes(file.size)}; the limit is ${megabytes(limit)}.`);
    $("status").textContent = "Not sent.";
    return;
  }
  setPhoto(file);
  state.busy = true;
  $("status").textContent = "Scoring…";
  const query = state.info && state.info.heatmap ? "?heatmap=1" : "";
  const started = performance.now();
  try {
    const response = await fetch(`/api/classify${query}`, {
      method: "POST",
      headers: { "Content-Type": file.type || "application/octet-stream" },
      body: file,
    });
    const roundTrip = performance.now() - started;
    let body;
    try {
      body = await response.json();
    } catch (err) {
      throw new Error(`the server answered HTTP ${response.status} without a result`);
    }
    if (response.status === 401) {
      showSignIn("Your session has ended: sign in again.");
      return;
    }
    if (response.status === 415) {
      showError("This file is not a photo. Choose a JPEG, PNG, WebP, BMP, GIF or TIFF photo.");
      $("status").textContent = "No result.";
      return;
    }
    if (!response.ok) {
      showError(`Could not score this photo: ${body.reason || body.error || response.status}`);
      $("status").textContent = "No result.";
      return;
    }
    render(body, roundTrip);
  } catch (err) {
    showError(`Could not score this photo: ${err.message}`);
    $("status").textContent = "No result.";
  } finally {
    state.busy = false;
  }
}

// Every class's score, in the model's label order: the API's "scores" (a label->score map, or a list).
function allScores(result) {
  const labels = state.info ? state.info.labels : result.top_k.map((c) => c.label);
  const scores = result.scores;
  const rows = labels.map((label, i) => ({
    label,
    score: Array.isArray(scores) ? scores[i] : scores ? scores[label] : undefined,
  }));
  for (const c of result.top_k) {
    const row = rows.find((r) => r.label === c.label);
    if (row && row.score === undefined) row.score = c.score;
  }
  return rows.filter((r) => typeof r.score === "number").sort((a, b) => b.score - a.score);
}

// No answer (result.reason set): say why in words, never show a label as if it were one.
function renderVerdict(prefix, result) {
  const answered = !result.reason;
  $(`${prefix}label`).textContent = answered ? result.label : (prefix ? result.live_status || "no answer" : "none");
  $(`${prefix}score`).textContent = answered ? percent(result.score) : "";
  const note = $(`${prefix}uncertain`);
  note.textContent = answered ? "" : result.reason_text || "No confident answer.";
  note.dataset.reason = result.reason || "";
  note.hidden = answered;
}

function render(result, roundTrip) {
  $("status").textContent = "";
  const answered = !result.reason;
  $("verdict").textContent = answered ? result.label : result.reason_text || "No confident answer.";
  $("verdict").dataset.reason = result.reason || "";
  $("verdict").classList.toggle("is-uncertain", !answered);
  renderVerdict("", result);
  $("uncertain").hidden = true; // the verdict itself says why
  $("top-line").hidden = !answered;

  // Class scores only where they mean something: an answer, or a low top score (shown dimmed). Not for a photo
  // that is not skin, a condition the model does not know, or a photo too poor to judge.
  const showBars = answered || result.reason === "low_confidence";
  $("bars-title").textContent = answered ? "All class scores" : "Class scores (not an answer)";
  show("bars-title", showBars);
  const bars = $("bars");
  bars.replaceChildren();
  bars.hidden = !showBars;
  bars.classList.toggle("is-uncertain", !answered);
  for (const row of allScores(result)) {
    const item = document.createElement("li");
    item.className = "bar-row" + (row.label === result.label ? " top" : "");
    item.dataset.label = row.label;
    item.dataset.score = String(row.score);
    const name = document.createElement("span");
    name.className = "bar-label";
    name.textContent = row.label;
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = `${Math.max(0, Math.min(1, row.score)) * 100}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = percent(row.score);
    item.append(name, track, value);
    bars.append(item);
  }

  const t = result.timings_ms;
  const steps = [
    ["decode", t.decode],
    ["preprocess", t.preprocess],
    ["model (invoke)", t.invoke],
    ["heatmap", t.heatmap],
    ["heatmap overlay (PNG)", t.overlay_png],
    ["case log", t.case_log],
  ];
  const listed = steps.reduce((sum, [, ms]) => sum + (typeof ms === "number" ? ms : 0), 0);
  const rows = [
    ...steps,
    // What the steps above leave of the server's time: reading the upload, waiting for a slot, the JSON.
    ["other server work", typeof result.server_ms === "number" ? Math.max(0, result.server_ms - listed) : undefined],
    ["on the server, in all", result.server_ms],
    ["round trip", roundTrip],
  ];
  const list = $("timings");
  list.replaceChildren();
  for (const [name, ms] of rows) {
    if (typeof ms !== "number") continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = `${ms.toFixed(1)} ms`;
    list.append(dt, dd);
  }

  if (result.heatmap_png) {
    $("overlay").src = `data:image/png;base64,${result.heatmap_png}`;
    show("overlay-toggle", true);
    // no answer: no class named here either (the map is of the top class score, which is not an answer)
    const whose = result.reason ? "the model's top class score (not an answer)" :
      `the score of ${result.heatmap_label || result.label}`;
    $("overlay-note").textContent = `Brighter areas weighed more in ${whose}. ` +
      "A coarse map, not a lesion outline.";
    applyOverlayToggle();
  }
  renderCase(result);
  show("result", true);
  if (window.innerWidth < 820) $("result-title").scrollIntoView({ block: "start" });  // one column: result below
}

function applyOverlayToggle() {
  const on = $("show-overlay").checked && $("overlay").hasAttribute("src");
  show("overlay", on);
  show("overlay-note", on);
  show("legend", on);
  show("photo", !on);
}

// With a case log (skinedge serve --case-log), the clinician can put their own label beside the result.
function renderCase(result) {
  const hasCase = typeof result.case_id === "number";
  show("case", hasCase);
  if (!hasCase) return;
  state.caseId = result.case_id;
  $("case-id").textContent = `#${result.case_id}`;
  const select = $("case-label");
  select.replaceChildren();
  const none = document.createElement("option");
  none.value = "";
  none.textContent = "Choose the clinician's label";
  select.append(none);
  for (const label of state.info ? state.info.labels : []) {
    const option = document.createElement("option");
    option.value = label;
    option.textContent = label;
    select.append(option);
  }
  $("case-status").textContent = "";
}

async function saveLabel() {
  const label = $("case-label").value;
  if (!label || state.caseId === undefined) {
    $("case-status").textContent = "Choose a label first.";
    return;
  }
  $("case-status").textContent = "Saving…";
  try {
    const response = await fetch(`/api/cases/${state.caseId}/label`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label }),
    });
    const body = await response.json();
    if (response.status === 401) {
      showSignIn("Your session has ended: sign in again.");
      return;
    }
    $("case-status").textContent = response.ok ? `Saved: case #${body.case_id} is labelled ${body.clinician_label}.`
      : `Not saved: ${body.reason || response.status}`;
  } catch (err) {
    $("case-status").textContent = `Not saved: ${err.message}`;
  }
}

function startLive() {
  show("live-panel", true);
  $("live-view").src = "/api/live.mjpg";
  const poll = async () => {
    try {
      const response = await fetch("/api/live");
      const body = await response.json();
      if (response.ok && body.result) {
        renderVerdict("live-", body.result);
        $("live-meta").textContent = `frame ${body.index}, ${body.fps ? body.fps.toFixed(1) : "?"} frames/s`;
      } else if (body.reason) {
        $("live-meta").textContent = body.reason;
      }
    } catch (err) {
      $("live-meta").textContent = `live view unavailable (${err.message})`;
    }
    setTimeout(poll, 500);
  };
  poll();
}

function wire() {
  for (const id of ["file", "camera"]) {
    $(id).addEventListener("change", (event) => {
      classify(event.target.files[0]);
      event.target.value = "";  // choosing the same file again still triggers a change
    });
  }
  $("show-overlay").addEventListener("change", applyOverlayToggle);
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  $("case-save").addEventListener("click", saveLabel);
  // A file the browser cannot show (broken, or a format it lacks): no broken-image icon.
  $("photo").addEventListener("error", () => {
    if ($("photo").getAttribute("src")) show("photo", false);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("dragging");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    classify(event.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") $("file").click();
  });
  document.addEventListener("paste", (event) => {
    const item = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
    if (item) classify(item);
  });
  loadInfo();
}

document.addEventListener("DOMContentLoaded", wire);
