"""The light client: answers a client acts on are proven, or they are not answers.

It trusts the genesis it was pinned to (its hash, or the file) and nothing any node says. For
every answer it

1. follows the node's headers from the last header it trusts to the height of the answer
   (:mod:`ledger.light`: each link hashed, each validator-set change and the answer's header
   certified by more than 2/3 of the stake of the set in force, signatures verified);
2. checks each record proof of the answer against that header's state root
   (:mod:`ledger.state.proof`).

A node whose answer fails any check is treated as unreachable for that answer: the client says
which node and why, and asks the next one. When no node can prove the answer it raises
:class:`Unproven` (the commands exit 1). The trusted point can be kept in a file (the terminal
keeps ``trust.json`` in its directory), so a later run follows only the new headers; proofs from
below the height trusted when the client started are refused (a node cannot show an old state
as the current one to a client that saw a newer one).

Genesis pinning: ``genesis`` (the file) or ``genesis_hash`` (64 hex digits, e.g. written by
``custos terminal init`` after the operator compared it). Without either the client trusts the
first node's genesis on first use and says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.block import COMMIT, HEADER, Header
from ledger.encoding import decode
from ledger.errors import CustosError
from ledger.genesis import GENESIS, Genesis
from ledger.light import LightError, Step, Trusted, advance
from ledger.state.proof import RecordProof
from ledger.validators import ValidatorSet
from node.client.http import NodeUnreachable, ProblemError
from node.client.signed import SignedClient

log = logging.getLogger("custos.light")

TRUST_FORMAT = "custos-trust/1"
PAGE = 500


class _Failed(Exception):
    """One node did not prove its answer (the message says which and why)."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def give_up(failures: list[_Failed], what: str) -> Exception:
    """No node proved ``what``: unreachable if none answered at all, else :class:`Unproven`."""
    if failures and all(f.unreachable for f in failures):
        return NodeUnreachable("; ".join(str(f) for f in failures))
    return Unproven(f"no node could prove {what}: " + "; ".join(str(f) for f in failures))


class Unproven(CustosError):
    """No node could prove the answer (each answered without a valid proof, or not at all)."""

    code = "unproven"


@dataclass(frozen=True)
class Proven:
    """A verified answer: the header it is proven at, the node that proved it, the records."""

    height: int
    header: Header
    node: str
    records: list[RecordProof]
    body: dict


class LightClient:
    """Proven reads over ``signed`` (its nodes, its key for signed reads)."""

    def __init__(self, signed: SignedClient, *, genesis: Genesis | None = None, genesis_hash: bytes | None = None,
                 trust_file: Path | None = None, warn: Callable[[str], None] | None = None) -> None:
        self.signed = signed
        self.node = signed.node
        self.genesis = genesis
        self.genesis_hash = genesis.hash if genesis is not None else genesis_hash
        self.trust_file = trust_file
        self.warn = warn or (lambda line: log.warning("%s", line))
        self._trusted: Trusted | None = None
        self._floor = 0
        self._headers: dict[int, bytes] = {}  # height -> hash of headers verified in this session
        self.caught: list[str] = []  # what each node that failed to prove an answer did wrong

    # ------------------------------------------------------------------ trust
    async def trusted(self) -> Trusted:
        if self._trusted is None:
            self._trusted = self._load_trust() or await self._from_genesis()
            self._floor = self._trusted.height
        return self._trusted

    async def _from_genesis(self) -> Trusted:
        genesis = self.genesis
        if genesis is None:
            _, doc = await self.node.request("GET", "/v1/genesis", accept_msgpack=True)
            genesis = GENESIS.decode(doc["genesis"])
            if self.genesis_hash is None:
                self.warn(f"trusting genesis {genesis.hash.hex()} of chain {genesis.chain_id} on first use "
                          "(pin it: --genesis FILE or the genesis hash)")
            elif genesis.hash != self.genesis_hash:
                raise Unproven(f"{self.node.current_url} runs genesis {genesis.hash.hex()[:16]}, "
                               f"not the pinned {self.genesis_hash.hex()[:16]}")
        self.genesis, self.genesis_hash = genesis, genesis.hash
        return Trusted.from_genesis(genesis)

    def _load_trust(self) -> Trusted | None:
        if self.trust_file is None or not self.trust_file.exists():
            return None
        try:
            doc = json.loads(self.trust_file.read_text())
            if doc.get("format") != TRUST_FORMAT:
                raise ValueError("not a trust file")
            if self.genesis_hash is not None and bytes.fromhex(doc["genesis_hash"]) != self.genesis_hash:
                raise ValueError("of another genesis")
            self.genesis_hash = bytes.fromhex(doc["genesis_hash"])
            return Trusted(doc["chain_id"], int(doc["height"]), bytes.fromhex(doc["hash"]),
                           ValidatorSet.from_wire(decode(bytes.fromhex(doc["next_validators"]))),
                           bytes.fromhex(doc["state_root"]) if doc.get("state_root") else None)
        except (OSError, ValueError, KeyError, TypeError, CustosError) as exc:
            self.warn(f"ignoring trust file {self.trust_file} ({exc}); starting from genesis")
            return None

    def _save_trust(self, trusted: Trusted) -> None:
        if self.trust_file is None or self.genesis_hash is None:
            return
        doc = {"format": TRUST_FORMAT, "chain_id": trusted.chain_id, "genesis_hash": self.genesis_hash.hex(),
               "height": trusted.height, "hash": trusted.hash.hex(),
               "next_validators": trusted.next_validators.encode().hex(),
               "state_root": trusted.state_root.hex() if trusted.state_root else None}
        tmp = self.trust_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(doc) + "\n")
            tmp.replace(self.trust_file)
        except OSError as exc:
            self.warn(f"cannot keep the trusted header in {self.trust_file}: {exc.strerror}")

    # ------------------------------------------------------------------ headers
    async def _steps(self, first: int, last: int) -> list[Step]:
        _, doc = await self.node.request("GET", "/v1/light/headers", params={"from": first, "to": last},
                                         accept_msgpack=True)
        steps = []
        for item in doc["headers"]:
            nxt = item.get("next_validators")
            commit = COMMIT.decode(item["commit"]) if item.get("commit") else None
            steps.append(Step(HEADER.decode(item["header"]), commit,
                              None if nxt is None else ValidatorSet.from_wire(decode(nxt))))
        return steps

    async def verify_header(self, header: Header) -> None:
        """Raise :class:`LightError` unless ``header`` is the chain's header at its height,
        following the current node's headers from the trusted point (forwards or back)."""
        height = header.height
        if self._headers.get(height) == header.hash:
            return
        trusted = await self.trusted()
        if height < self._floor:
            raise LightError(f"height {height} is below the height {self._floor} this client already trusts")
        if height <= trusted.height:
            await self._back_to(header, trusted)
        else:
            while trusted.height < height:
                first = trusted.height + 1
                steps = await self._steps(first, min(height, first + PAGE - 1))
                if not steps:
                    raise LightError(f"the node gave no headers from {first}")
                trusted, found = advance(trusted, steps, target=height)
                for step in steps:
                    if step.header.height <= trusted.height:
                        self._headers[step.header.height] = step.header.hash
                if found is not None and found.hash != header.hash:
                    raise LightError(f"the header at {height} is not the certified one")
            self._trusted = trusted
            self._save_trust(trusted)
        if self._headers.get(height) != header.hash:
            raise LightError(f"the header at {height} is not the certified one")

    async def _back_to(self, header: Header, trusted: Trusted) -> None:
        """A header at or below the trusted height: the trusted header's prev_hash links reach it."""
        if header.height == trusted.height:
            if header.hash == trusted.hash:
                self._headers[header.height] = header.hash
            return
        steps = await self._steps(header.height, trusted.height)
        expect = trusted.hash
        for step in reversed(steps):
            if step.header.hash != expect:
                raise LightError(f"header {step.header.height} does not link to the trusted header")
            self._headers[step.header.height] = step.header.hash
            expect = step.header.prev_hash
        if not steps or steps[0].header.height != header.height:
            raise LightError(f"the node gave no header at {header.height}")

    # ------------------------------------------------------------------ proven reads
    async def prove(self, path: str, params: dict[str, Any] | None = None, *,
                    check: Callable[[Proven], object] | None = None, signed: bool = True) -> Proven | None:
        """Ask each node in turn for ``path`` until one proves its answer.

        ``check`` adds what the answer must show beyond valid proofs (the keys asked for,
        statuses, ...), raising :class:`LightError`. Returns None if every node that answered
        said 404 (nothing to prove); raises :class:`Unproven` if no node proved its answer.
        """
        failures: list[_Failed] = []
        not_found = 0
        start = self.node.current_index
        for attempt in range(len(self.node.urls)):
            try:
                proven = await self.prove_at(start + attempt, path, params, check=check, signed=signed)
            except _Failed as exc:
                failures.append(exc)
                continue
            if proven is None:
                not_found += 1
                continue
            return proven
        if not_found and not failures:
            return None
        if not_found:
            failures.append(_Failed(f"{not_found} node(s): not found"))
        raise give_up(failures, "the answer")

    async def prove_at(self, index: int, path: str, params: dict[str, Any] | None = None, *,
                       check: Callable[[Proven], object] | None = None, signed: bool = True) -> Proven | None:
        """One node's proven answer; None for a 404; raises :class:`_Failed` otherwise."""
        self.node.use(index)
        url = self.node.current_url
        try:
            if signed:
                body = await self.signed.get(path, params)
            else:
                _, body = await self.node.request("GET", path, params=params)
        except ProblemError as exc:
            if exc.status == 404:
                return None
            if exc.status in (401, 403, 400):
                raise  # the request itself is refused: another node would refuse it too
            raise _Failed(f"{url}: {exc.diagnostics()}") from None
        except NodeUnreachable as exc:
            raise _Failed(f"{url}: unreachable ({exc})", unreachable=True) from None
        try:
            proven = await self._verify(body, url)
            if check is not None:
                check(proven)
        except (CustosError, KeyError, TypeError, ValueError) as exc:
            self.refute(f"{url} answered without a valid proof: {exc}")
            raise _Failed(f"{url} answered without a valid proof: {exc}") from None
        return proven

    def refute(self, line: str) -> None:
        """Note a node caught answering what it cannot prove (or hiding what another proves)."""
        self.caught.append(line)
        self.warn(line + "; asking another node")

    async def _verify(self, body: Any, url: str) -> Proven:
        if not isinstance(body, dict):
            raise LightError("the answer is not a proof document")
        header = HEADER.decode(_raw(body["header"]))
        COMMIT.decode(_raw(body["commit"]))
        if header.height != body["height"]:
            raise LightError("the answer's header is for another height")
        if self.genesis is not None and header.chain_id != self.genesis.chain_id:
            raise LightError(f"the header is of chain {header.chain_id!r}")
        await self.verify_header(header)
        raws = [body["proof"]] if "proof" in body else list(body["proofs"])
        records = [RecordProof.decode(_raw(r)) for r in raws]
        for record in records:
            record.check(header.state_root)
        return Proven(header.height, header, url, records, body)


def _raw(value: Any) -> bytes:
    """Bytes from a msgpack answer (raw) or a JSON one (hex)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return bytes.fromhex(value)
    raise LightError("expected bytes in the proof document")


__all__ = ["LightClient", "Proven", "Unproven"]
