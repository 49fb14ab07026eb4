// The border officer's console: talks only to the local terminal process that serves it
// (node/web/console.py), which holds the terminal key, the card keys and the durable outbox.

import { sse } from "../lib/api.js";
import { languagePicker, t, translate } from "../lib/i18n.js";
import { $, announce, el, show, time, toast } from "../lib/ui.js";

const state = { token: null, requests: new Map(), snapshot: null };
window.custosAlerts = {};

function token() {
  const m = location.hash.match(/token=([\w-]+)/);
  if (m) {
    sessionStorage.setItem("custos.console", m[1]);
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("custos.console");
}

async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${state.token}` },
    cache: "no-store" });
  const doc = await resp.json().catch(() => ({}));
  if (!resp.ok) throw Object.assign(new Error(doc.detail || `HTTP ${resp.status}`), { status: resp.status });
  return doc;
}

async function main() {
  languagePicker($("#lang"));
  translate(document);
  document.addEventListener("custos:language", render);
  $("#cross").addEventListener("submit", onCross);
  state.token = token();
  try {
    await refresh();
    show("console");
    follow();
  } catch {
    show("no-terminal");
  }
  document.body.dataset.ready = "1";
}

async function refresh() {
  state.snapshot = await api("/console/api/state");
  $("#post").textContent = `· ${state.snapshot.post}`;
  setLink(state.snapshot.link);
  renderOutbox();
}

function setLink(link) {
  const l = $("#link");
  l.dataset.state = link === "online" ? "live" : "offline";
  l.textContent = t(link === "online" ? "officer.online" : link === "offline" ? "officer.offline" : "officer.connecting");
}

async function follow() {
  for (;;) {
    const controller = new AbortController();
    try {
      const resp = await fetch("/console/api/events", { headers: { Authorization: `Bearer ${state.token}` },
        signal: controller.signal, cache: "no-store" });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      for await (const ev of sse(resp.body, 45000, controller)) onEvent(ev.type, ev.data);
    } catch { /* the terminal process went away: retry */ }
    setLink("offline");
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const STAGE = { queued: "queued", offline: "waiting", delivered: "delivered", pending: "pending",
  decision: "pending", closed: null, refused: "refused" };

function onEvent(kind, data) {
  if (data.link) setLink(data.link);
  if (kind === "offline") {
    for (const r of state.requests.values()) if (r.stage === "queued") r.stage = "waiting";
  } else if (data.id && kind in STAGE) {
    const r = state.requests.get(data.id) || { id: data.id, since: Date.now() };
    if (kind === "queued") Object.assign(r, { direction: data.direction, destination: data.destination });
    if (["pending", "decision", "closed"].includes(kind)) {
      Object.assign(r, { approvals: (data.approvals || []).length, needed: data.approvals_needed, deadline: data.deadline });
    }
    r.stage = kind === "closed" ? data.status : STAGE[kind];
    if (kind === "refused") r.detail = `${data.rule}: ${data.detail}`;
    if (kind === "delivered") r.node = data.node;
    state.requests.set(data.id, r);
    if (kind === "pending" && !window.custosAlerts[data.id]) {
      window.custosAlerts[data.id] = { committed_ms: data.committed_ms, visible_ms: Date.now() };
    }
    announce(t(`stage.${r.stage}`));
  }
  render();
  refresh().catch(() => {});
}

function render() {
  const items = [...state.requests.values()].sort((a, b) => b.since - a.since);
  $("#requests").replaceChildren(...items.map((r) => el("li", { class: "card", "data-request": r.id, "data-stage": r.stage },
    el("p", { class: `verdict status-${r.stage}`, text: t(`stage.${r.stage}`) }),
    el("p", { class: "muted", text: t(`verdict.${r.stage}`) }),
    el("dl", { class: "details" },
      el("dt", { text: t("field.direction") }), el("dd", { text: r.direction ? t(`direction.${r.direction}`) : "—" }),
      el("dt", { text: t("field.destination") }), el("dd", { text: r.destination || "—" }),
      r.needed ? el("dt", { text: t("officer.approvals") }) : null,
      r.needed ? el("dd", { text: `${r.approvals || 0} / ${r.needed}` }) : null,
      r.deadline && r.stage === "pending" ? el("dt", { text: t("officer.deadline") }) : null,
      r.deadline && r.stage === "pending" ? el("dd", { text: time(r.deadline) }) : null,
      el("dt", { text: t("officer.request") }), el("dd", {}, el("code", { text: r.id.slice(0, 16) + "…" }))),
    r.detail ? el("p", { class: "status-denied", text: r.detail }) : null)));
  $("#no-requests").hidden = items.length > 0;
}

function renderOutbox() {
  const s = state.snapshot;
  if (!s) return;
  $("#outbox-summary").textContent = t("officer.outbox-summary", { waiting: s.waiting.length, sent: s.sent.length,
    refused: s.refused.length });
  $("#outbox").replaceChildren(
    ...s.waiting.map((w) => el("li", { class: "status-waiting", "data-outbox": "waiting" },
      t("officer.outbox-waiting", { id: w.id.slice(0, 16), attempts: w.attempts }))),
    ...s.sent.map((w) => el("li", { class: "status-sent", "data-outbox": "sent" },
      t("officer.outbox-sent", { id: w.id.slice(0, 16), node: w.node }))),
    ...s.refused.map((w) => el("li", { class: "status-denied", "data-outbox": "refused" },
      t("officer.outbox-refused", { id: w.id.slice(0, 16), rule: w.rule }))));
}

async function onCross(e) {
  e.preventDefault();
  const form = new FormData();
  form.append("card", $("#card").files[0]);
  form.append("scan", $("#scan").files[0]);
  form.append("direction", $("#direction").value);
  form.append("destination", $("#destination").value.trim().toUpperCase());
  form.append("companion", $("#companion").value.trim());
  const button = $("#cross button[type=submit]");
  button.disabled = true;
  try {
    const doc = await api("/console/api/cross", { method: "POST", body: form });
    onEvent("queued", doc);
    toast(t("officer.queued"));
    $("#scan").value = "";
  } catch (err) {
    toast(err.message, "error");
  } finally {
    button.disabled = false;
  }
}

main();
