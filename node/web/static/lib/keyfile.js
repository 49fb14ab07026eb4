// custos-key/1 key files (node/keyfile.py) in the browser: an Ed25519 seed sealed with
// Argon2id (libsodium crypto_pwhash: t = ops, m = mem / 1024 KiB, one lane) and XSalsa20-Poly1305
// (libsodium secretbox: nonce || tag || ciphertext). A file written here opens with the CLI and
// the reverse; WebCrypto has neither primitive, so the vendored noble code does them.

import { argon2idAsync } from "../vendor/noble-hashes/argon2.js";
import { xsalsa20poly1305 } from "../vendor/noble-ciphers/salsa.js";
import { equal, hex, randomBytes, unhex, utf8 } from "./bytes.js";
import { keyFromSeed } from "./crypto.js";

export const FORMAT = "custos-key/1";
export const INTERACTIVE = { ops: 2, mem: 67108864 };
const OPS = [1, 16];
const MEM = [8192, 1024 ** 3];

async function derive(passphrase, salt, ops, mem) {
  if (!(ops >= OPS[0] && ops <= OPS[1])) throw new Error(`Argon2id ops limit ${ops} out of range`);
  if (!(mem >= MEM[0] && mem <= MEM[1])) throw new Error(`Argon2id memory limit ${mem} out of range`);
  return argon2idAsync(utf8(passphrase), salt, { t: ops, m: Math.floor(mem / 1024), p: 1, dkLen: 32 });
}

// Seal `seed` under `passphrase`: the key file document.
export async function seal(seed, publicKey, passphrase, { label = "", cost = INTERACTIVE } = {}) {
  const salt = randomBytes(16);
  const nonce = randomBytes(24);
  const box = xsalsa20poly1305(await derive(passphrase, salt, cost.ops, cost.mem), nonce);
  const sealed = box.encrypt(seed);
  return {
    format: FORMAT, public: hex(publicKey), label,
    kdf: { name: "argon2id", salt: hex(salt), ops: cost.ops, mem: cost.mem },
    sealed: hex(nonce) + hex(sealed),
  };
}

// Open a key file document: {key (non-extractable), label}. Throws on a wrong passphrase.
export async function unseal(doc, passphrase) {
  if (!doc || doc.format !== FORMAT) throw new Error("not a Custos key file");
  const kdf = doc.kdf || {};
  if (kdf.name !== "argon2id") throw new Error(`unsupported key derivation ${kdf.name}`);
  const salt = unhex(kdf.salt, 16);
  const sealed = unhex(doc.sealed);
  const publicKey = unhex(doc.public, 32);
  if (sealed.length !== 24 + 16 + 32) throw new Error("the sealed seed has the wrong length");
  const box = xsalsa20poly1305(await derive(passphrase, salt, Number(kdf.ops), Number(kdf.mem)), sealed.slice(0, 24));
  let seed;
  try {
    seed = box.decrypt(sealed.slice(24));
  } catch {
    throw new Error("wrong passphrase, or the key file was altered");
  }
  const key = await keyFromSeed(seed);
  seed.fill(0);
  if (!equal(key.publicKey, publicKey)) throw new Error("the key file's public key does not match its sealed seed");
  return { key, label: doc.label || "" };
}
