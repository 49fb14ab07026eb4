"""``custos devnet demo``: the whole crossing story, played against a running devnet.

The council registers an enrolment authority, a border post, its terminal and an auditor; a
child is enrolled from an eye scan with two guardians (both must approve, any denial vetoes);
the terminal records an exit; both guardians are alerted over their own signed event streams;
one approves (still pending), the other approves (permitted). The guardians then give a travel
consent for the way back, which lets the entry through at once. An attempt nobody answers
expires and raises an alert the authority can list. Finally the auditor the council registered
verifies the chain with `custos audit verify` and proves the first crossing's inclusion with
`custos audit prove`, signing its reads with its key (nodes serve transactions' bytes only to
integrity readers); an audit without a key is refused.

Each step prints what a person would want to see and checks what should have happened; the
demo stops at the first step that misbehaves and exits non-zero (1; 3 if no node answers).
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ledger.crypto.keys import SigningKey
from ledger.privacy.tags import companion_tag
from ledger.tx.bodies import DAY_MS
from node import devnet
from node.access.purpose import Purpose
from node.client.cards import CardKeys, enrol_scans, new_pseudonym_key, seal_card, synthetic_eye, unlock_card
from node.client.guardian import GuardianClient
from node.client.http import NodeClient, NodeUnreachable, ProblemError
from node.client.queue import DurableQueue
from node.client.signed import SignedClient, StreamEvent
from node.client.terminal import TerminalClient, describe
from node.client.txs import TxFactory
from node.keyfile import MINIMAL, load_key_file, write_key_file

DEADLINE_MS = 15_000  # the demo child's policy: guardians have 15 s (a real policy: hours)
STEP_TIMEOUT_S = 30.0
EXPIRY_TIMEOUT_S = DEADLINE_MS / 1000 + 60.0


class StepFailed(Exception):
    pass


def _now() -> int:
    return time.time_ns() // 1_000_000


def _iso(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


class Demo:
    def __init__(self, directory: Path, out=print) -> None:
        self.dir = Path(directory)
        self.out = out
        doc = devnet.describe(self.dir)
        self.urls = [n.url for n in devnet.load(self.dir)]  # trusts the devnet's CA
        self.ca = devnet.ca_file(self.dir)
        self.genesis_hash = doc.get("genesis_hash")
        passphrase = (self.dir / "passphrase").read_bytes().rstrip(b"\r\n")
        self.council = [load_key_file(self.dir / p, passphrase) for p in doc["council"]]
        self.step_no = 0

    # ------------------------------------------------------------------ printing
    def step(self, title: str) -> None:
        self.step_no += 1
        self.out("")
        self.out(f"== {self.step_no}. {title}")

    def say(self, line: str) -> None:
        self.out(f"   {line}")

    def ok(self, line: str) -> None:
        self.out(f"   ok: {line}")

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            raise StepFailed(what)
        self.ok(what)

    # ------------------------------------------------------------------ the story
    async def run(self) -> None:
        async with NodeClient(self.urls, timeout_s=15) as node:
            self.node = node
            await self._network()
            await self._register()
            await self._enrol()
            g1 = GuardianClient(self.urls, self.guardians[0], chain_id=self.chain_id)
            g2 = GuardianClient(self.urls, self.guardians[1], chain_id=self.chain_id)
            with tempfile.TemporaryDirectory(prefix="custos-demo-terminal-") as tdir:
                terminal = TerminalClient(key=self.terminal, chain_id=self.chain_id, post=self.post,
                                          queue=DurableQueue(Path(tdir) / "queue"), urls=self.urls)
                try:
                    await self._with_watchers(g1, g2, terminal)
                finally:
                    await terminal.close()
                    await g1.close()
                    await g2.close()
            await self._audit()

    async def _network(self) -> None:
        self.step("The network")
        status = await self.node.status()
        self.chain_id = status["chain_id"]
        self.txs = TxFactory(self.chain_id)
        self.say(f"chain {self.chain_id} at height {status['height']}; {len(self.urls)} node(s): "
                 + ", ".join(self.urls))
        if self.genesis_hash:
            self.check(status["genesis_hash"] == self.genesis_hash, "the nodes run this devnet's genesis")

    async def _submit(self, tx, what: str) -> dict:
        try:
            result = await self.node.submit(tx.raw, wait=True, timeout_ms=int(STEP_TIMEOUT_S * 1000))
        except ProblemError as exc:
            raise StepFailed(f"{what} was refused: {exc.diagnostics()}") from None
        if result.get("status") != "committed":
            raise StepFailed(f"{what} did not commit within {STEP_TIMEOUT_S:.0f} s")
        return result

    async def _register(self) -> None:
        self.step("The council registers an enrolment authority, a border post, its terminal and an auditor")
        self.authority, self.terminal, self.auditor = (SigningKey.generate() for _ in range(3))
        self.post = f"MD-{secrets.token_hex(2).upper()}"
        council = self.council[:2]
        self.say(f"council members signing: {len(council)} of {len(self.council)}")
        for tx, what in (
            (self.txs.register_authority(council, self.authority.public, "Chisinau civil registry"),
             f"enrolment authority {self.authority.public.hex()[:16]}"),
            (self.txs.register_post(council, self.post, "Leuseni road crossing"), f"border post {self.post}"),
            (self.txs.register_terminal(council, self.terminal.public, self.post, "booth 1"),
             f"terminal {self.terminal.public.hex()[:16]} at {self.post}"),
            (self.txs.register_auditor(council, self.auditor.public, "independent auditor"),
             f"auditor {self.auditor.public.hex()[:16]}"),
        ):
            result = await self._submit(tx, what)
            self.ok(f"{what} registered at height {result['height']}")

    async def _enrol(self) -> None:
        self.step("An enrolment authority enrols a child with two guardians (2 of 2 must approve, any denial vetoes)")
        captures = synthetic_eye(secrets.randbits(32), rescans=3, captures=3, rescan_shift=5)
        self.rescans = captures[3:]
        enrolled = enrol_scans(captures[:3])
        biometric = enrolled.key
        # the card is sealed to a card-opening key that terminals (and the authority) hold
        card_key = SigningKey.generate()
        self.card_keys = CardKeys.from_signing_keys([card_key])
        self.identity = os.urandom(16)
        self.pseudonym_key = new_pseudonym_key()  # on the card and in the guardians' ward files
        self.card = seal_card(self.identity, enrolled.helper_bytes, self.pseudonym_key,
                              card_key.public)
        self.guardians = [SigningKey.generate(), SigningKey.generate()]
        tx = self.txs.enrol(self.authority, biometric, self.identity, majority_day=_now() // DAY_MS + 10 * 365,
                            guardians=[g.public for g in self.guardians], approvals=2, deadline_ms=DEADLINE_MS,
                            veto=True)
        result = await self._submit(tx, "the enrolment")
        self.say(f"child {self.identity.hex()} (a pseudonymous id: no name, no birth date on the chain)")
        self.say(f"biometric commitment {biometric.public.hex()[:16]}... from 3 captures; the card holds "
                 f"{len(bytes.fromhex(self.card['sealed']))} sealed bytes (helper data only a card-opening key "
                 "reveals), the chain no template")
        self.say(f"guardians {self.guardians[0].public.hex()[:16]} and {self.guardians[1].public.hex()[:16]}; "
                 f"they have {DEADLINE_MS // 1000} s to decide")
        self.ok(f"enrolled at height {result['height']}")

    async def _with_watchers(self, g1: GuardianClient, g2: GuardianClient, terminal: TerminalClient) -> None:
        self.step("Both guardians start watching (signed event streams) and the terminal follows its requests")
        inboxes: list[asyncio.Queue[StreamEvent]] = [asyncio.Queue(), asyncio.Queue()]
        tinbox: asyncio.Queue[StreamEvent] = asyncio.Queue()

        async def pump(stream, inbox) -> None:
            async for ev in stream:
                inbox.put_nowait(ev)

        tasks = [asyncio.create_task(pump(g.watch(heartbeat_ms=5_000), q))
                 for g, q in zip((g1, g2), inboxes, strict=True)]
        tasks.append(asyncio.create_task(pump(terminal.events(heartbeat_ms=5_000), tinbox)))
        try:
            for name, inbox in (("guardian 1", inboxes[0]), ("guardian 2", inboxes[1]), ("terminal", tinbox)):
                ev = await self._next(inbox, lambda e: e.type == "sync", f"{name}'s stream to open")
                self.ok(f"{name} is connected (live from height {ev.data.get('height')})")
            await self._approved_exit(g1, g2, terminal, inboxes, tinbox)
            await self._consented_entry(g1, g2, terminal, tinbox)
            await self._expired_attempt(terminal, inboxes, tinbox)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            for t in tasks:  # a refused subscription is a failed step, not a silent one
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise StepFailed(f"an event stream failed: {t.exception()}")

    async def _next(self, inbox: asyncio.Queue, match, what: str, timeout_s: float = STEP_TIMEOUT_S) -> StreamEvent:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepFailed(f"waited {timeout_s:.0f} s for {what}")
            try:
                ev = await asyncio.wait_for(inbox.get(), left)
            except TimeoutError:
                raise StepFailed(f"waited {timeout_s:.0f} s for {what}") from None
            if match(ev):
                return ev

    async def _cross(self, terminal: TerminalClient, direction: str, destination: str, scan: int,
                     companion: bytes | None = None) -> bytes:
        code, mask = self.rescans[scan]
        unlocked = unlock_card(code, mask, self.card, self.card_keys)
        key = unlocked.key
        self.say(f"the scan matched turned {unlocked.shift:+d} angular positions (a head tilt)")
        self.say(f"a fresh scan unlocks the card: the terminal signs with the child's key {key.public.hex()[:16]}...")
        entry, delivery = await terminal.cross(key, self.identity, direction=direction, destination=destination,
                                               companion=companion)
        if any(e.request_id == entry.request_id for e, _, _ in delivery.refused):
            raise StepFailed(f"the request was refused: {delivery.refused}")
        if delivery.error:
            raise StepFailed(f"the request could not be delivered: {delivery.error}")
        self.ok(f"request {entry.request_id.hex()} saved in the outbox and delivered ({direction}, {destination})")
        return entry.request_id

    async def _approved_exit(self, g1, g2, terminal, inboxes, tinbox) -> None:
        self.step("The terminal records the child's exit; the guardians are alerted")
        rid = await self._cross(terminal, "exit", "RO", 0)
        self.first_request = rid
        for i, inbox in enumerate(inboxes, 1):
            ev = await self._next(inbox, lambda e: e.type == "pending" and e.data.get("id") == rid.hex(),
                                  f"guardian {i}'s alert")
            lag = ev.received_ms - ev.data.get("committed_ms", ev.received_ms)
            self.ok(f"guardian {i} alerted {lag} ms after the commit: child {ev.data['identity'][:16]}..., post "
                    f"{ev.data['post']} ({ev.data['post_label']}), {ev.data['direction']} to "
                    f"{ev.data['destination']}, companion {ev.data['companion'] or 'none'}, "
                    f"event time {_iso(ev.data['event_time'])}")
        ev = await self._next(tinbox, lambda e: e.data.get("id") == rid.hex(), "the terminal's update")
        self.say(f"terminal shows: {describe(ev.data)}")
        self.check(ev.data["status"] == "pending", "the crossing waits for the guardians")

        self.step("Guardian 1 approves: still pending; guardian 2 approves: permitted")
        doc = await g1.request(rid)
        result = await g1.decide(doc, "approve")
        self.say(f"guardian 1 approved at height {result['height']}")
        ev = await self._next(tinbox, lambda e: e.data.get("id") == rid.hex(), "the terminal's update")
        self.say(f"terminal shows: {describe(ev.data)}")
        self.check(ev.data["status"] == "pending" and len(ev.data["approvals"]) == 1,
                   "one approval of two: still pending")
        result = await g2.decide(await g2.request(rid), "approve")
        self.say(f"guardian 2 approved at height {result['height']}")
        ev = await self._next(tinbox, lambda e: e.type == "closed" and e.data.get("id") == rid.hex(),
                              "the final decision at the terminal")
        self.say(f"terminal shows: {describe(ev.data)}")
        self.check(ev.data["status"] == "permitted", "the crossing is permitted")
        for i, inbox in enumerate(inboxes, 1):
            ev = await self._next(inbox, lambda e: e.type == "closed" and e.data.get("id") == rid.hex(),
                                  f"guardian {i}'s closing notice")
        self.ok("both guardians were told the outcome")

    async def _consented_entry(self, g1, g2, terminal, tinbox) -> None:
        self.step("The guardians give a travel consent for the return; the entry is permitted at once")
        now = _now()
        tx = await g1.consent_tx(self.identity, not_before=now - 60_000, not_after=now + 3 * 86_400_000,
                                 direction="entry", uses=1, co_signers=[self.guardians[1]])
        result = await self._submit(tx, "the consent")
        self.say(f"consent {tx.id.hex()[:16]}: entry only, 3 days, 1 use; signed by both guardians; "
                 f"height {result['height']}")
        rid = await self._cross(terminal, "entry", "MD", 1)
        ev = await self._next(tinbox, lambda e: e.type == "closed" and e.data.get("id") == rid.hex(),
                              "the decision at the terminal")
        self.say(f"terminal shows: {describe(ev.data)}")
        self.check(ev.data["status"] == "permitted" and ev.data.get("consent") == tx.id.hex(),
                   "permitted at once under the consent, which is referenced")

    async def _expired_attempt(self, terminal, inboxes, tinbox) -> None:
        self.step("An unconsented attempt with an unknown companion: nobody approves, it expires")
        companion = companion_tag(self.pseudonym_key, "UKR FT 554433")
        self.say(f"the companion's document goes on the chain only as a tag keyed with the card: {companion.hex()}")
        rid = await self._cross(terminal, "exit", "UA", 2, companion=companion)
        for i, inbox in enumerate(inboxes, 1):
            await self._next(inbox, lambda e: e.type == "pending" and e.data.get("id") == rid.hex(),
                             f"guardian {i}'s alert")
        self.ok(f"both guardians alerted; nobody answers within {DEADLINE_MS // 1000} s")
        ev = await self._next(tinbox, lambda e: e.type == "closed" and e.data.get("id") == rid.hex(),
                              "the expiry", EXPIRY_TIMEOUT_S)
        self.say(f"terminal shows: {describe(ev.data)}")
        self.check(ev.data["status"] == "expired", "the attempt expired")
        async with SignedClient(self.urls, self.authority, chain_id=self.chain_id,
                                purpose=Purpose("alert-follow-up")) as authority:
            alerts = (await authority.get("/v1/alerts", {"post": self.post}))["alerts"]
        mine = [a for a in alerts if a["request"] == rid.hex()]
        for a in mine:
            self.say(f"alert: {a['kind'].upper()} at post {a['post']}, {a['direction']}, child {a['identity']}, "
                     f"raised {_iso(a['time'])}")
        self.check(len(mine) == 1 and mine[0]["kind"] == "expired", "the enrolment authority sees the alert")
        async with SignedClient(self.urls, SigningKey.generate(), chain_id=self.chain_id,
                                purpose=Purpose("case-work")) as stranger:
            try:
                await stranger.get(f"/v1/identities/{self.identity.hex()}")
                refused = False
            except ProblemError as exc:
                refused = exc.status == 403
        self.check(refused, "a stranger's key is refused the child's record")

    # ------------------------------------------------------------------ audit
    async def _audit(self) -> None:
        self.step("The auditor verifies the chain, and the first crossing's inclusion, trusting no node")
        genesis = str(self.dir / "genesis.toml")
        url = self.node.current_url
        with tempfile.TemporaryDirectory(prefix="custos-demo-audit-") as tmp:
            # the auditor's key file (registered by the council above) signs the audit's reads
            key_file, passphrase_file = Path(tmp) / "auditor.key", Path(tmp) / "passphrase"
            secret = secrets.token_hex(16).encode()
            passphrase_file.write_bytes(secret)
            write_key_file(key_file, self.auditor, secret, label="independent auditor", cost=MINIMAL)
            key_args = ("--key", str(key_file), "--passphrase-file", str(passphrase_file))
            self.say(f"auditor {self.auditor.public.hex()[:16]} signs its reads: blocks carry every transaction, "
                     "so nodes serve them only to integrity readers")
            await self._audit_cli("an audit without a key is refused (exit 2)", "verify", "--node", url,
                                  "--no-progress", expect=2, echo=2)
            await self._audit_cli("the whole chain verifies from the pinned genesis",
                                  "verify", "--node", url, "--genesis", genesis, "--no-progress", *key_args)
            receipt = str(Path(tmp) / "receipt.json")
            await self._audit_cli("the first crossing is proven included in the chain (a receipt anyone can "
                                  "check offline)", "prove", self.first_request.hex(), "--node", url,
                                  "--genesis", genesis, "--out", receipt, *key_args)

    async def _audit_cli(self, what: str, *args: str, expect: int = 0, echo: int = 12) -> None:
        shown = [Path(a).name if a.endswith((".key", "passphrase")) else a for a in args]
        self.say("$ custos audit " + " ".join(shown))
        trust = ("--ca", str(self.ca)) if self.ca is not None else ()  # the devnet's CA, for its https:// nodes
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "node.cli", "audit", *args, *trust,
                                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), 300)
        except TimeoutError:
            proc.kill()
            raise StepFailed("the audit did not finish within 300 s") from None
        lines = output.decode(errors="replace").splitlines()
        for line in lines[:echo]:
            self.say("  " + line)
        if len(lines) > echo:
            self.say(f"  ... ({len(lines) - echo} more lines)")
        self.check(proc.returncode == expect, f"{what} (custos audit exited {proc.returncode})")


async def _run(directory: Path, out) -> int:
    demo = Demo(directory, out)
    try:
        await demo.run()
    except StepFailed as exc:
        out(f"   FAILED: {exc}")
        out("")
        out(f"demo FAILED at step {demo.step_no}")
        return 1
    except NodeUnreachable as exc:
        out(f"   FAILED: no node reachable ({exc}); is the devnet running (custos devnet up --dir {directory})?")
        return 3
    out("")
    out("demo complete: every step behaved")
    return 0


def run_demo(directory: Path, out=None) -> int:
    """Play the story against the devnet in ``directory``; the process exit code."""
    directory = Path(directory)
    if not (directory / "devnet.json").exists():
        print(f"custos: no devnet in {directory} (start one with: custos devnet up --dir {directory})",
              file=sys.stderr)
        return 2

    def printer(line: str) -> None:
        print(line, flush=True)

    return asyncio.run(_run(directory, out or printer))
