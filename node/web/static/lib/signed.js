// Signed requests (node/access/signature.py, scheme custos-request/2): the Custos-* headers that
// prove which key reads a child's records or subscribes to the event stream, for which node,
// and why.
//
//   digest = SHA-256(msgpack ["custos-request/2", node, METHOD, path, query, time, nonce, key,
//                             SHA-256(body), purpose])
//   Custos-Signature = Ed25519 over sign_bytes(domain, chain_id, digest)
//
// `node` is the target node's public key (node_id in its /v1/status): a request captured on its
// way is refused by every other node. `purpose` is the Custos-Purpose header as sent ("" when
// absent). Checked against tests/vectors/signed_read.json by the browser tests.

import { hex, randomBytes, utf8 } from "./bytes.js";
import { DOMAIN_READ, sha256, signBytes, signRaw } from "./crypto.js";
import { encode } from "./msgpack.js";

const SCHEME = "custos-request/2";

export function splitTarget(pathQs) {
  const at = pathQs.indexOf("?");
  return at < 0 ? [pathQs, ""] : [pathQs.slice(0, at), pathQs.slice(at + 1)];
}

export async function digestPreimage(node, method, path, query, timeMs, nonce, key, body, purpose) {
  if (node.length !== 32) throw new Error("a node id is 32 bytes (the node's public key)");
  return encode([SCHEME, node, method.toUpperCase(), path, query, timeMs, nonce, key, await sha256(body), purpose]);
}

export async function requestDigest(node, method, path, query, timeMs, nonce, key, body = new Uint8Array(0),
  purpose = "") {
  return sha256(await digestPreimage(node, method, path, query, timeMs, nonce, key, body, purpose));
}

export async function signRequest(key, chainId, method, pathQs, { node, body = new Uint8Array(0), purpose = "",
  domain = DOMAIN_READ, timeMs = Date.now(), nonce = randomBytes(16) } = {}) {
  const [path, query] = splitTarget(pathQs);
  const digest = await requestDigest(node, method, path, query, timeMs, nonce, key.publicKey,
    typeof body === "string" ? utf8(body) : body, purpose || "");
  const headers = {
    "Custos-Key": hex(key.publicKey),
    "Custos-Time": String(timeMs),
    "Custos-Nonce": hex(nonce),
    "Custos-Signature": hex(await signRaw(key, signBytes(domain, chainId, digest))),
  };
  if (purpose) headers["Custos-Purpose"] = purpose;
  return headers;
}

// path?query exactly as fetch sends it (and so as it must be signed).
export function pathWithQuery(path, params) {
  const url = new URL(path, "http://node");
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, String(v));
  }
  return url.pathname + url.search;
}
