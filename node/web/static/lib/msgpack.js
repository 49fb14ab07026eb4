// Canonical msgpack (ledger/encoding.py): the smallest encoding of every integer and length,
// bin for bytes, str for text, map keys sorted by their UTF-8 bytes. Integers may be Numbers
// (safe integers) or BigInts. No floats. decode() accepts only what encode() would write.

import { compare, concat, utf8 } from "./bytes.js";

class Writer {
  constructor() { this.parts = []; }
  byte(b) { this.parts.push(Uint8Array.of(b)); }
  bytes(b) { this.parts.push(b); }
  uint(n, size) {
    const out = new Uint8Array(size);
    let v = BigInt(n);
    for (let i = size - 1; i >= 0; i--) { out[i] = Number(v & 0xffn); v >>= 8n; }
    this.parts.push(out);
  }
  result() { return concat(...this.parts); }
}

function writeInt(w, value) {
  const v = BigInt(value);
  if (v >= 0n) {
    if (v < 128n) w.byte(Number(v));
    else if (v < 0x100n) { w.byte(0xcc); w.uint(v, 1); }
    else if (v < 0x10000n) { w.byte(0xcd); w.uint(v, 2); }
    else if (v < 0x100000000n) { w.byte(0xce); w.uint(v, 4); }
    else if (v < 1n << 64n) { w.byte(0xcf); w.uint(v, 8); }
    else throw new Error(`integer ${v} outside the 64-bit range`);
    return;
  }
  if (v >= -32n) w.byte(Number(v & 0xffn));
  else if (v >= -128n) { w.byte(0xd0); w.uint(v & 0xffn, 1); }
  else if (v >= -32768n) { w.byte(0xd1); w.uint(v & 0xffffn, 2); }
  else if (v >= -2147483648n) { w.byte(0xd2); w.uint(v & 0xffffffffn, 4); }
  else if (v >= -(1n << 63n)) { w.byte(0xd3); w.uint(v & 0xffffffffffffffffn, 8); }
  else throw new Error(`integer ${v} outside the 64-bit range`);
}

function writeLength(w, n, fix, fixMax, codes) {
  if (fix !== null && n <= fixMax) { w.byte(fix | n); return; }
  const [c8, c16, c32] = codes;
  if (c8 !== null && n < 0x100) { w.byte(c8); w.uint(n, 1); }
  else if (n < 0x10000) { w.byte(c16); w.uint(n, 2); }
  else { w.byte(c32); w.uint(n, 4); }
}

function write(w, value) {
  if (value === null || value === undefined) w.byte(0xc0);
  else if (value === false) w.byte(0xc2);
  else if (value === true) w.byte(0xc3);
  else if (typeof value === "bigint") writeInt(w, value);
  else if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Error(`${value} is not a safe integer (no floats on the chain)`);
    writeInt(w, value);
  } else if (typeof value === "string") {
    const b = utf8(value);
    writeLength(w, b.length, 0xa0, 31, [0xd9, 0xda, 0xdb]);
    w.bytes(b);
  } else if (value instanceof Uint8Array) {
    writeLength(w, value.length, null, 0, [0xc4, 0xc5, 0xc6]);
    w.bytes(value);
  } else if (Array.isArray(value)) {
    writeLength(w, value.length, 0x90, 15, [null, 0xdc, 0xdd]);
    for (const v of value) write(w, v);
  } else if (typeof value === "object") {
    const keys = Object.keys(value).sort((a, b) => compare(utf8(a), utf8(b)));
    writeLength(w, keys.length, 0x80, 15, [null, 0xde, 0xdf]);
    for (const k of keys) { write(w, k); write(w, value[k]); }
  } else {
    throw new Error(`type ${typeof value} has no canonical encoding`);
  }
}

export function encode(value) {
  const w = new Writer();
  write(w, value);
  return w.result();
}

// ---------------------------------------------------------------- decoding (for partly signed files)

class Reader {
  constructor(data) { this.data = data; this.at = 0; }
  take(n) {
    if (this.at + n > this.data.length) throw new Error("truncated msgpack");
    const out = this.data.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  uint(n) {
    let v = 0n;
    for (const b of this.take(n)) v = (v << 8n) | BigInt(b);
    return v;
  }
}

function small(v) {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function read(r, depth) {
  if (depth > 32) throw new Error("nesting too deep");
  const b = r.take(1)[0];
  if (b <= 0x7f) return b;
  if (b >= 0xe0) return b - 256;
  if ((b & 0xf0) === 0x80) return readMap(r, b & 0x0f, depth);
  if ((b & 0xf0) === 0x90) return readArray(r, b & 0x0f, depth);
  if ((b & 0xe0) === 0xa0) return new TextDecoder("utf-8", { fatal: true }).decode(r.take(b & 0x1f));
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return r.take(Number(r.uint(1))).slice();
    case 0xc5: return r.take(Number(r.uint(2))).slice();
    case 0xc6: return r.take(Number(r.uint(4))).slice();
    case 0xcc: return small(r.uint(1));
    case 0xcd: return small(r.uint(2));
    case 0xce: return small(r.uint(4));
    case 0xcf: return small(r.uint(8));
    case 0xd0: return small(BigInt.asIntN(8, r.uint(1)));
    case 0xd1: return small(BigInt.asIntN(16, r.uint(2)));
    case 0xd2: return small(BigInt.asIntN(32, r.uint(4)));
    case 0xd3: return small(BigInt.asIntN(64, r.uint(8)));
    case 0xd9: return new TextDecoder("utf-8", { fatal: true }).decode(r.take(Number(r.uint(1))));
    case 0xda: return new TextDecoder("utf-8", { fatal: true }).decode(r.take(Number(r.uint(2))));
    case 0xdb: return new TextDecoder("utf-8", { fatal: true }).decode(r.take(Number(r.uint(4))));
    case 0xdc: return readArray(r, Number(r.uint(2)), depth);
    case 0xdd: return readArray(r, Number(r.uint(4)), depth);
    case 0xde: return readMap(r, Number(r.uint(2)), depth);
    case 0xdf: return readMap(r, Number(r.uint(4)), depth);
    default: throw new Error(`msgpack type 0x${b.toString(16)} is not allowed`);
  }
}

function readArray(r, n, depth) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(read(r, depth + 1));
  return out;
}

function readMap(r, n, depth) {
  const out = {};
  for (let i = 0; i < n; i++) {
    const k = read(r, depth + 1);
    if (typeof k !== "string") throw new Error("map keys are text");
    out[k] = read(r, depth + 1);
  }
  return out;
}

export function decode(data) {
  const r = new Reader(data);
  const value = read(r, 0);
  const again = encode(value);
  if (again.length !== data.length || compare(again, data) !== 0) throw new Error("not in canonical form");
  return value;
}
