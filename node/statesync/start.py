"""Before a node starts: join by state sync if asked to and its data directory holds no chain.

The join runs its own peer network on the node's p2p address and key, and stops it before the
node starts its own; the node then opens the store the join installed and follows the chain by
block sync from the snapshot's height.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ledger.errors import DecodeError
from node.config import NodeConfig
from node.genesis_file import load_genesis
from node.keyfile import load_key_file
from node.p2p.frames import STATE_SYNC
from node.p2p.network import PeerNetwork
from node.statesync.join import Joiner, JoinReport
from node.statesync.messages import Message, decode_message, encode_message

log = logging.getLogger("custos.statesync")

STAGING = "chain.statesync"


def chain_dir(config: NodeConfig) -> Path:
    return config.node.data_dir / "chain"


def holds_chain(config: NodeConfig) -> bool:
    path = chain_dir(config)
    return path.is_dir() and any(path.iterdir())


async def join_from_peers(config: NodeConfig) -> JoinReport | None:
    """Install a verified snapshot as the node's store; None if the node holds a chain already."""
    if holds_chain(config):
        log.info("state sync: %s holds a chain already; the node follows it from there", chain_dir(config))
        return None
    genesis = load_genesis(config.node.genesis)
    key = load_key_file(config.node.key_file, config.passphrase())
    staging = config.node.data_dir / STAGING
    shutil.rmtree(staging, ignore_errors=True)  # what a crash in an earlier join left
    config.node.data_dir.mkdir(parents=True, exist_ok=True)
    joiner: Joiner | None = None

    def on_message(peer: bytes, channel: int, payload: bytes) -> None:
        if channel != STATE_SYNC or joiner is None:
            return
        try:
            joiner.on_message(peer, decode_message(payload))
        except DecodeError as exc:
            log.debug("state sync: refused a message from %s: %s", peer.hex()[:12], exc)

    network = PeerNetwork.from_config(config.p2p, key, genesis.chain_id, genesis.hash, on_message=on_message,
                                      allowed=lambda k: k.hex() in config.p2p.allow)

    def send(peer: bytes, msg: Message) -> None:
        network.send(peer, STATE_SYNC, encode_message(msg))

    joiner = Joiner(genesis, send, network.connected_peers, wait_s=config.statesync.wait_s,
                    expected_peers=len(config.p2p.peers))
    log.info("state sync: joining chain %s from a snapshot its peers offer", genesis.chain_id)
    await network.start()
    try:
        store = await joiner.run(staging)
        store.close()
    finally:
        await network.stop()
    staging.rename(chain_dir(config))
    r = joiner.report
    log.info("state sync: installed the state at height %d (%d chunks, %d bytes, %d refused) in %.1f s; "
             "blocks follow by block sync", r.height, r.chunks, r.bytes, r.refused_chunks, r.seconds.get("total", 0))
    return r
