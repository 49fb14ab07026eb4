// The guardian app's service worker: the shell (pages, scripts, styles) comes from the cache
// when the network is poor, and is refreshed in the background; API calls (/v1/) always go to
// the network, never to a cache (they are signed, fresh and personal).

const CACHE = "custos-guardian-v1";
const SHELL = [
  "./", "index.html", "app.js", "manifest.webmanifest", "../icon.svg", "../style.css",
  "../lib/api.js", "../lib/bytes.js", "../lib/crypto.js", "../lib/i18n.js", "../lib/keyfile.js",
  "../lib/keystore.js", "../lib/msgpack.js", "../lib/qr.js", "../lib/signed.js", "../lib/strings.js",
  "../lib/tx.js", "../lib/ui.js",
  "../vendor/noble-hashes/argon2.js", "../vendor/noble-hashes/blake2.js", "../vendor/noble-hashes/_blake.js",
  "../vendor/noble-hashes/_md.js", "../vendor/noble-hashes/_u64.js", "../vendor/noble-hashes/utils.js",
  "../vendor/noble-ciphers/salsa.js", "../vendor/noble-ciphers/_arx.js", "../vendor/noble-ciphers/_poly1305.js",
  "../vendor/noble-ciphers/utils.js", "../vendor/qrcode-generator/qrcode.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin || !url.pathname.startsWith("/app/")) return;
  // network first (a fresh shell when online), the cache when the network fails
  event.respondWith(fetch(event.request).then((resp) => {
    if (resp.ok) {
      const copy = resp.clone();
      caches.open(CACHE).then((c) => c.put(event.request, copy));
    }
    return resp;
  }).catch(() => caches.match(event.request)));
});
