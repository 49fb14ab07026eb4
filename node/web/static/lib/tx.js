// Signed transactions, byte for byte as ledger/tx/envelope.py builds them.
//
//   unsigned = msgpack {"body", "kind", "nonce"}      id = tagged_hash("custos/tx", unsigned)
//   each signer signs sign_bytes("tx", chain_id, id)  raw = msgpack {"body", "kind", "nonce", "sigs"}
//
// Only the kinds a person makes in the browser are described here (the terminal's crossings are
// made by the terminal process). Field types mirror ledger/tx/bodies.py.

import { compare, hex, unhex } from "./bytes.js";
import { DOMAIN_TX, signBytes, signRaw, taggedHash } from "./crypto.js";
import { decode, encode } from "./msgpack.js";

export const DECISION = "guardian.decide";
export const GRANT_CONSENT = "consent.grant";
export const REVOKE_CONSENT = "consent.revoke";
export const DENY_REASONS = ["unspecified", "not-informed", "destination-not-agreed", "companion-not-agreed",
  "custody-dispute", "safety-concern", "other"];

// name -> [type, size]; a trailing "?" allows null
const FIELDS = {
  [DECISION]: { guardian: ["bytes", 32], request: ["bytes", 32], identity: ["bytes", 16], decision: ["str"],
    reason: ["int"] },
  [GRANT_CONSENT]: { identity: ["bytes", 16], not_before: ["int"], not_after: ["int"], direction: ["str"],
    destination: ["str?"], companion: ["bytes?", 16], uses: ["int"] },
  [REVOKE_CONSENT]: { guardian: ["bytes", 32], consent: ["bytes", 32], identity: ["bytes", 16] },
};

// A body from plain values (bytes as Uint8Array or hex), checked against the kind's fields.
export function body(kind, fields) {
  const spec = FIELDS[kind];
  if (!spec) throw new Error(`the browser does not make ${kind} transactions`);
  const out = {};
  for (const [name, [type, size]] of Object.entries(spec)) {
    if (!(name in fields)) throw new Error(`missing field ${name}`);
    let v = fields[name];
    const optional = type.endsWith("?");
    if (v === null || v === undefined) {
      if (!optional) throw new Error(`field ${name} is required`);
      out[name] = null;
      continue;
    }
    if (type.startsWith("bytes")) {
      v = typeof v === "string" ? unhex(v, size) : v;
      if (!(v instanceof Uint8Array) || v.length !== size) throw new Error(`field ${name} is ${size} bytes`);
    } else if (type === "int") {
      if (!(typeof v === "bigint" || Number.isSafeInteger(v)) || v < 0) throw new Error(`field ${name} is a whole number`);
    } else if (typeof v !== "string") {
      throw new Error(`field ${name} is text`);
    }
    out[name] = v;
  }
  for (const name of Object.keys(fields)) if (!(name in spec)) throw new Error(`unknown field ${name}`);
  return out;
}

export function randomNonce() {
  const b = crypto.getRandomValues(new Uint8Array(8));
  b[0] &= 0x7f; // 63 bits, as the Python client draws them
  return BigInt("0x" + hex(b));
}

export async function txId(kind, bodyWire, nonce) {
  return taggedHash("custos/tx", encode({ body: bodyWire, kind, nonce }));
}

// Build and sign: {id, raw, kind, body, nonce, sigs}. `signers` are keys from crypto.js.
export async function makeTx(kind, fields, signers, chainId, nonce = randomNonce()) {
  const b = body(kind, fields);
  const id = await txId(kind, b, nonce);
  return addSignatures({ kind, body: b, nonce, id, sigs: [] }, signers, chainId);
}

// One more signature (a co-guardian signing a consent prepared elsewhere).
export async function addSignatures(tx, signers, chainId) {
  const message = signBytes(DOMAIN_TX, chainId, tx.id);
  const byKey = new Map(tx.sigs.map((s) => [hex(s.key), s]));
  for (const k of signers) byKey.set(hex(k.publicKey), { key: k.publicKey, sig: await signRaw(k, message) });
  const sigs = [...byKey.values()].sort((a, b) => compare(a.key, b.key));
  const raw = encode({ body: tx.body, kind: tx.kind, nonce: tx.nonce, sigs });
  return { ...tx, sigs, raw };
}

// Parse envelope bytes (a partly signed consent from another guardian).
export async function decodeTx(raw) {
  const v = decode(raw);
  if (!v || typeof v !== "object" || Object.keys(v).join() !== "body,kind,nonce,sigs") {
    throw new Error("not a transaction");
  }
  const b = body(v.kind, v.body);
  const id = await txId(v.kind, b, BigInt(v.nonce));
  return { kind: v.kind, body: b, nonce: BigInt(v.nonce), id, sigs: v.sigs, raw };
}

// The partly signed transaction file the CLI writes (node/cli/options.py write_partial).
export const PARTIAL_FORMAT = "custos-partial-tx/1";
