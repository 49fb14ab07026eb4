// The authority dashboard: live alerts (denied and expired crossings) with filters by post and
// time, and a child's record for roles allowed to read it, every read stating its purpose.

import { Node, Problem } from "../lib/api.js";
import { languagePicker, t, translate } from "../lib/i18n.js";
import { unseal } from "../lib/keyfile.js";
import { loadKey, saveKey } from "../lib/keystore.js";
import { $, announce, el, readFile, show, time, toast } from "../lib/ui.js";

const SLOT = "authority";
const state = { node: null, alerts: new Map(), filters: {} };
window.custosAlerts = {};

async function main() {
  languagePicker($("#lang"));
  translate(document);
  document.addEventListener("custos:language", renderAlerts);
  $("#import").addEventListener("submit", onImport);
  $("#filters").addEventListener("submit", (e) => { e.preventDefault(); loadAlerts(); });
  $("#record-form").addEventListener("submit", onRecord);
  const record = await loadKey(SLOT);
  if (record) start(record);
  else show("setup");
  document.body.dataset.ready = "1";
}

async function onImport(e) {
  e.preventDefault();
  $("#setup-busy").hidden = false;
  try {
    const doc = JSON.parse(await readFile($("#import-file")));
    const { key, label } = await unseal(doc, $("#import-pass").value);
    const record = { ...key, label };
    await saveKey(SLOT, record);
    start(record);
  } catch (err) {
    toast(err instanceof SyntaxError ? t("error.not-key-file") : err.message, "error");
  } finally {
    $("#setup-busy").hidden = true;
  }
}

async function start(record) {
  state.node = new Node({ publicKey: record.publicKey, privateKey: record.privateKey }, { purpose: "alert-follow-up" });
  show("dashboard");
  try {
    const who = await state.node.get("/v1/access/whoami");
    $("#whoami").textContent = t("authority.whoami", { role: who.role || "—", label: who.label || "" });
  } catch (err) {
    toast(err.message, "error");
  }
  await loadAlerts();
  state.node.follow(onEvent, onLink);
}

function onLink(kind) {
  const link = $("#link");
  link.dataset.state = kind === "live" ? "live" : "offline";
  link.textContent = t(kind === "live" ? "link.live" : kind === "refused" ? "link.refused" : "link.offline");
}

function localMs(input) {
  return input.value ? new Date(input.value).getTime() : null;
}

async function loadAlerts() {
  state.filters = { post: $("#f-post").value.trim() || null, since: localMs($("#f-since")),
    until: localMs($("#f-until")) };
  try {
    const doc = await state.node.get("/v1/alerts", { ...state.filters, limit: 500 });
    state.alerts = new Map(doc.alerts.map((a) => [a.request, a]));
    renderAlerts();
  } catch (err) {
    toast(err instanceof Problem ? t("error.refused", { detail: err.message }) : err.message, "error");
  }
}

function matches(a) {
  const f = state.filters;
  return (!f.post || a.post === f.post) && (!f.since || a.time >= f.since) && (!f.until || a.time <= f.until);
}

function onEvent(type, data) {
  if (type !== "closed" || !["denied", "expired"].includes(data.status)) return;
  const alert = { kind: data.status, request: data.id, identity: data.identity, post: data.post,
    direction: data.direction, event_time: data.event_time, time: data.committed_ms || Date.now() };
  if (!matches(alert)) return;
  state.alerts.set(alert.request, alert);
  renderAlerts();
  if (!window.custosAlerts[data.id]) window.custosAlerts[data.id] = { committed_ms: data.committed_ms, visible_ms: Date.now() };
  announce(t("authority.new-alert", { post: data.post, status: t(`status.${data.status}`) }));
}

function renderAlerts() {
  const rows = [...state.alerts.values()].sort((a, b) => b.time - a.time);
  $("#alerts").replaceChildren(...rows.map((a) => el("tr", { "data-alert": a.request },
    el("td", { text: time(a.time) }), el("td", { text: a.post }), el("td", { text: t(`direction.${a.direction}`) }),
    el("td", { class: `status-${a.kind}`, text: t(`status.${a.kind}`) }),
    el("td", {}, el("button", { type: "button", class: "link-button", onclick: () => pick(a.identity) },
      el("code", { text: a.identity.slice(0, 12) + "…" }))))));
  $("#no-alerts").hidden = rows.length > 0;
}

function pick(identity) {
  $("#r-identity").value = identity;
  $("#r-purpose").value = "alert-follow-up";
  $("#r-purpose").focus();
}

async function onRecord(e) {
  e.preventDefault();
  const id = $("#r-identity").value.trim().toLowerCase();
  const purpose = $("#r-purpose").value;
  if (!purpose) return toast(t("authority.purpose-needed"), "error");
  try {
    const ident = await state.node.get(`/v1/identities/${id}`, null, { purpose });
    const hist = await state.node.get(`/v1/identities/${id}/requests`, { limit: 50 }, { purpose });
    $("#record").hidden = false;
    $("#record-title").textContent = t("authority.record-of", { id });
    const rows = [
      [t("authority.majority"), new Date(ident.majority_day * 86400000).toISOString().slice(0, 10)],
      [t("authority.guardians"), String(ident.guardians.length)],
      [t("authority.policy"), t("child.policy", { need: ident.policy.approvals, of: ident.guardians.length,
        minutes: Math.round(ident.policy.deadline / 60000) })],
      [t("authority.consents"), String((ident.consents || []).filter((c) => !c.revoked).length)],
      [t("authority.purpose"), t(`purpose.${purpose}`)],
    ];
    $("#record-details").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    $("#record-rows").replaceChildren(...hist.requests.map((r) => el("tr", {},
      el("td", { text: time(r.event_time) }), el("td", { text: r.post_label || r.post }),
      el("td", { text: t(`direction.${r.direction}`) }),
      el("td", { class: `status-${r.status}`, text: t(`status.${r.status}`) }))));
  } catch (err) {
    $("#record").hidden = true;
    toast(t("error.refused", { detail: err.message }), "error");
  }
}

main();
