// The device's keys and notes in IndexedDB. A private key is stored as a non-extractable
// CryptoKey: the page can sign with it, nothing can read it out. The encrypted backup (a
// custos-key/1 file sealed with the person's passphrase when the key was made) is kept beside
// it, so it can be downloaded again later without the key ever leaving WebCrypto.

const DB = "custos";
const VERSION = 1;

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, VERSION);
    req.onupgradeneeded = () => {
      req.result.createObjectStore("keys");
      req.result.createObjectStore("notes");
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function run(store, mode, fn) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(store, mode);
    const req = fn(tx.objectStore(store));
    tx.oncomplete = () => { db.close(); resolve(req ? req.result : undefined); };
    tx.onerror = () => { db.close(); reject(tx.error); };
  });
}

// {publicKey, privateKey, label, backup} for `slot` ("guardian", "authority"), or undefined.
export const loadKey = (slot) => run("keys", "readonly", (s) => s.get(slot));
export const saveKey = (slot, record) => run("keys", "readwrite", (s) => s.put(record, slot));
export const forgetKey = (slot) => run("keys", "readwrite", (s) => s.delete(slot));

// Notes that stay on this device: children's labels, ward files' pseudonym keys, seen alerts.
export const loadNote = (name) => run("notes", "readonly", (s) => s.get(name));
export const saveNote = (name, value) => run("notes", "readwrite", (s) => s.put(value, name));
