"""The pages themselves in headless Chromium: the browser signs exactly as the Python client
(shared vectors), the pages set a strict CSP that really blocks injected script, every screen
passes axe-core's WCAG A/AA rules, and strings are translated."""

from __future__ import annotations

import json
import urllib.request

import pytest

from node.web.routes import CSP
from tests.web.browserkit import VECTORS, both_widths, check_accessibility, new_context, watch_errors

VECTOR_CHECK = """async (v) => {
  const { hex, unhex } = await import("/app/lib/bytes.js");
  const crypto_ = await import("/app/lib/crypto.js");
  const tx = await import("/app/lib/tx.js");
  const signed = await import("/app/lib/signed.js");
  const keyfile = await import("/app/lib/keyfile.js");
  const out = {txs: [], reads: [], keys: [], tags: []};
  const key = async (seed) => crypto_.keyFromSeed(unhex(seed));
  for (const c of v.txs.transactions) {
    const signers = await Promise.all(c.signers.map(key));
    const made = await tx.makeTx(c.kind, c.fields, signers, v.txs.chain_id, BigInt(c.nonce));
    const again = await tx.decodeTx(made.raw);
    const signBytes = crypto_.signBytes("tx", v.txs.chain_id, made.id);
    out.txs.push({id: hex(made.id), raw: hex(made.raw), sign_bytes: hex(signBytes), reparsed: hex(again.id)});
  }
  const reader = await key(v.reads.key.seed_hex);
  for (const c of v.reads.cases) {
    const [path, query] = signed.splitTarget(c.target);
    const pre = await signed.digestPreimage(unhex(v.reads.node.public_hex), c.method, path, query, c.time_ms,
                                            unhex(c.nonce_hex), reader.publicKey, unhex(c.body_hex), c.purpose);
    const headers = await signed.signRequest(reader, v.reads.chain_id, c.method, c.target,
      {node: unhex(v.reads.node.public_hex), body: unhex(c.body_hex), purpose: c.purpose, domain: c.domain,
       timeMs: c.time_ms, nonce: unhex(c.nonce_hex)});
    out.reads.push({preimage_hex: hex(pre), headers});
  }
  for (const c of v.keys.key_files) {
    const opened = await keyfile.unseal(c.file, c.passphrase);
    out.keys.push({public: hex(opened.key.publicKey), extractable: opened.key.privateKey.extractable});
  }
  for (const c of v.tags.tags) {
    out.tags.push({normalised: crypto_.normaliseDocument(c.document),
                   tag: hex(await crypto_.companionTag(unhex(v.tags.pseudonym_key), c.document))});
  }
  // a key file sealed here opens in Python (checked by the caller)
  const seed = unhex(v.keys.key_files[0].seed);
  const k = await crypto_.keyFromSeed(seed);
  out.sealed = await keyfile.seal(seed, k.publicKey, v.keys.key_files[0].passphrase,
                                  {label: "sealed in the browser", cost: {ops: 1, mem: 8192}});
  return out;
}"""


def _vectors() -> dict:
    return {name: json.loads((VECTORS / f"{file}.json").read_text())
            for name, file in (("txs", "transactions"), ("reads", "signed_read"), ("keys", "key_files"),
                               ("tags", "companion_tags"))}


def test_browser_signs_the_shared_vectors(browser, static_server) -> None:
    from node.keyfile import unseal

    v = _vectors()
    ctx = new_context(browser, axe=False)
    page = ctx.new_page()
    errors = watch_errors(page)
    page.goto(static_server.url + "/app/")
    out = page.evaluate(VECTOR_CHECK, v)
    for case, got in zip(v["txs"]["transactions"], out["txs"], strict=True):
        assert got == {"id": case["id"], "raw": case["raw"], "sign_bytes": case["sign_bytes"],
                       "reparsed": case["id"]}, case["name"]
    for case, got in zip(v["reads"]["cases"], out["reads"], strict=True):
        assert got == {"preimage_hex": case["expected"]["preimage_hex"], "headers": case["expected"]["headers"]}, \
            case["name"]
    for case, got in zip(v["keys"]["key_files"], out["keys"], strict=True):
        assert got == {"public": case["public"], "extractable": False}
    for case, got in zip(v["tags"]["tags"], out["tags"], strict=True):
        assert got == {"normalised": case["normalised"], "tag": case["tag"]}, case["document"]
    first = v["keys"]["key_files"][0]
    assert unseal(out["sealed"], first["passphrase"].encode()).seed.hex() == first["seed"]
    assert errors == []
    ctx.close()


def test_rejects_key_file_with_wrong_passphrase_in_browser(browser, static_server) -> None:
    case = _vectors()["keys"]["key_files"][0]
    ctx = new_context(browser, axe=False)
    page = ctx.new_page()
    page.goto(static_server.url + "/app/")
    message = page.evaluate("""async (c) => {
      const keyfile = await import("/app/lib/keyfile.js");
      try { await keyfile.unseal(c.file, "wrong"); return "opened"; } catch (e) { return e.message; }
    }""", case)
    assert "wrong passphrase" in message
    ctx.close()


@pytest.mark.parametrize("app", ["guardian", "officer", "authority"])
def test_pages_set_a_strict_csp_that_blocks_injected_script(browser, static_server, app: str) -> None:
    with urllib.request.urlopen(f"{static_server.url}/app/{app}/", timeout=5) as r:
        assert r.headers["Content-Security-Policy"] == CSP
        assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    ctx = new_context(browser, axe=False)
    page = ctx.new_page()
    page.goto(f"{static_server.url}/app/{app}/")
    page.wait_for_selector("body[data-ready]")
    blocked = page.evaluate("""() => new Promise((resolve) => {
      window.injected = false;
      document.addEventListener("securitypolicyviolation", (e) => resolve(e.violatedDirective));
      const s = document.createElement("script");
      s.textContent = "window.injected = true";
      document.body.append(s);
      setTimeout(() => resolve(window.injected ? "ran" : "silent"), 1000);
    })""")
    assert blocked.startswith("script-src")
    ctx.close()


def test_setup_screen_is_accessible_and_translated(browser, static_server) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    errors = watch_errors(page)
    page.goto(static_server.url + "/app/guardian/")
    page.wait_for_selector("body[data-ready]")
    both_widths(page, "guardian-setup", "the guardian's set-up screen")
    page.select_option("#lang", "ro")
    assert page.text_content("[data-screen=setup] h2") == "Pregătiți acest telefon"
    assert page.get_attribute("html", "lang") == "ro"
    check_accessibility(page, "the set-up screen in Romanian")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    assert page.text_content("[data-screen=setup] h2") == "Pregătiți acest telefon"  # the choice is kept
    assert errors == []
    ctx.close()
