// The guardian app: a key made and kept on this phone, live alerts of the wards' crossings,
// approve or deny with a confirmation, travel consents, and each child's crossing history.

import { Node, Problem } from "../lib/api.js";
import { hex, unhex } from "../lib/bytes.js";
import { companionTag, generateSeed, keyFromSeed } from "../lib/crypto.js";
import { languagePicker, t, translate } from "../lib/i18n.js";
import { seal, unseal } from "../lib/keyfile.js";
import { forgetKey, loadKey, loadNote, saveKey, saveNote } from "../lib/keystore.js";
import { qrSvg } from "../lib/qr.js";
import { $, announce, download, el, readFile, remaining, show, time, toast } from "../lib/ui.js";
import { addSignatures, decodeTx, DECISION, DENY_REASONS, GRANT_CONSENT, makeTx, PARTIAL_FORMAT,
  REVOKE_CONSENT } from "../lib/tx.js";

const SLOT = "guardian";
const DAY_MS = 86400000;
const state = {
  key: null, node: null, record: null,
  pending: new Map(),     // request id -> request document
  notified: new Set(),
  wards: [],              // identity ids (hex)
  labels: {},             // identity -> label on this device
  wardKeys: {},           // identity -> pseudonym key (hex), from ward files
  companions: {},         // companion tag (hex) -> document text typed on this device
  identities: new Map(),  // identity -> identity document (guardians, policy, consents)
};
// Alert-to-screen measurements: request id -> {committed_ms, visible_ms} (read by the benchmark).
window.custosAlerts = {};

// ---------------------------------------------------------------- start

async function main() {
  languagePicker($("#lang"));
  translate(document);
  document.addEventListener("custos:language", rerender);
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js").catch(() => {});
  for (const b of document.querySelectorAll("[data-tab]")) b.addEventListener("click", () => tab(b.dataset.tab));
  $("#create").addEventListener("submit", onCreate);
  $("#import").addEventListener("submit", onImport);
  $("#notify").addEventListener("click", askNotifications);
  $("#copy").addEventListener("click", () => navigator.clipboard.writeText(hex(state.key.publicKey))
    .then(() => toast(t("key.copied"))));
  $("#backup").addEventListener("click", onBackup);
  $("#forget").addEventListener("click", onForget);
  $("#ward-file").addEventListener("submit", onWardFile);
  $("#consent").addEventListener("submit", onConsent);
  $("#cosign").addEventListener("submit", onCosign);
  const today = new Date().toISOString().slice(0, 10);
  $("#consent-from").value = today;
  $("#consent-until").value = today;
  state.labels = (await loadNote("labels")) || {};
  state.wardKeys = (await loadNote("wardKeys")) || {};
  state.companions = (await loadNote("companions")) || {};
  const record = await loadKey(SLOT);
  if (record) start(record);
  else show("setup");
  setInterval(tick, 1000);
  document.body.dataset.ready = "1";
}

function tab(name) {
  for (const b of document.querySelectorAll("[data-tab]")) {
    if (b.dataset.tab === name) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  show(name);
  if (name === "children") refreshWards();
  if (name === "consents") refreshConsents();
}

function start(record) {
  state.record = record;
  state.key = { publicKey: record.publicKey, privateKey: record.privateKey };
  state.node = new Node(state.key, { purpose: "guardian-review" });
  $("#tabs").hidden = false;
  renderKey();
  tab("alerts");
  if ("Notification" in window && Notification.permission === "default") $("#notify-hint").hidden = false;
  state.node.follow(onEvent, onLink);
}

// ---------------------------------------------------------------- set-up

async function busy(flag) {
  $("#setup-busy").hidden = !flag;
  for (const b of document.querySelectorAll("#create button, #import button")) b.disabled = flag;
}

async function onCreate(e) {
  e.preventDefault();
  const pass = $("#create-pass").value;
  if (pass !== $("#create-pass2").value) return toast(t("setup.mismatch"), "error");
  if (pass.length < 10) return toast(t("setup.too-short"), "error");
  busy(true);
  try {
    const seed = await generateSeed();
    const key = await keyFromSeed(seed, false);
    const label = $("#create-label").value.trim();
    const backup = await seal(seed, key.publicKey, pass, { label });
    seed.fill(0);
    const record = { ...key, label, backup, created: Date.now() };
    await saveKey(SLOT, record);
    toast(t("setup.created"));
    start(record);
    tab("key");
  } catch (err) {
    toast(String(err.message || err), "error");
  } finally {
    busy(false);
  }
}

async function onImport(e) {
  e.preventDefault();
  busy(true);
  try {
    const doc = JSON.parse(await readFile($("#import-file")));
    const { key, label } = await unseal(doc, $("#import-pass").value);
    const record = { ...key, label, backup: doc, created: Date.now() };
    await saveKey(SLOT, record);
    toast(t("setup.imported"));
    start(record);
  } catch (err) {
    toast(err instanceof SyntaxError ? t("error.not-key-file") : String(err.message || err), "error");
  } finally {
    busy(false);
  }
}

function renderKey() {
  const pub = hex(state.key.publicKey);
  $("#public").textContent = pub;
  $("#qr").replaceChildren(qrSvg(pub, t("key.qr-label")));
}

function onBackup() {
  const name = `custos-guardian-${hex(state.key.publicKey).slice(0, 8)}.key`;
  download(name, JSON.stringify(state.record.backup, null, 2) + "\n");
}

async function onForget() {
  if (!confirm(t("key.forget-confirm"))) return;
  await forgetKey(SLOT);
  location.reload();
}

async function askNotifications() {
  const answer = await Notification.requestPermission();
  $("#notify-hint").hidden = answer !== "default";
}

// ---------------------------------------------------------------- the event stream

function onLink(kind, err) {
  const link = $("#link");
  link.dataset.state = kind === "live" ? "live" : "offline";
  link.textContent = t(kind === "live" ? "link.live" : kind === "refused" ? "link.refused" : "link.offline");
  if (kind === "refused" && err) {
    link.title = err.message;
    if (err.status === 403 && !state.toldNotEnrolled) {
      state.toldNotEnrolled = true;
      toast(t("guardian.not-enrolled"), "info");
    }
  }
}

function onEvent(type, data) {
  if (type === "pending") {
    addPending(data);
  } else if (type === "decision") {
    if (state.pending.has(data.id)) addPending(data, false);
  } else if (type === "closed") {
    closeRequest(data);
  } else if (type === "sync") {
    reconcile();
  }
}

async function reconcile() {
  try {
    const doc = await state.node.get(`/v1/guardians/${hex(state.key.publicKey)}/pending`);
    const live = new Set(doc.pending.map((d) => d.id));
    for (const id of [...state.pending.keys()]) if (!live.has(id)) state.pending.delete(id);
    for (const d of doc.pending) addPending(d, false);
    renderAlerts();
    refreshWards();
  } catch (err) {
    if (!(err instanceof Problem && err.status === 403)) toast(String(err.message || err), "error");
  }
}

function addPending(doc, fresh = true) {
  const known = state.pending.get(doc.id);
  state.pending.set(doc.id, { ...known, ...doc });
  renderAlerts();
  if (fresh && !state.notified.has(doc.id)) {
    state.notified.add(doc.id);
    const seen = () => {
      if (!window.custosAlerts[doc.id]) window.custosAlerts[doc.id] = { committed_ms: doc.committed_ms || null, visible_ms: Date.now() };
    };
    requestAnimationFrame(seen);
    setTimeout(seen, 100); // a hidden page gets no animation frame
    announce(t("alert.announce", { child: childName(doc.identity) }));
    notify(doc);
  }
}

function notify(doc) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  try {
    new Notification(t("alert.notification-title"), {
      body: t("alert.notification-body", { child: childName(doc.identity), post: doc.post_label || doc.post,
        direction: t(`direction.${doc.direction}`) }),
      tag: doc.id, icon: "../icon.svg",
    });
  } catch { /* some browsers allow notifications only from a service worker */ }
}

function closeRequest(doc) {
  state.pending.delete(doc.id);
  renderAlerts();
  const status = doc.status || "";
  $("#outcomes").prepend(el("li", { class: `status-${status}` },
    el("strong", { text: t(`status.${status}`) }), " ",
    `${childName(doc.identity)} · ${doc.post_label || doc.post} · ${t(`direction.${doc.direction}`)}`));
  announce(t("alert.closed", { child: childName(doc.identity), status: t(`status.${status}`) }));
}

// ---------------------------------------------------------------- alerts

function childName(identity) {
  return state.labels[identity] || t("child.unnamed", { id: (identity || "").slice(0, 6) });
}

function companionText(tag) {
  if (!tag) return t("companion.none");
  return state.companions[tag] ? t("companion.known", { doc: state.companions[tag] }) : t("companion.unknown");
}

function details(doc) {
  return [
    [t("field.child"), childName(doc.identity)],
    [t("field.post"), doc.post_label ? `${doc.post_label} (${doc.post})` : doc.post],
    [t("field.direction"), t(`direction.${doc.direction}`)],
    [t("field.destination"), doc.destination || "—"],
    [t("field.companion"), companionText(doc.companion)],
    [t("field.event-time"), time(doc.event_time)],
  ];
}

function dl(rows) {
  const out = [];
  for (const [k, v] of rows) out.push(el("dt", { text: k }), el("dd", { text: v }));
  return out;
}

function renderAlerts() {
  const list = $("#alerts");
  const docs = [...state.pending.values()].sort((a, b) => a.deadline - b.deadline);
  list.replaceChildren(...docs.map((doc) => {
    const mine = (doc.approvals || []).includes(hex(state.key.publicKey));
    return el("li", { class: "card alert", "data-request": doc.id },
      el("h3", { text: t("alert.title", { child: childName(doc.identity) }) }),
      el("dl", { class: "details" }, ...dl(details(doc))),
      el("p", { class: "countdown", "data-deadline": doc.deadline, role: "timer" }, countdownText(doc.deadline)),
      el("p", { class: "muted", text: t("alert.approvals", { got: (doc.approvals || []).length,
        need: doc.approvals_needed }) }),
      mine ? el("p", { class: "muted", text: t("alert.you-approved") }) : el("div", { class: "actions" },
        el("button", { type: "button", class: "primary", "data-action": "approve",
          onclick: () => decide(doc.id, "approve") }, t("decide.approve")),
        el("button", { type: "button", class: "danger", "data-action": "deny",
          onclick: () => decide(doc.id, "deny") }, t("decide.deny"))));
  }));
  $("#no-alerts").hidden = docs.length > 0;
}

function countdownText(deadline) {
  const left = remaining(deadline, state.node ? state.node.now() : Date.now());
  return left ? t("alert.countdown", { left }) : t("alert.deadline-passed");
}

function tick() {
  for (const p of document.querySelectorAll("[data-deadline]")) {
    p.textContent = countdownText(Number(p.dataset.deadline));
  }
}

// ---------------------------------------------------------------- deciding

function ask(title, rows, question, okText, { reason = false } = {}) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-details").replaceChildren(...dl(rows));
  $("#confirm-question").textContent = question;
  $("#confirm-ok").textContent = okText;
  $("#confirm-reason").hidden = !reason;
  const select = $("#reason");
  select.replaceChildren(...DENY_REASONS.map((r) => el("option", { value: r }, t(`reason.${r}`))));
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? (reason ? select.value : true) : null),
      { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

async function decide(requestId, decision) {
  const doc = state.pending.get(requestId);
  if (!doc) return;
  const verb = t(`decide.${decision}`);
  const answer = await ask(t(`decide.${decision}-title`), details(doc), t(`decide.${decision}-question`), verb,
    { reason: decision === "deny" });
  if (answer === null) return;
  const reason = decision === "deny" ? DENY_REASONS.indexOf(answer) : 0;
  const card = document.querySelector(`[data-request="${requestId}"]`);
  if (card) for (const b of card.querySelectorAll("button")) b.disabled = true;
  try {
    const chainId = await state.node.ensureChain();
    const tx = await makeTx(DECISION, { guardian: state.key.publicKey, request: requestId, identity: doc.identity,
      decision, reason }, [state.key], chainId);
    await state.node.submit(tx.raw);
    const after = await state.node.get(`/v1/requests/${requestId}`);
    const status = after.status;
    toast(t(`decide.done-${decision}`, { status: t(`status.${status}`) }));
    if (status !== "pending") closeRequest({ ...doc, status });
    else addPending({ ...doc, ...after }, false);
  } catch (err) {
    toast(t("error.refused", { detail: err.message }), "error");
    renderAlerts();
  }
}

// ---------------------------------------------------------------- children

async function refreshWards() {
  if (!state.node) return;
  try {
    const who = await state.node.get("/v1/access/whoami");
    state.wards = who.wards || [];
  } catch (err) {
    return;
  }
  for (const id of state.wards) {
    try { state.identities.set(id, await state.node.get(`/v1/identities/${id}`)); } catch { /* shown as unknown */ }
  }
  renderWards();
}

function renderWards() {
  $("#no-wards").hidden = state.wards.length > 0;
  $("#wards").replaceChildren(...state.wards.map((id) => {
    const input = el("input", { id: `label-${id}`, value: state.labels[id] || "", maxlength: 40, autocomplete: "off" });
    input.addEventListener("change", async () => {
      state.labels[id] = input.value.trim();
      await saveNote("labels", state.labels);
      renderAlerts();
    });
    const ident = state.identities.get(id);
    return el("li", { class: "card" },
      el("h3", { text: childName(id) }),
      el("label", { for: `label-${id}` }, t("child.label")), input,
      el("p", { class: "muted" }, t("child.id", { id })),
      ident ? el("p", { class: "muted" }, t("child.policy", { need: ident.policy.approvals, of: ident.guardians.length,
        minutes: Math.round(ident.policy.deadline / 60000) })) : null,
      el("p", { class: "muted" }, state.wardKeys[id] ? t("child.ward-file-yes") : t("child.ward-file-no")),
      el("button", { type: "button", onclick: () => history(id) }, t("child.history")));
  }));
  const select = $("#consent-child");
  const current = select.value;
  select.replaceChildren(...state.wards.map((id) => el("option", { value: id }, childName(id))));
  if (current) select.value = current;
}

async function history(id) {
  const box = $("#history");
  box.hidden = false;
  $("#history-title").textContent = t("child.history-of", { child: childName(id) });
  try {
    const doc = await state.node.get(`/v1/identities/${id}/requests`, { limit: 50 });
    $("#history-rows").replaceChildren(...doc.requests.map((r) => el("tr", {},
      el("td", { text: time(r.event_time) }), el("td", { text: r.post_label || r.post }),
      el("td", { text: t(`direction.${r.direction}`) }),
      el("td", { class: `status-${r.status}`, text: t(`status.${r.status}`) }))));
    if (!doc.requests.length) $("#history-rows").replaceChildren(el("tr", {}, el("td", { colspan: 4, text: t("child.no-history") })));
    box.querySelector("h3").focus();
  } catch (err) {
    toast(err.message, "error");
  }
}

async function onWardFile(e) {
  e.preventDefault();
  try {
    const doc = JSON.parse(await readFile($("#ward-input")));
    if (doc.format !== "custos-ward/1") throw new Error(t("error.not-ward-file"));
    unhex(doc.identity, 16);
    unhex(doc.pseudonym_key, 32);
    state.wardKeys[doc.identity] = doc.pseudonym_key;
    await saveNote("wardKeys", state.wardKeys);
    toast(t("child.ward-file-added", { child: childName(doc.identity) }));
    e.target.reset();
    renderWards();
  } catch (err) {
    toast(err instanceof SyntaxError ? t("error.not-ward-file") : err.message, "error");
  }
}

// ---------------------------------------------------------------- consents

function dayStart(value) { return Date.parse(value + "T00:00:00Z"); }

async function onConsent(e) {
  e.preventDefault();
  const identity = $("#consent-child").value;
  if (!identity) return toast(t("consent.no-child"), "error");
  const notBefore = dayStart($("#consent-from").value);
  const notAfter = dayStart($("#consent-until").value) + DAY_MS - 1;
  if (!(notAfter > notBefore)) return toast(t("consent.bad-window"), "error");
  const direction = $("#consent-direction").value;
  const destination = $("#consent-destination").value.trim().toUpperCase() || null;
  const document_ = $("#consent-companion").value.trim();
  let companion = null;
  try {
    if (document_) {
      if (!state.wardKeys[identity]) throw new Error(t("consent.needs-ward-file"));
      companion = await companionTag(unhex(state.wardKeys[identity], 32), document_);
      state.companions[hex(companion)] = document_;
      await saveNote("companions", state.companions);
    }
    const uses = Number($("#consent-uses").value);
    const fields = { identity, not_before: notBefore, not_after: notAfter, direction, destination, companion, uses };
    const rows = consentRows(fields);
    if (await ask(t("consent.confirm-title"), rows, t("consent.confirm-question"), t("consent.sign")) === null) return;
    const tx = await makeTx(GRANT_CONSENT, fields, [state.key], await state.node.ensureChain());
    await submitConsent(tx);
  } catch (err) {
    toast(err.message, "error");
  }
}

function consentRows(f) {
  return [
    [t("field.child"), childName(typeof f.identity === "string" ? f.identity : hex(f.identity))],
    [t("consent.from"), time(f.not_before)],
    [t("consent.until"), time(f.not_after)],
    [t("field.direction"), t(`direction.${f.direction}`)],
    [t("field.destination"), f.destination || t("consent.any-destination")],
    [t("field.companion"), f.companion ? companionText(typeof f.companion === "string" ? f.companion : hex(f.companion)) : t("consent.anyone")],
    [t("consent.uses"), String(f.uses)],
  ];
}

async function submitConsent(tx) {
  try {
    const result = await state.node.submit(tx.raw);
    toast(t("consent.given", { height: result.height }));
    refreshConsents();
  } catch (err) {
    if (err instanceof Problem && err.type === "missing-signature") {
      const doc = { format: PARTIAL_FORMAT, chain_id: state.node.chainId, kind: tx.kind, id: hex(tx.id),
        signers: tx.sigs.map((s) => hex(s.key)).sort(), tx: hex(tx.raw) };
      download(`consent-${hex(tx.id).slice(0, 8)}.json`, JSON.stringify(doc, null, 2) + "\n");
      toast(t("consent.needs-cosign"));
    } else {
      toast(t("error.refused", { detail: err.message }), "error");
    }
  }
}

async function onCosign(e) {
  e.preventDefault();
  try {
    const doc = JSON.parse(await readFile($("#cosign-file")));
    if (doc.format !== PARTIAL_FORMAT) throw new Error(t("error.not-consent-file"));
    const chainId = await state.node.ensureChain();
    if (doc.chain_id !== chainId) throw new Error(t("error.other-chain"));
    const tx = await decodeTx(unhex(doc.tx));
    if (tx.kind !== GRANT_CONSENT) throw new Error(t("error.not-consent-file"));
    const rows = consentRows(tx.body);
    if (await ask(t("consent.confirm-title"), rows, t("consent.confirm-question"), t("consent.sign")) === null) return;
    await submitConsent(await addSignatures(tx, [state.key], chainId));
  } catch (err) {
    toast(err instanceof SyntaxError ? t("error.not-consent-file") : err.message, "error");
  }
}

async function refreshConsents() {
  await refreshWards();
  const items = [];
  const now = state.node.now();
  for (const [id, ident] of state.identities) {
    for (const c of ident.consents || []) {
      if (c.revoked || c.uses_left === 0 || c.not_after < now) continue;
      items.push(el("li", { class: "card", "data-consent": c.id },
        el("dl", { class: "details" }, ...dl(consentRows({ ...c, identity: id, uses: c.uses_left }))),
        el("button", { type: "button", class: "danger", onclick: () => revoke(id, c) }, t("consent.revoke"))));
    }
  }
  $("#consents").replaceChildren(...items);
  $("#no-consents").hidden = items.length > 0;
}

async function revoke(identity, consent) {
  const rows = consentRows({ ...consent, identity, uses: consent.uses_left });
  if (await ask(t("consent.revoke-title"), rows, t("consent.revoke-question"), t("consent.revoke")) === null) return;
  try {
    const tx = await makeTx(REVOKE_CONSENT, { guardian: state.key.publicKey, consent: consent.id, identity },
      [state.key], await state.node.ensureChain());
    await state.node.submit(tx.raw);
    toast(t("consent.revoked"));
    refreshConsents();
  } catch (err) {
    toast(t("error.refused", { detail: err.message }), "error");
  }
}

function rerender() {
  if (!state.key) return;
  renderAlerts();
  renderWards();
  renderKey();
}

main();
