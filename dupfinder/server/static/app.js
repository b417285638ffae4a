// The search page: debounced search as you type, and adding the typed question. Question texts
// come from users, so they are only ever set as textContent, never as HTML.
"use strict";

const DEBOUNCE_MS = 150; // long enough to skip most keystrokes, short enough to feel live
const K = 8;

const $ = (id) => document.getElementById(id);
let threshold = null;
let latest = 0; // the number of the newest search: an older answer arriving late is dropped
let inFlight = null;

async function api(method, path, body, key) {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  if (key) headers["Authorization"] = "Bearer " + key;
  const options = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  if (method === "POST" && path === "/v1/search") {
    if (inFlight) inFlight.abort();
    inFlight = new AbortController();
    options.signal = inFlight.signal;
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { /* an empty or non-JSON answer */ }
  if (!response.ok) throw new Error((data && data.detail) || `${response.status} ${response.statusText}`);
  return data;
}

async function loadInfo() {
  try {
    const info = await api("GET", "/v1/info");
    threshold = info.threshold;
    $("info").textContent =
      `${info.count.toLocaleString()} questions · model ${info.model} (${info.model_fingerprint}) · ` +
      `duplicate at cosine ≥ ${info.threshold.toFixed(3)}`;
    $("key-label").hidden = !info.writes_need_key;
  } catch (e) {
    $("info").textContent = "cannot reach the index: " + e.message;
  }
}

function render(hits) {
  const list = $("hits");
  list.replaceChildren();
  for (const hit of hits) {
    const li = document.createElement("li");
    li.className = "hit" + (hit.duplicate ? " dup" : "");
    const meta = document.createElement("div");
    meta.className = "meta";
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = hit.duplicate ? "duplicate" : "different";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = "#" + hit.id;
    meta.append(badge, score, id);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${Math.max(0, Math.min(1, hit.score)) * 100}%`;
    bar.append(fill);
    if (threshold !== null) {
      const tick = document.createElement("i");
      tick.style.left = `${threshold * 100}%`;
      tick.title = "threshold";
      bar.append(tick);
    }
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = hit.text;
    li.append(meta, bar, text);
    list.append(li);
  }
}

function summary(hits) {
  const dups = hits.filter((h) => h.duplicate).length;
  if (!hits.length) return "The index is empty.";
  if (dups) return `${dups} duplicate${dups > 1 ? "s" : ""} already asked.`;
  return `No duplicate: the nearest scores ${hits[0].score.toFixed(3)}, below ${threshold.toFixed(3)}.`;
}

async function search() {
  const text = $("q").value;
  const mine = ++latest;
  if (!text.trim()) {
    if (inFlight) inFlight.abort();
    $("hits").replaceChildren();
    $("status").textContent = "";
    return;
  }
  $("status").classList.add("busy");
  try {
    const data = await api("POST", "/v1/search", { question: text, k: K });
    if (mine !== latest) return;
    render(data.hits);
    $("status").textContent = summary(data.hits);
    $("status").classList.remove("error");
  } catch (e) {
    if (e.name === "AbortError" || mine !== latest) return;
    $("status").textContent = e.message;
    $("status").classList.add("error");
  } finally {
    if (mine === latest) $("status").classList.remove("busy");
  }
}

let timer = null;
function scheduleSearch() {
  clearTimeout(timer);
  timer = setTimeout(search, DEBOUNCE_MS);
}

async function add(event) {
  event.preventDefault();
  const out = $("add-result");
  const text = $("q").value;
  if (!text.trim()) {
    out.textContent = "Type the question in the box above first.";
    out.className = "status error";
    return;
  }
  const key = $("add-key").value.trim();
  if (key) sessionStorage.setItem("dupfinder-key", key);
  const question = { text };
  const id = $("add-id").value.trim();
  if (id) question.id = id;
  $("add-button").disabled = true;
  try {
    const result = await api("POST", "/v1/questions", { questions: [question], upsert: $("add-upsert").checked }, key);
    const outcome = result.questions[0];
    out.textContent = outcome.status === "skipped"
      ? `Not added: ${outcome.reason}.`
      : `${outcome.status === "replaced" ? "Replaced" : "Added"}${outcome.id ? " as " + outcome.id : ""}; ` +
        `${result.count.toLocaleString()} questions in the index.`;
    out.className = "status " + (outcome.status === "skipped" ? "" : "ok");
    await loadInfo();
    await search();
  } catch (e) {
    out.textContent = e.message;
    out.className = "status error";
  } finally {
    $("add-button").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("q").addEventListener("input", scheduleSearch);
  $("add-form").addEventListener("submit", add);
  $("add-key").value = sessionStorage.getItem("dupfinder-key") || "";
  loadInfo().then(() => { if ($("q").value.trim()) search(); });
});
