"""Authentication of signed requests: which key signed, is it fresh and unreplayed, what is it.

The scheme (what the signature binds: this node, method, path, query, body, purpose) is in
:mod:`node.access.signature`. This module checks it and answers *who* the caller is from the
committed state; what the caller may read is :mod:`node.api.policy`'s question.

A key is, from the state: a registered role (enrolment authority, terminal, auditor,
oversight), a council member, a node key (a validator of the coming height, or a peer or
observer this node's ``[p2p]`` config names), or a guardian (a key some child's record names);
else a stranger. Only keys that may read something are remembered in the replay cache: a
replayed request of a stranger earns the same 403 again, and strangers cannot fill the cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from ledger.crypto.keys import DOMAIN_READ, verify
from ledger.errors import CustosError
from ledger.rules.validators import validator_set_at
from ledger.state.records import COUNCIL, K_COUNCIL, KEY_ROLE, KeyRole, k_revoked, k_role, k_ward, load
from ledger.state.view import scan_prefix
from ledger.tx.bodies import ROLE_AUDITOR, ROLE_AUTHORITY, ROLE_OVERSIGHT, ROLE_TERMINAL
from node.access.purpose import COUNCIL as COUNCIL_ROLE
from node.access.purpose import GUARDIAN, NODE, BadPurpose, Purpose
from node.access.signature import (
    HEADER_KEY,
    HEADER_NONCE,
    HEADER_PURPOSE,
    HEADER_SIGNATURE,
    HEADER_TIME,
    NONCE_BYTES,
    SIGNED_HEADERS,
    request_digest,
    split_target,
)
from node.api.refusal import Refused
from node.api.replay import QuotaExceeded, ReplayCache
from node.app import NodeApp


@dataclass(frozen=True, slots=True)
class Caller:
    """The key that signed a request, what the state makes of it, and the purpose it stated.

    ``role`` is the registered role (None for guardians, council members, nodes, strangers);
    ``council``, ``node`` and ``guardian`` are set for keys without a role.
    """

    key: bytes
    role: KeyRole | None
    council: bool = False
    node: bool = False
    guardian: bool = False
    purpose: Purpose | None = None

    @property
    def is_authority(self) -> bool:
        return self.role is not None and self.role.role == ROLE_AUTHORITY

    @property
    def is_terminal(self) -> bool:
        return self.role is not None and self.role.role == ROLE_TERMINAL

    @property
    def is_auditor(self) -> bool:
        return self.role is not None and self.role.role == ROLE_AUDITOR

    @property
    def is_oversight(self) -> bool:
        return self.role is not None and self.role.role == ROLE_OVERSIGHT

    @property
    def reads_integrity(self) -> bool:
        """An integrity reader: may read every transaction's bytes (blocks, the block feed)."""
        return self.is_auditor or self.is_authority or self.council or self.node

    @property
    def post(self) -> str | None:
        return self.role.post if self.is_terminal and self.role is not None else None

    @property
    def role_name(self) -> str | None:
        """The role the access log names: a registered role, ``council``, ``node``, ``guardian``."""
        if self.role is not None:
            return self.role.role
        return COUNCIL_ROLE if self.council else NODE if self.node else GUARDIAN if self.guardian else None

    @property
    def may_read_something(self) -> bool:
        return self.role is not None or self.council or self.node or self.guardian

    def describe(self) -> str:
        return f"{self.role_name or 'key'} {self.key.hex()[:16]}"


class Authenticator:
    """Checks signed requests sent to the node whose public key is ``node_id``.

    ``node_keys`` are the keys this node's config names as peers or observers; together with the
    validators of the coming height they are node keys, which read integrity data.
    """

    def __init__(self, app: NodeApp, *, node_id: bytes, window_ms: int, replay: ReplayCache,
                 node_keys: Iterable[bytes] = ()) -> None:
        self.app = app
        self.node_id = node_id
        self.window_ms = window_ms
        self.replay = replay
        self.node_keys = frozenset(node_keys)

    @property
    def state(self):
        return self.app.store.state

    @staticmethod
    def is_signed(request: web.Request) -> bool:
        """Whether the request carries any of the signed-request headers (it may be malformed)."""
        return any(name in request.headers for name in SIGNED_HEADERS)

    def authenticate(self, request: web.Request, body: bytes = b"", domain: str = DOMAIN_READ) -> Caller:
        """Check the signed-request headers; return the caller or raise :class:`Refused`."""
        h = request.headers
        values = [h.get(name) for name in SIGNED_HEADERS]
        if all(v is None for v in values):
            raise Refused(401, "unsigned-request", "a signed request is needed",
                          f"send {HEADER_KEY}, {HEADER_TIME}, {HEADER_NONCE}, {HEADER_PURPOSE} and {HEADER_SIGNATURE}")
        key, time_ms, nonce, signature = _parse_headers(*values)
        stated = h.get(HEADER_PURPOSE, "")
        purpose = _parse_purpose(stated)
        now = self.app.clock_ms()
        if abs(now - time_ms) > self.window_ms:
            raise Refused(401, "stale-request", "request time outside the validity window",
                          f"signed at {time_ms}, node time {now}; at most {self.window_ms} ms apart",
                          server_time_ms=now)
        path, query = split_target(request.raw_path)
        digest = request_digest(self.node_id, request.method, path, query, time_ms, nonce, key, body, stated)
        if not verify(key, domain, self.app.chain_id, digest, signature):
            raise Refused(401, "bad-request-signature", "the request signature does not verify",
                          f"not signed by {key.hex()[:16]} for this request to node {self.node_id.hex()[:16]} "
                          f"on chain {self.app.chain_id}" + ("" if domain == DOMAIN_READ else f" (domain {domain})"),
                          node_id=self.node_id)
        if self.state.get(k_revoked(key)) is not None:
            raise Refused(403, "revoked-key", "the key was revoked", f"key {key.hex()[:16]} was revoked by the council")
        caller = self.identify(key, purpose)
        if caller.may_read_something:
            try:
                fresh = self.replay.add(key, nonce, time_ms + self.window_ms, now)
            except QuotaExceeded as exc:
                raise Refused(429, "too-many-requests", "too many signed requests from this key", str(exc)) from None
            if not fresh:
                raise Refused(401, "replayed-request", "this signed request was seen before",
                              "sign every request afresh (new time and nonce)")
        return caller

    def optional_caller(self, request: web.Request) -> Caller | None:
        """None for an anonymous request; the caller of a signed one (a bad signature is refused,
        never read as anonymous)."""
        return self.authenticate(request) if self.is_signed(request) else None

    # ---- what the state makes of a key
    def identify(self, key: bytes, purpose: Purpose | None = None) -> Caller:
        role = load(self.state, k_role(key), KEY_ROLE)
        if role is not None:
            return Caller(key, role, purpose=purpose)
        if self.is_council_member(key):
            return Caller(key, None, council=True, purpose=purpose)
        if self.is_node_key(key):
            return Caller(key, None, node=True, purpose=purpose)
        guardian = next(scan_prefix(self.state, k_ward(key)), None) is not None
        return Caller(key, None, guardian=guardian, purpose=purpose)

    def is_council_member(self, key: bytes) -> bool:
        council = load(self.state, K_COUNCIL, COUNCIL)
        return council is not None and key in council.members

    def is_node_key(self, key: bytes) -> bool:
        """A peer or observer of this node's config, or a validator of the coming height."""
        if key in self.node_keys:
            return True
        try:
            return key in validator_set_at(self.state, self.app.store.height + 1)
        except CustosError:
            return False


def _parse_headers(key_h: str | None, time_h: str | None, nonce_h: str | None,
                   sig_h: str | None) -> tuple[bytes, int, bytes, bytes]:
    def fail(detail: str) -> Refused:
        return Refused(400, "malformed-signed-request", "malformed signed request", detail)

    if key_h is None or time_h is None or nonce_h is None or sig_h is None:
        raise fail(f"all of {', '.join(SIGNED_HEADERS)} are needed")
    try:
        key, nonce, signature = bytes.fromhex(key_h), bytes.fromhex(nonce_h), bytes.fromhex(sig_h)
    except ValueError:
        raise fail("key, nonce and signature are hex") from None
    if len(key) != 32 or len(signature) != 64 or len(nonce) != NONCE_BYTES:
        raise fail(f"a key is 32 bytes, a nonce {NONCE_BYTES}, a signature 64")
    if not (time_h.isascii() and time_h.isdigit()) or len(time_h) > 16:
        raise fail(f"{HEADER_TIME} is integer milliseconds since the Unix epoch")
    return key, int(time_h), nonce, signature


def _parse_purpose(value: str) -> Purpose | None:
    if not value:
        return None
    try:
        return Purpose.parse(value)
    except BadPurpose as exc:
        raise Refused(400, "bad-purpose", "malformed purpose", str(exc)) from None
