"""Node configuration: a TOML file validated with pydantic (see ``configs/node.example.toml``).

Relative paths in the file are taken relative to the file's own directory, so a node directory
can be moved as a whole.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ledger.errors import CustosError
from node.keyfile import read_bounded, read_passphrase_file


class ConfigError(CustosError):
    code = "config"


def check_hostport(value: str) -> str:
    """``value`` if it is a listening or dialling address ``HOST:PORT`` (``[::1]:PORT`` for IPv6,
    the port 0..65535 in ASCII digits); else a ValueError saying what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080; a port is 0..65535)")
    if (host.startswith("[") or host.endswith("]")) and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"{value!r} is not HOST:PORT (an IPv6 host is written [::1])")
    return value


HostPort = Annotated[str, AfterValidator(check_hostport)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSection(_Strict):
    name: str = Field(min_length=1, max_length=64)
    data_dir: Path
    genesis: Path
    key_file: Path
    #: file holding the key file's passphrase; if absent, $CUSTOS_PASSPHRASE_FILE names one, else
    #: $CUSTOS_PASSPHRASE holds it
    passphrase_file: Path | None = None
    #: a validator signs votes if its key is in the validator set; an observer never signs
    role: str = Field(default="validator", pattern="^(validator|observer)$")


class ApiSection(_Strict):
    listen: HostPort = "127.0.0.1:8700"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_batch_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    #: how long a submit-and-wait may wait for the commit
    max_wait_ms: int = Field(default=30_000, ge=100, le=600_000)
    #: validity window of a signed read request (timestamp skew allowed either way)
    read_window_ms: int = Field(default=60_000, ge=1000, le=3_600_000)
    #: signed requests one key may make within a validity window (its share of the replay cache)
    replay_per_key: int = Field(default=10_000, ge=10, le=10_000_000)
    #: /readyz answers 503 once the last block's time is older than this (catching up, or no commits)
    ready_max_block_age_ms: int = Field(default=30_000, ge=100, le=86_400_000)
    #: API connections open at once (lowered to fit the open-file limit: node/edge/fdbudget.py)
    max_connections: int = Field(default=1024, ge=16, le=65_536)
    #: a connection must start its next request within idle_timeout_ms, send that request's
    #: headers within header_timeout_ms of its first byte, and its body within body_timeout_ms
    idle_timeout_ms: int = Field(default=60_000, ge=100, le=600_000)  # past clients' keep-alive (aiohttp: 15 s)
    header_timeout_ms: int = Field(default=5_000, ge=100, le=600_000)
    body_timeout_ms: int = Field(default=15_000, ge=100, le=600_000)
    #: TLS: the API's certificate (PEM, with any intermediate CAs) and its private key (PEM);
    #: with both set the API speaks HTTPS only (node/tls.py)
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: name both, or neither")
        return self


class Peer(_Strict):
    address: HostPort
    key: str = Field(pattern="^[0-9a-f]{64}$")


class P2PSection(_Strict):
    listen: HostPort = "127.0.0.1:8800"
    peers: list[Peer] = []
    #: keys (hex) that may connect in without being dialled, e.g. observer nodes; the
    #: validators of the coming height and the configured peers are always admitted
    allow: list[Annotated[str, Field(pattern="^[0-9a-f]{64}$")]] = []
    #: must carry the largest proposal (a block of up to 8 MiB and its envelope)
    max_frame_bytes: int = Field(default=16 * 1024 * 1024, ge=9 * 1024 * 1024, le=64 * 1024 * 1024)
    #: messages per second a single peer may send before it is throttled
    peer_rate: int = Field(default=20_000, ge=10)
    reconnect_min_ms: int = Field(default=200, ge=10)
    reconnect_max_ms: int = Field(default=5_000, ge=100)


class ConsensusSection(_Strict):
    timeout_propose_ms: int = Field(default=1500, ge=10)
    timeout_propose_delta_ms: int = Field(default=500, ge=0)
    timeout_prevote_ms: int = Field(default=500, ge=10)
    timeout_prevote_delta_ms: int = Field(default=250, ge=0)
    timeout_precommit_ms: int = Field(default=500, ge=10)
    timeout_precommit_delta_ms: int = Field(default=250, ge=0)
    #: an idle chain makes an empty block at most this often (expiries need block time to move)
    heartbeat_ms: int = Field(default=5_000, ge=10)
    #: after a commit, wait this long for more transactions before proposing the next block
    block_interval_ms: int = Field(default=200, ge=0)
    #: how far a proposed block time may differ from the local clock before it is refused
    max_clock_drift_ms: int = Field(default=10_000, ge=100)
    #: re-send own messages of the current height this often (liveness under message loss)
    rebroadcast_ms: int = Field(default=1_000, ge=50)
    #: send this node's client transactions to the peers in one batch per this long at most (after
    #: a quiet spell without waiting, otherwise gathered until the time is up); 0: every turn
    tx_gossip_ms: int = Field(default=25, ge=0, le=1_000)
    #: processes checking the signatures of block transactions this node's mempool did not admit
    #: (node/sigcheck.py); absent: one fewer than the cores; 0: checked in the node's own process
    signature_workers: int | None = Field(default=None, ge=0, le=64)


class MempoolSection(_Strict):
    max_txs: int = Field(default=100_000, ge=10)
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)


class StateSyncSection(_Strict):
    """Joining from a snapshot of a recent state instead of replaying from genesis
    (docs/adr/0007-state-sync.md), and serving snapshots to nodes that join that way."""

    #: a node whose data directory holds no chain yet joins from a snapshot its peers offer
    #: (``custos node start --state-sync`` does the same); it holds no blocks before that height
    join: bool = False
    #: offer snapshots to peers that join by state sync
    serve: bool = True
    #: blocks between two snapshots offered (each is planned from a full read of the state)
    interval: int = Field(default=1000, ge=1)
    #: how long a joining node waits for offers, headers and chunks before it gives up
    wait_s: float = Field(default=120.0, ge=1.0, le=3600.0)


class MetricsSection(_Strict):
    #: the Prometheus/OpenMetrics listener (GET /metrics, /readyz, /healthz), e.g. "127.0.0.1:9700";
    #: absent: none (the API still serves /metrics and /readyz)
    listen: HostPort | None = None


class LogSection(_Strict):
    #: "text" for people, "json" for one JSON object per line (log collectors)
    format: str = Field(default="text", pattern="^(text|json)$")
    #: least severe level written; "info" writes one line per committed block
    level: str = Field(default="info", pattern="^(debug|info|warning|error)$")


class AccessLogSection(_Strict):
    """The access log of reads of children's records (docs/ACCESS-LOG.md)."""

    #: how often a grown log's root is committed to the chain (the window in which an operator
    #: could rewrite the newest entries unseen)
    checkpoint_ms: int = Field(default=2_000, ge=100, le=3_600_000)


class IdentifySection(_Strict):
    """An enrolment authority's node: serve ``POST /v1/identify`` from its gallery."""

    #: the authority's gallery file (written by ``custos enrol child --gallery``)
    gallery: Path
    #: the authority's key file (it seals the gallery); its passphrase is the node's
    key_file: Path


class NodeConfig(_Strict):
    node: NodeSection
    api: ApiSection = ApiSection()
    p2p: P2PSection = P2PSection()
    consensus: ConsensusSection = ConsensusSection()
    mempool: MempoolSection = MempoolSection()
    metrics: MetricsSection = MetricsSection()
    statesync: StateSyncSection = StateSyncSection()
    log: LogSection = LogSection()
    access_log: AccessLogSection = AccessLogSection()
    identify: IdentifySection | None = None

    def passphrase(self) -> bytes:
        if self.node.passphrase_file is not None:
            try:
                return read_passphrase_file(self.node.passphrase_file)
            except OSError as exc:
                raise ConfigError(f"cannot read passphrase file {self.node.passphrase_file}: {exc.strerror}") from None
        path = os.environ.get("CUSTOS_PASSPHRASE_FILE")  # a container secret, a systemd credential
        if path:
            try:
                return read_passphrase_file(path)
            except OSError as exc:
                raise ConfigError(f"cannot read $CUSTOS_PASSPHRASE_FILE {path}: {exc.strerror}") from None
        env = os.environ.get("CUSTOS_PASSPHRASE")
        if env is None:
            raise ConfigError("no passphrase: set node.passphrase_file, $CUSTOS_PASSPHRASE_FILE or "
                              "$CUSTOS_PASSPHRASE")
        return os.fsencode(env)  # its very bytes, as a passphrase file gives them (UTF-8 or not)


#: the path settings of each section, taken relative to the config file's directory
_PATHS = {"node": ("data_dir", "genesis", "key_file", "passphrase_file"), "api": ("tls_cert", "tls_key"),
          "identify": ("gallery", "key_file")}


def _resolve(doc: dict, base: Path) -> dict:
    out = {**doc, "node": dict(doc.get("node", {}))}
    for section, names in _PATHS.items():
        if not isinstance(out.get(section), dict):
            continue
        values = out[section] = dict(out[section])
        for name in names:
            if isinstance(values.get(name), str) and not os.path.isabs(values[name]):
                values[name] = str(base / values[name])
    return out


#: the largest node config read (one is a few KiB; /dev/zero is refused, not read to the end)
MAX_CONFIG_BYTES = 1 << 20


def load_config(path: str | Path) -> NodeConfig:
    path = Path(path)
    try:
        doc = tomllib.loads(read_bounded(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a node config: not UTF-8 text ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return NodeConfig.model_validate(_resolve(doc, path.parent.resolve()))
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{path} is not a valid node config:\n" + "\n".join(lines)) from None


def split_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)
