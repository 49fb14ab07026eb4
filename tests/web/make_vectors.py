"""Write the sign-bytes test vectors the Python client and the browser client both check.

    .venv/bin/python -m tests.web.make_vectors     # rewrites tests/vectors/*.json

Every vector but the key files is deterministic (fixed seeds, nonces and times; Ed25519
signatures are deterministic), so regenerating changes nothing unless the formats changed, which
is exactly what a reviewer must then see in the diff. Key files carry a random salt and nonce:
their check is that both clients open them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ledger.crypto.keyfile import MINIMAL, seal
from ledger.crypto.keys import DOMAIN_READ, DOMAIN_SUBSCRIBE, DOMAIN_TX, SigningKey, sign_bytes
from ledger.privacy.tags import companion_tag, normalise_document
from ledger.tx import bodies as b
from node.client.signed import request_digest, sign_request
from node.client.txs import TxFactory

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
CHAIN_ID = "custos-vectors-1"


def seed(n: int) -> bytes:
    return hashlib.sha256(b"custos vector key %d" % n).digest()


def key(n: int) -> SigningKey:
    return SigningKey(seed(n))


def _jsonable(value):
    if isinstance(value, bytes):
        return value.hex()
    return value


def transactions() -> dict:
    g1, g2 = key(1), key(2)
    identity = bytes(range(16))
    request = hashlib.sha256(b"a crossing request").digest()
    consent = hashlib.sha256(b"a consent").digest()
    companion = companion_tag(bytes(range(32)), "MDA AB123456")
    cases = [
        ("approve", b.DECISION, {"guardian": g1.public, "request": request, "identity": identity,
                                 "decision": "approve", "reason": 0}, [1], 7),
        ("deny, safety concern", b.DECISION, {"guardian": g2.public, "request": request, "identity": identity,
                                              "decision": "deny", "reason": 5}, [2], 2**63 - 1),
        ("consent, any destination, two guardians", b.GRANT_CONSENT,
         {"identity": identity, "not_before": 1_767_225_600_000, "not_after": 1_768_435_200_000,
          "direction": "any", "destination": None, "companion": None, "uses": 1}, [1, 2], 123456789),
        ("consent to RO with a companion", b.GRANT_CONSENT,
         {"identity": identity, "not_before": 1_767_225_600_000, "not_after": 1_767_312_000_000,
          "direction": "exit", "destination": "RO", "companion": companion, "uses": 3}, [2], 0),
        ("revoke a consent", b.REVOKE_CONSENT, {"guardian": g1.public, "consent": consent, "identity": identity},
         [1], 2**32),
    ]
    out = []
    for name, kind, fields, signers, nonce in cases:
        body = b.BODIES[kind].cls(**fields)
        tx = TxFactory(CHAIN_ID).make(kind, body, [key(i) for i in signers], nonce=nonce)
        out.append({
            "name": name, "kind": kind, "fields": {k: _jsonable(v) for k, v in fields.items()},
            "nonce": str(nonce), "signers": [seed(i).hex() for i in signers],
            "id": tx.id.hex(), "sign_bytes": sign_bytes(DOMAIN_TX, CHAIN_ID, tx.id).hex(), "raw": tx.raw.hex(),
        })
    return {"chain_id": CHAIN_ID, "keys": [{"seed": seed(i).hex(), "public": key(i).public.hex()} for i in (1, 2, 3)],
            "transactions": out}


def signed_requests() -> dict:
    k = key(3)
    cases = [
        ("a guardian's pending list", "GET", f"/v1/guardians/{k.public.hex()}/pending", b"", DOMAIN_READ),
        ("alerts with filters", "GET", "/v1/alerts?post=MD-LEU&since=1767225600000&limit=50", b"", DOMAIN_READ),
        ("the event stream", "GET", "/v1/events?heartbeat_ms=15000", b"", DOMAIN_SUBSCRIBE),
        ("a body", "POST", "/v1/identify", b'{"scan": "00ff"}', DOMAIN_READ),
    ]
    out = []
    for i, (name, method, path_qs, body, domain) in enumerate(cases):
        time_ms = 1_767_225_600_000 + i
        nonce = hashlib.sha256(b"nonce %d" % i).digest()[:16]
        digest = request_digest(method, path_qs, time_ms, nonce, k.public, body)
        headers = sign_request(k, CHAIN_ID, method, path_qs, body=body, domain=domain, time_ms=time_ms, nonce=nonce)
        out.append({"name": name, "method": method, "path_qs": path_qs, "body": body.hex(), "domain": domain,
                    "time_ms": time_ms, "nonce": nonce.hex(), "key_seed": seed(3).hex(), "digest": digest.hex(),
                    "sign_bytes": sign_bytes(domain, CHAIN_ID, digest).hex(), "headers": headers})
    return {"chain_id": CHAIN_ID, "requests": out}


def key_files() -> dict:
    """Key files as the CLI writes them (cheapest cost, so the browser test stays quick)."""
    out = []
    for i, passphrase in ((4, "correct horse battery staple"), (5, "păsărică în câmp")):
        doc = seal(key(i), passphrase.encode(), label=f"vector {i}", cost=MINIMAL)
        out.append({"passphrase": passphrase, "seed": seed(i).hex(), "public": key(i).public.hex(), "file": doc})
    return {"key_files": out}


def companion_tags() -> dict:
    pkey = bytes(range(32))
    docs = ["MDA AB123456", "mda ab-123.456", "ROU 0412/55", "ＭＤＡ１２３"]
    return {"pseudonym_key": pkey.hex(),
            "tags": [{"document": d, "normalised": normalise_document(d), "tag": companion_tag(pkey, d).hex()}
                     for d in docs]}


FILES = {
    "transactions.json": transactions,
    "signed_requests.json": signed_requests,
    "key_files.json": key_files,
    "companion_tags.json": companion_tags,
}


def main() -> None:
    VECTORS.mkdir(exist_ok=True)
    for name, make in FILES.items():
        doc = {"about": "generated by tests/web/make_vectors.py; checked by Python and browser tests", **make()}
        (VECTORS / name).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {VECTORS / name}")


if __name__ == "__main__":
    main()
