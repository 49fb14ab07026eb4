// Signatures and hashes exactly as the Python client makes them (ledger/crypto/keys.py,
// ledger/hashing.py, ledger/privacy/tags.py). Ed25519, SHA-256 and HMAC come from WebCrypto; a
// private key is a non-extractable CryptoKey.

import { concat, utf8 } from "./bytes.js";
import { encode } from "./msgpack.js";

export const DOMAIN_TX = "tx";
export const DOMAIN_READ = "read-request";
export const DOMAIN_SUBSCRIBE = "subscribe";
const SIG_VERSION = "custos-sig/1";
// PKCS #8 wrapping of a raw Ed25519 seed (RFC 8410): a fixed 16-byte prefix, then the seed.
const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65,
  0x70, 0x04, 0x22, 0x04, 0x20]);

export async function sha256(data) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

export async function taggedHash(tag, data) {
  const t = utf8(tag);
  return sha256(concat(Uint8Array.of(t.length), t, data));
}

// The exact message an Ed25519 key signs for `digest` in `domain` on `chainId`.
export function signBytes(domain, chainId, digest) {
  return encode([SIG_VERSION, domain, chainId, digest]);
}

export async function signRaw(key, message) {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, message));
}

export async function verifyRaw(publicKey, message, signature) {
  const pub = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  return crypto.subtle.verify({ name: "Ed25519" }, pub, signature, message);
}

// A signing key: {publicKey: Uint8Array(32), privateKey: CryptoKey (non-extractable)}.
export async function keyFromSeed(seed, extractable = false) {
  if (seed.length !== 32) throw new Error("an Ed25519 seed is 32 bytes");
  const privateKey = await crypto.subtle.importKey("pkcs8", concat(PKCS8_PREFIX, seed), { name: "Ed25519" },
    extractable, ["sign"]);
  // The public key is not exported from a private CryptoKey: derive it through a JWK round
  // trip only while the seed is at hand (an extractable twin, dropped at once).
  const twin = await crypto.subtle.importKey("pkcs8", concat(PKCS8_PREFIX, seed), { name: "Ed25519" }, true,
    ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", twin);
  return { publicKey: b64url(jwk.x), privateKey };
}

// A fresh key. The seed is returned once, so the caller can seal a backup, and then dropped.
export async function generateSeed() {
  return crypto.getRandomValues(new Uint8Array(32));
}

function b64url(text) {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

// ---------------------------------------------------------------- companion tags

const COMPANION_DOMAIN = concat(utf8("custos/companion/v1"), Uint8Array.of(0));

// One spelling per document (ledger/privacy/tags.py normalise_document).
export function normaliseDocument(text) {
  const folded = text.normalize("NFKC").toUpperCase();
  const kept = [...folded].filter((ch) => !" \t-./".includes(ch)).join("");
  if (!kept) throw new Error("the document number is empty");
  if ([...kept].length > 64) throw new Error("the document number is longer than 64 characters");
  if (!/^[\p{L}\p{N}]+$/u.test(kept)) throw new Error("a document number has letters and digits only");
  return kept;
}

// The 16-byte tag of an accompanying adult's document, keyed with the child's pseudonym key.
export async function companionTag(pseudonymKey, documentText) {
  const key = await crypto.subtle.importKey("raw", pseudonymKey, { name: "HMAC", hash: "SHA-256" }, false,
    ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, concat(COMPANION_DOMAIN, utf8(normaliseDocument(documentText))));
  return new Uint8Array(mac).slice(0, 16);
}
