"""The guardian's client: watch wards' crossings, decide on them, give and revoke consents.

Everything a guardian reads is a signed read or a signed subscription with their own key; the
node serves only what concerns their wards. :meth:`GuardianClient.watch` yields each crossing
that needs a decision once (a reconnect replays pending ones; they are not repeated), followed
by decisions of the other guardians and final outcomes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence

from ledger.crypto.keys import SigningKey
from ledger.errors import PROBLEM_BASE
from ledger.genesis import Genesis
from ledger.tx.bodies import ANY, APPROVE, DENY
from ledger.tx.envelope import Transaction
from node.access.purpose import Purpose
from node.client.http import ProblemError
from node.client.light import LightClient
from node.client.proven import pending_for, request_status
from node.client.signed import SignedClient, StreamEvent
from node.client.txs import TxFactory


class GuardianClient:
    def __init__(self, urls: list[str] | str, key: SigningKey, *, chain_id: str | None = None,
                 timeout_s: float = 10.0, purpose: Purpose | None = None, genesis: Genesis | None = None,
                 genesis_hash: bytes | None = None, warn: Callable[[str], None] | None = None) -> None:
        self.key = key
        self.signed = SignedClient(urls, key, chain_id=chain_id, timeout_s=timeout_s,
                                   purpose=purpose or Purpose("guardian-review"))
        self.node = self.signed.node
        self.light = LightClient(self.signed, genesis=genesis, genesis_hash=genesis_hash, warn=warn)

    async def __aenter__(self) -> GuardianClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.signed.close()

    async def txs(self) -> TxFactory:
        return TxFactory(await self.signed.chain_id())

    # ------------------------------------------------------------------ reads
    async def whoami(self) -> dict:
        return await self.signed.get("/v1/access/whoami")

    async def request(self, request_id: bytes) -> dict:
        """The request's record proven at a certified header (node.client.light)."""
        doc = await request_status(self.light, request_id)
        if doc is None:
            raise ProblemError(404, {"type": PROBLEM_BASE + "not-found", "title": "no such crossing request",
                                     "detail": f"no crossing request {request_id.hex()} is on the chain"})
        return doc

    async def pending(self) -> list[dict]:
        """Requests waiting for this guardian, each proven, cross-checked between the nodes."""
        return await pending_for(self.light, self.key.public)

    async def identity(self, identity: bytes) -> dict:
        return await self.signed.get(f"/v1/identities/{identity.hex()}")

    async def history(self, identity: bytes, limit: int = 20) -> list[dict]:
        return (await self.signed.get(f"/v1/identities/{identity.hex()}/requests", {"limit": limit}))["requests"]

    async def consent(self, consent_id: bytes) -> dict:
        return await self.signed.get(f"/v1/consents/{consent_id.hex()}")

    # ------------------------------------------------------------------ the stream
    async def watch(self, *, heartbeat_ms: int = 15_000, on_state: Callable[[str], None] | None = None,
                    max_reconnects: int | None = None) -> AsyncIterator[StreamEvent]:
        """Alerts for the guardian's wards, as they commit, for ever.

        Yields ``pending`` (a crossing waiting for this guardian; each request once),
        ``decision`` (another guardian decided, still pending), ``closed`` (final status) and
        ``sync`` (the stream is live; ``complete`` false if events may have been missed while
        away, in which case the pending ones were replayed).
        """
        announced: set[str] = set()
        async for ev in self.signed.events(heartbeat_ms=heartbeat_ms, on_state=on_state,
                                           max_reconnects=max_reconnects):
            rid = ev.data.get("id")
            if ev.type == "pending" and isinstance(rid, str):
                if rid in announced:
                    continue
                announced.add(rid)
                if len(announced) > 100_000:
                    announced.clear()
            elif ev.type == "closed" and isinstance(rid, str):
                announced.discard(rid)
            yield ev

    # ------------------------------------------------------------------ decisions
    async def decide(self, request: dict, decision: str, reason: str = "unspecified", *, wait: bool = True,
                     timeout_ms: int = 30_000) -> dict:
        """Approve or deny the request ``request`` (a document from :meth:`request`)."""
        if decision not in (APPROVE, DENY):
            raise ValueError("decision is 'approve' or 'deny'")
        txs = await self.txs()
        tx = txs.decide(self.key, bytes.fromhex(request["id"]), bytes.fromhex(request["identity"]), decision, reason)
        return await self.submit(tx, wait=wait, timeout_ms=timeout_ms)

    async def submit(self, tx: Transaction, *, wait: bool = True, timeout_ms: int = 30_000) -> dict:
        return await self.node.submit(tx.raw, wait=wait, timeout_ms=timeout_ms)

    # ------------------------------------------------------------------ consents
    async def consent_tx(self, identity: bytes, *, not_before: int, not_after: int, direction: str = ANY,
                         destination: str | None = None, companion: bytes | None = None, uses: int = 1,
                         co_signers: Sequence[SigningKey] = ()) -> Transaction:
        """A travel consent signed by this guardian (and ``co_signers``); the policy decides how
        many guardians must sign before it is valid (see :func:`node.cli.options` for co-signing
        through a file)."""
        txs = await self.txs()
        return txs.grant_consent([self.key, *co_signers], identity, not_before=not_before, not_after=not_after,
                                 direction=direction, destination=destination, companion=companion, uses=uses)

    async def revoke(self, consent_id: bytes, *, wait: bool = True) -> dict:
        consent = await self.consent(consent_id)
        txs = await self.txs()
        tx = txs.revoke_consent(self.key, consent_id, bytes.fromhex(consent["identity"]))
        return await self.submit(tx, wait=wait)


def describe_request(doc: dict) -> list[str]:
    """What a guardian must see before approving: child, post, direction, companion, time."""
    companion = doc.get("companion")
    lines = [
        f"crossing request {doc['id']}",
        f"  child        {doc['identity']}",
        f"  post         {doc['post']}" + (f" ({doc['post_label']})" if doc.get("post_label") else ""),
        f"  direction    {doc['direction']}"
        + (f" (destination {doc['destination']})" if doc.get("destination") else ""),
        f"  companion    {companion if companion else 'none (travelling alone)'}",
        f"  event time   {iso(doc.get('event_time'))}",
        f"  status       {doc.get('status')}",
    ]
    if doc.get("status") == "pending":
        lines.append(f"  approvals    {len(doc.get('approvals', []))} of {doc.get('approvals_needed')} "
                     f"(decision due by {iso(doc.get('deadline'))})")
    if doc.get("consent"):
        lines.append(f"  consent      {doc['consent']}")
    return lines


def iso(ms: int | None) -> str:
    if not ms:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))
