"""Signed requests: what a caller's signature binds, byte for byte.

A signed request carries five headers::

    Custos-Key        the caller's Ed25519 public key (64 hex digits)
    Custos-Time       the caller's clock, integer milliseconds since the Unix epoch (UTC)
    Custos-Nonce      16 random bytes (32 hex digits)
    Custos-Purpose    why the caller reads (node.access.purpose); absent only where no purpose
                      is asked for
    Custos-Signature  Ed25519 (128 hex digits) over sign_bytes(domain, chain_id, digest)

    digest = SHA-256(canonical msgpack of the array
        ["custos-request/2", node, METHOD, path, query, time, nonce, key, SHA-256(body), purpose])

    sign_bytes(domain, chain_id, digest)
           = canonical msgpack of ["custos-sig/1", domain, chain_id, digest]   (ledger.crypto.keys)

``node`` is the 32-byte public key of the node the request is sent to (its ``node_id`` in
``GET /v1/status``), so a request captured on its way to one node is refused by every other
node. ``path`` and ``query`` are the request target exactly as sent, percent-encoding included,
split at the first ``?`` (``query`` is ``""`` when there is none). ``purpose`` is the
``Custos-Purpose`` header exactly as sent (``""`` when absent), so the stated purpose is the
caller's signed word. ``domain`` is ``read-request`` for reads and ``subscribe`` for the event
stream: a read cannot be replayed as a subscription. The chain id binds the network.

Canonical msgpack here means: an array of 10 elements; text as ``str`` (UTF-8), byte strings as
``bin``, integers in their shortest form. ``tests/vectors/signed_read.json`` holds inputs and
the expected digest, sign bytes and signature for fixed keys: every implementation (the browser
apps too) tests against it.

A node accepts a time within its ``api.read_window_ms`` of its own clock, and each (key, nonce)
once within that window, also across restarts (node.api.replay).
"""

from __future__ import annotations

import hashlib
import secrets
import time

from ledger.crypto.keys import DOMAIN_READ, DOMAIN_SUBSCRIBE, SigningKey
from ledger.encoding import encode

HEADER_KEY = "Custos-Key"
HEADER_TIME = "Custos-Time"
HEADER_NONCE = "Custos-Nonce"
HEADER_PURPOSE = "Custos-Purpose"
HEADER_SIGNATURE = "Custos-Signature"
SIGNED_HEADERS = (HEADER_KEY, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE)
NONCE_BYTES = 16
NODE_ID_BYTES = 32
SCHEME = "custos-request/2"

__all__ = [
    "DOMAIN_READ",
    "DOMAIN_SUBSCRIBE",
    "HEADER_KEY",
    "HEADER_NONCE",
    "HEADER_PURPOSE",
    "HEADER_SIGNATURE",
    "HEADER_TIME",
    "NONCE_BYTES",
    "SCHEME",
    "digest_preimage",
    "request_digest",
    "sign_request",
    "split_target",
]


def split_target(path_qs: str) -> tuple[str, str]:
    """(path, query) of a request target as sent: split at the first ``?``."""
    path, _, query = path_qs.partition("?")
    return path, query


def digest_preimage(node: bytes, method: str, path: str, query: str, time_ms: int, nonce: bytes, key: bytes,
                    body: bytes, purpose: str) -> bytes:
    """The canonical bytes whose SHA-256 a signed request's signature covers."""
    if len(node) != NODE_ID_BYTES:
        raise ValueError(f"a node id is {NODE_ID_BYTES} bytes (the node's public key)")
    body_hash = hashlib.sha256(body).digest()
    return encode([SCHEME, node, method.upper(), path, query, time_ms, nonce, key, body_hash, purpose])


def request_digest(node: bytes, method: str, path: str, query: str, time_ms: int, nonce: bytes, key: bytes,
                   body: bytes = b"", purpose: str = "") -> bytes:
    """The digest a signed request's signature covers (see the module docstring)."""
    return hashlib.sha256(digest_preimage(node, method, path, query, time_ms, nonce, key, body, purpose)).digest()


def sign_request(key: SigningKey, chain_id: str, method: str, path_qs: str, *, node: bytes, body: bytes = b"",
                 purpose: str | None = None, domain: str = DOMAIN_READ, time_ms: int | None = None,
                 nonce: bytes | None = None) -> dict[str, str]:
    """The headers that make ``METHOD path_qs`` a request signed by ``key`` for the node ``node``.

    ``purpose`` is the ``Custos-Purpose`` value (node.access.purpose.Purpose.header()); the
    header is sent only when given, and signed either way."""
    t = time.time_ns() // 1_000_000 if time_ms is None else time_ms
    n = secrets.token_bytes(NONCE_BYTES) if nonce is None else nonce
    path, query = split_target(path_qs)
    digest = request_digest(node, method, path, query, t, n, key.public, body, purpose or "")
    headers = {
        HEADER_KEY: key.public.hex(),
        HEADER_TIME: str(t),
        HEADER_NONCE: n.hex(),
        HEADER_SIGNATURE: key.sign(domain, chain_id, digest).hex(),
    }
    if purpose:
        headers[HEADER_PURPOSE] = purpose
    return headers
