// Talking to a node from the page: status, signed reads, transaction submission, and the signed
// event stream read with fetch (EventSource cannot send the signature headers).

import { hex, unhex } from "./bytes.js";
import { DOMAIN_READ, DOMAIN_SUBSCRIBE } from "./crypto.js";
import { pathWithQuery, signRequest } from "./signed.js";

export class Problem extends Error {
  constructor(status, doc) {
    super(doc.detail || doc.title || `HTTP ${status}`);
    this.status = status;
    this.doc = doc;
    this.type = (doc.type || "").split("/").pop();
  }
}

async function parse(resp) {
  const text = await resp.text();
  let doc;
  try { doc = text ? JSON.parse(text) : {}; } catch { doc = { detail: text.slice(0, 200) }; }
  if (!resp.ok) throw new Problem(resp.status, doc);
  return doc;
}

export class Node {
  // `base` is "" for the node that served the page (same origin: the strict CSP allows no other).
  // `purpose` is what every read states unless a call says otherwise (node/access/purpose.py).
  constructor(key = null, { base = "", purpose = "" } = {}) {
    this.key = key;
    this.base = base;
    this.purpose = purpose;
    this.chainId = null;
    this.nodeId = null;
    this.clockOffset = 0;
  }

  async status() {
    const doc = await parse(await fetch(this.base + "/v1/status", { cache: "no-store" }));
    this.chainId = doc.chain_id;
    this.nodeId = unhex(doc.node_id, 32); // reads are signed for this node only
    return doc;
  }

  async ensureChain() {
    if (this.chainId === null) await this.status();
    return this.chainId;
  }

  now() { return Date.now() + this.clockOffset; }

  async headers(method, pathQs, domain, { body, purpose } = {}) {
    const chainId = await this.ensureChain();
    return signRequest(this.key, chainId, method, pathQs, { node: this.nodeId, domain, timeMs: this.now(), body,
      purpose: purpose ?? this.purpose });
  }

  // A signed GET; a stale-request answer teaches the node's clock and the read is signed again.
  async get(path, params, { purpose } = {}) {
    const pathQs = pathWithQuery(path, params);
    for (let attempt = 0; ; attempt++) {
      const headers = await this.headers("GET", pathQs, DOMAIN_READ, { purpose });
      try {
        return await parse(await fetch(this.base + pathQs, { headers, cache: "no-store" }));
      } catch (err) {
        if (attempt === 0 && err instanceof Problem && this.learnClock(err)) continue;
        throw err;
      }
    }
  }

  learnClock(err) {
    if (err.type !== "stale-request" || err.doc.server_time_ms === undefined) return false;
    this.clockOffset = Number(err.doc.server_time_ms) - Date.now();
    return true;
  }

  // Submit signed transaction bytes and wait for the block: the node's answer document.
  async submit(raw, { wait = true, timeoutMs = 30000 } = {}) {
    const q = wait ? `?wait=commit&timeout_ms=${timeoutMs}` : "";
    return parse(await fetch(this.base + "/v1/txs" + q, {
      method: "POST", body: raw, headers: { "Content-Type": "application/msgpack" },
    }));
  }

  async tx(id) {
    return parse(await fetch(this.base + "/v1/txs/" + (typeof id === "string" ? id : hex(id)), { cache: "no-store" }));
  }

  // Follow GET /v1/events for ever: onEvent(type, data, id) per event; onState("live"|"offline"|...)
  // as the connection comes and goes. Reconnects with Last-Event-ID after a break. Returns a
  // function that stops it.
  follow(onEvent, onState = () => {}, { heartbeatMs = 15000 } = {}) {
    let stopped = false;
    let controller = null;
    let cursor = null;
    let delay = 500;
    const loop = async () => {
      while (!stopped) {
        try {
          const pathQs = pathWithQuery("/v1/events", { heartbeat_ms: heartbeatMs });
          await this.status(); // the node's id again: after a restart it may be another node's address
          const headers = { ...(await this.headers("GET", pathQs, DOMAIN_SUBSCRIBE)), Accept: "text/event-stream" };
          if (cursor) headers["Last-Event-ID"] = cursor;
          controller = new AbortController();
          const resp = await fetch(this.base + pathQs, { headers, signal: controller.signal, cache: "no-store" });
          if (!resp.ok) {
            const err = new Problem(resp.status, await resp.json().catch(() => ({})));
            if (!this.learnClock(err) && [400, 401, 403].includes(resp.status)) {
              // a key with nothing to watch yet (a guardian not enrolled so far): ask again later
              onState("refused", err);
              await new Promise((r) => setTimeout(r, 2000));
              continue;
            }
            throw err;
          }
          onState("live");
          delay = 500;
          for await (const ev of sse(resp.body, Math.max(3 * heartbeatMs, 2000), controller)) {
            if (ev.id) cursor = ev.id;
            if (ev.type === "closing" || ev.type === "dropped") break;
            if (ev.type === "revoked") { onState("revoked"); return; }
            onEvent(ev.type, ev.data, ev.id);
          }
        } catch (err) {
          if (stopped) return;
          onState("offline", err);
        }
        if (stopped) return;
        onState("reconnecting");
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5000);
      }
    };
    loop();
    return () => { stopped = true; if (controller) controller.abort(); };
  }
}

// Server-sent events from a response body (the WHATWG event-stream format). A stream silent for
// longer than `idleMs` (heartbeats included) is taken as broken.
export async function* sse(body, idleMs, controller) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let id = null, type = "message", data = [];
  let timer = null;
  const arm = () => { clearTimeout(timer); timer = setTimeout(() => controller && controller.abort(), idleMs); };
  try {
    arm();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      arm();
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          if (data.length) {
            let payload;
            try { payload = JSON.parse(data.join("\n")); } catch { payload = { text: data.join("\n") }; }
            yield { id, type, data: payload };
          }
          id = null; type = "message"; data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? "" : line.slice(colon + 1);
        if (v.startsWith(" ")) v = v.slice(1);
        if (name === "data") data.push(v);
        else if (name === "event") type = v;
        else if (name === "id") id = v;
      }
    }
  } finally {
    clearTimeout(timer);
  }
}
