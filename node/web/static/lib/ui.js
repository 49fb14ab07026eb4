// Small DOM helpers shared by the three apps (no framework: plain elements, no inline styles).

import { t } from "./i18n.js";

export function $(selector, root = document) { return root.querySelector(selector); }

// el("li", {class: "card", "data-id": id}, child, "text", ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export function time(ms) {
  if (!ms) return "?";
  return new Date(Number(ms)).toLocaleString(document.documentElement.lang || undefined,
    { dateStyle: "medium", timeStyle: "short" });
}

export function isoDay(ms) {
  return new Date(Number(ms)).toISOString().slice(0, 10);
}

// "4 min 05 s" until `deadline`; "" once it has passed.
export function remaining(deadline, now = Date.now()) {
  const s = Math.floor((deadline - now) / 1000);
  if (s <= 0) return "";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (h) return t("time.hm", { h, m: String(m).padStart(2, "0") });
  return t("time.ms", { m, s: String(sec).padStart(2, "0") });
}

// A polite live region announces what changed to screen-reader users.
export function announce(text) {
  const region = $("#announce");
  if (region) region.textContent = text;
}

export function toast(text, kind = "info") {
  const box = $("#toasts");
  if (!box) return;
  const item = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

export function download(name, text, type = "application/json") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export async function readFile(input) {
  const file = input.files && input.files[0];
  if (!file) throw new Error(t("error.no-file"));
  if (file.size > 256 * 1024) throw new Error(t("error.file-too-large"));
  return file.text();
}

export function short(hexText, n = 8) {
  return hexText ? `${hexText.slice(0, n)}…${hexText.slice(-4)}` : "";
}

// Show one <section data-screen> and hide the others; focus its heading for keyboard users.
export function show(name) {
  for (const s of document.querySelectorAll("[data-screen]")) s.hidden = s.dataset.screen !== name;
  const h = document.querySelector(`[data-screen="${name}"] h2`);
  if (h) { h.setAttribute("tabindex", "-1"); h.focus({ preventScroll: true }); }
}
