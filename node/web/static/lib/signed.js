// Signed requests (node/client/signed.py): the four Custos-* headers that prove which key reads
// a child's records or subscribes to the event stream.
//
//   request_digest = SHA-256(msgpack ["custos-request/1", METHOD, path?query, time, nonce, key,
//                                      SHA-256(body)])
//   Custos-Signature = Ed25519 over sign_bytes(domain, chain_id, request_digest)

import { hex, randomBytes } from "./bytes.js";
import { DOMAIN_READ, sha256, signBytes, signRaw } from "./crypto.js";
import { encode } from "./msgpack.js";

const SCHEME = "custos-request/1";

export async function requestDigest(method, pathQs, timeMs, nonce, key, body) {
  const bodyHash = await sha256(body);
  return sha256(encode([SCHEME, method.toUpperCase(), pathQs, timeMs, nonce, key, bodyHash]));
}

export async function signRequest(key, chainId, method, pathQs, { body = new Uint8Array(0), domain = DOMAIN_READ,
  timeMs = Date.now(), nonce = randomBytes(16) } = {}) {
  const digest = await requestDigest(method, pathQs, timeMs, nonce, key.publicKey, body);
  const signature = await signRaw(key, signBytes(domain, chainId, digest));
  return {
    "Custos-Key": hex(key.publicKey),
    "Custos-Time": String(timeMs),
    "Custos-Nonce": hex(nonce),
    "Custos-Signature": hex(signature),
  };
}

// path?query exactly as fetch sends it (and so as it must be signed).
export function pathWithQuery(path, params) {
  const url = new URL(path, "http://node");
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, String(v));
  }
  return url.pathname + url.search;
}
