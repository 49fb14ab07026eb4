// Strings ready for translation: t("key", {name: value}) looks the key up in the chosen
// language (English when a translation is missing). Elements carry data-i18n="key" (text) or
// data-i18n-attr="attribute:key;..." and are filled by translate(). The choice is remembered.

import { STRINGS } from "./strings.js";

export const LANGUAGES = { en: "English", ro: "Română", ru: "Русский" };
let lang = pick();

function pick() {
  const saved = localStorage.getItem("custos.lang");
  if (saved && STRINGS[saved]) return saved;
  const wanted = (navigator.language || "en").slice(0, 2);
  return STRINGS[wanted] ? wanted : "en";
}

export function language() { return lang; }

export function setLanguage(code) {
  if (!STRINGS[code]) return;
  lang = code;
  localStorage.setItem("custos.lang", code);
  translate(document);
}

export function t(key, vars = {}) {
  const text = (STRINGS[lang] && STRINGS[lang][key]) ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

export function translate(root) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      el.setAttribute(attr, t(key));
    }
  }
  document.dispatchEvent(new CustomEvent("custos:language"));
}

// A <select> of the languages, wired to setLanguage.
export function languagePicker(select) {
  for (const [code, name] of Object.entries(LANGUAGES)) {
    if (!STRINGS[code]) continue;
    const o = document.createElement("option");
    o.value = code;
    o.textContent = name;
    select.append(o);
  }
  select.value = lang;
  select.addEventListener("change", () => setLanguage(select.value));
}
