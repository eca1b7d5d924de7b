/**
 * The demo page at /demo: the browser SDK with a view of its feedback. Each
 * turn is a card: the state while it is heard and assessed, then the
 * transcript with every word coloured by its score (the number shown too), the
 * words that need improvement underlined with an icon, the sentence scores as
 * bars, and the phones of a word on hover (title) or tap (a table). With a
 * server that diagnoses, the table shows each expected sound beside the one heard
 * (IPA), the words carry their error types, and the feedback sentences follow the turn.
 */
import { MultipaClient, SENTENCE_ASPECTS, WORD_ASPECTS, aspectScores } from "./multipa.js";

const $ = (id) => document.getElementById(id);
const STATE_TEXT = { idle: "Ready", connecting: "Connecting…", listening: "Listening", assessing: "Assessing…", stopping: "Finishing…", closed: "Stopped" };

let client = null;
let session = 0; // counts sessions (a reconnect opens a new one): element ids stay unique
const cards = new Map(); // turn_id -> card element of the current session

/** The colour band of a 0-10 score: good >= 8, fair >= 6, poor below. */
export function band(score) {
  return score >= 8 ? "good" : score >= 6 ? "fair" : "poor";
}

const fmt = (x) => (Math.round(x * 10) / 10).toFixed(1);
const seconds = (ms) => (ms / 1000).toFixed(1);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function showAlert(code, message) {
  const box = $("alert");
  box.replaceChildren(el("code", {}, code), ": ", message);
  box.hidden = false;
}

function card(turnId, startMs) {
  let node = cards.get(turnId);
  if (!node) {
    node = el("li", { class: "turn", dataset: { turnId: String(turnId), session: String(session) } },
      el("div", { class: "turn-head" }, el("span", { class: "turn-title" }, `Turn ${turnId} · from ${seconds(startMs)} s`), el("span", { class: "turn-status" }, "Hearing you…")));
    cards.set(turnId, node);
    $("turns").prepend(node);
  }
  return node;
}

function setStatus(node, text, kind) {
  node.querySelector(".turn-status").textContent = text;
  node.classList.remove("speaking", "assessing", "assessed", "failed");
  node.classList.add(kind);
}

/** What was heard for an expected phone: "/l/", "(missing)", "✓", or "" without a diagnosis. */
export function heardText(p) {
  if (!p.error) return "";
  if (p.error === "deletion") return "(missing)";
  if (p.error === "none") return "✓";
  return `/${p.heard_ipa ?? p.heard}/`;
}

const sound = (p) => (p.ipa ? `/${p.ipa}/ ${p.phone}` : p.phone);

function phoneTable(word) {
  const rows = word.phones.map((p) => el("tr", { class: p.error && p.error !== "none" ? "phone-wrong" : "" }, el("td", {}, sound(p)), el("td", {}, heardText(p)), el("td", {}, `${p.start_ms}–${p.end_ms} ms`), el("td", {}, `${Math.round(p.probability * 100)} %`)));
  const extra = (word.inserted_phones ?? []).map((p) => el("tr", { class: "phone-wrong" }, el("td", {}, "(none)"), el("td", {}, `/${p.ipa}/ added`), el("td", {}, ""), el("td", {}, "")));
  return el("div", { class: "phones", dataset: { word: word.text } },
    el("table", {}, el("caption", { class: "visually-hidden" }, `Sounds of “${word.text}”`),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "expected"), el("th", { scope: "col" }, "heard"), el("th", { scope: "col" }, "time"), el("th", { scope: "col" }, "probability"))),
      el("tbody", {}, ...rows, ...extra)));
}

const ERROR_TEXT = { mispronunciation: "mispronounced", omission: "left out", insertion: "added", unexpected_break: "pause before", missing_break: "no pause after", monotone: "monotone" };

function renderFeedback(assessment) {
  const items = assessment.feedback ?? [];
  const turnErrors = assessment.diagnosis?.errors ?? [];
  if (!items.length && !turnErrors.length) return null;
  return el("ul", { class: "feedback", "aria-label": "What to work on" }, ...items.map((it) => el("li", { dataset: { type: it.type } }, it.sentence)));
}

function wordButton(word, index, detailsId) {
  const needs = word.needs_improvement;
  const phones = word.phones.map((p) => `${sound(p)}${p.error && p.error !== "none" ? ` → heard ${heardText(p)}` : ""} ${p.start_ms}–${p.end_ms} ms, ${Math.round(p.probability * 100)} %`).join("\n");
  const errors = (word.errors ?? []).map((e) => ERROR_TEXT[e] ?? e);
  // aspects a newer server adds (docs/protocol.md) follow the three this page knows
  const more = aspectScores(word, WORD_ASPECTS).filter(([aspect]) => !WORD_ASPECTS.includes(aspect)).map(([aspect, value]) => `, ${aspect} ${fmt(value)}`).join("");
  const button = el("button", {
    type: "button",
    class: `word score-${band(word.total)}${needs ? " needs" : ""}`,
    title: `${word.text}${word.ipa ? ` /${word.ipa}/` : ""}: total ${fmt(word.total)}, accuracy ${fmt(word.accuracy)}, stress ${fmt(word.stress)}${more}${needs ? " (needs improvement)" : ""}${errors.length ? ` [${errors.join(", ")}]` : ""}\n${phones}`,
    "aria-expanded": "false",
    "aria-controls": detailsId,
    dataset: { score: fmt(word.total), index: String(index), errors: (word.errors ?? []).join(" ") },
  }, word.text, el("b", {}, fmt(word.total)), needs ? el("span", { class: "needs-icon", "aria-label": "needs improvement", role: "img" }, "⚠") : null,
  errors.length ? el("small", { class: "word-errors" }, errors.join(", ")) : null);
  return button;
}

function renderWords(node, assessment) {
  const detailsId = `phones-${node.dataset.session}-${node.dataset.turnId}`;
  const words = el("div", { class: "words" });
  const details = el("div", { id: detailsId });
  assessment.words.forEach((word, i) => {
    const button = wordButton(word, i, detailsId);
    button.addEventListener("click", () => {
      const open = button.getAttribute("aria-expanded") === "true";
      for (const other of words.querySelectorAll("button.word")) other.setAttribute("aria-expanded", "false");
      details.replaceChildren();
      if (!open) {
        button.setAttribute("aria-expanded", "true");
        details.append(phoneTable(word));
      }
    });
    words.append(button);
  });
  return [words, details];
}

function renderBars(sentence) {
  const bars = el("div", { class: "bars", role: "group", "aria-label": "Sentence scores" });
  for (const [aspect, value] of aspectScores(sentence, SENTENCE_ASPECTS)) { // known ones first, then any a newer server adds
    const fill = el("div", { class: `bar-fill score-${band(value)}` });
    fill.style.width = `${Math.max(0, Math.min(10, value)) * 10}%`;
    bars.append(
      el("span", { class: "bar-label", id: `bar-${aspect}` }, aspect),
      el("div", { class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "10", "aria-valuenow": fmt(value), "aria-label": aspect, dataset: { aspect, value: fmt(value) } }, fill),
      el("span", { class: "bar-value" }, fmt(value)),
    );
  }
  return bars;
}

function onAssessed({ detail }) {
  const node = card(detail.turn_id, detail.start_ms);
  const a = detail.assessment;
  node.querySelector(".turn-title").textContent = `Turn ${detail.turn_id} · ${seconds(detail.start_ms)}–${seconds(detail.end_ms)} s`;
  setStatus(node, `Assessed in ${seconds(detail.latency_ms.total)} s`, "assessed");
  node.querySelectorAll(".words, .phones, .bars, .target, .error, .feedback, [id^='phones-']").forEach((x) => x.remove());
  const target = a.mode === "closed" ? el("p", { class: "target" }, `Expected: ${a.target_transcript}`) : null;
  const feedback = renderFeedback(a);
  node.append(...renderWords(node, a), renderBars(a.sentence), ...(target ? [target] : []), ...(feedback ? [feedback] : []));
}

function onFailed({ detail }) {
  const node = card(detail.turn_id, detail.start_ms);
  setStatus(node, "No feedback", "failed");
  node.querySelector(".error")?.remove();
  node.append(el("p", { class: "error" }, el("code", {}, detail.code), `: ${detail.message}`));
}

function onState({ detail }) {
  const state = $("state");
  state.dataset.state = detail.state;
  state.textContent = STATE_TEXT[detail.state] ?? detail.state;
  const button = $("start");
  const running = !["idle", "closed"].includes(detail.state);
  button.textContent = running ? "Stop" : "Start";
  button.classList.toggle("stop", running);
  button.disabled = detail.state === "stopping";
  for (const id of ["api-key", "closed-mode"]) $(id).disabled = running;
}

function sendReference() {
  if (client && $("closed-mode").checked && $("reference").value.trim()) client.reference($("reference").value.trim());
}

async function start() {
  $("alert").hidden = true;
  $("summary").hidden = true;
  cards.clear();
  const closed = $("closed-mode").checked;
  if (closed && !$("reference").value.trim()) {
    showAlert("reference_missing", "Closed mode needs the sentence you will read.");
    return;
  }
  client = new MultipaClient({ apiKey: $("api-key").value.trim(), mode: closed ? "closed" : "open", metadata: { client: "demo" } });
  window.multipaDemo = { client }; // for the browser test and for curious developers
  client.addEventListener("state", onState);
  client.addEventListener("turn.started", ({ detail }) => setStatus(card(detail.turn_id, detail.start_ms), "Hearing you…", "speaking"));
  client.addEventListener("turn.ended", ({ detail }) => {
    setStatus(card(detail.turn_id, detail.start_ms), "Assessing…", "assessing");
    sendReference(); // closed mode: every turn needs its own reference
  });
  client.addEventListener("turn.assessed", onAssessed);
  client.addEventListener("turn.failed", onFailed);
  client.addEventListener("error", ({ detail }) => {
    if (detail.code !== "stopped") showAlert(detail.code, detail.message);
  });
  client.addEventListener("reconnecting", ({ detail }) => showAlert("reconnecting", `The connection dropped; trying again in ${seconds(detail.delayMs)} s (attempt ${detail.attempt}).`));
  client.addEventListener("session.ended", ({ detail }) => {
    const box = $("summary");
    box.textContent = `Session ended: ${detail.turns_started} turn${detail.turns_started === 1 ? "" : "s"}, ${detail.turns_assessed} assessed, ${detail.turns_failed} without feedback, ${seconds(detail.audio_ms)} s of audio.`;
    box.hidden = false;
  });
  client.addEventListener("session.started", () => {
    cards.clear(); // turn ids restart with every session (also after a reconnect)
    session += 1;
    $("alert").hidden = true;
  });
  sendReference();
  try {
    await client.start();
  } catch {
    // shown by the error listener
  }
}

$("closed-mode").addEventListener("change", () => ($("reference").disabled = !$("closed-mode").checked));
$("reference").addEventListener("change", sendReference);
$("controls").addEventListener("submit", (event) => {
  event.preventDefault();
  if (client && !["idle", "closed"].includes(client.state)) client.stop();
  else start();
});
