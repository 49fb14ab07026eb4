"""Log output: plain text for people, or one JSON object per line for log collectors.

JSON lines carry ``time`` (ISO 8601 UTC, milliseconds), ``level``, ``logger``, ``message``
and, for records that have them, structured ``fields`` merged in (``committed block`` lines
carry ``height``, ``hash``, ``txs``, ``round``, ``proposer``, ``block_time``)::

    {"time":"2026-12-01T15:20:01.204Z","level":"info","logger":"custos.node","message":"committed block 12",
     "event":"block","height":12,"hash":"9f2c...","txs":40,"round":0,...}
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledger.chain import ExecutedBlock

FIELDS = "custos_fields"  # the ``extra`` key that carries a record's structured fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        doc = {"time": stamp, "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        doc.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"), default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: int, fmt: str = "text") -> None:
    """One handler on stderr for the whole process, text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.custos = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "custos", False)]:  # ours only (tests add theirs)
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class BlockLog:
    """One log line per committed block (at INFO), with its numbers as structured fields."""

    def __init__(self, store, logger: logging.Logger) -> None:
        self.store = store
        self.log = logger

    def __call__(self, executed: ExecutedBlock) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        header = executed.block.header
        commit = self.store.commit(header.height)
        fields = {"event": "block", "height": header.height, "hash": executed.hash.hex(), "txs": len(executed.txs),
                  "round": commit.round if commit is not None else None, "proposer": header.proposer.hex(),
                  "block_time": header.time}
        self.log.info("committed block %d (%d txs, round %s, hash %s)", header.height, len(executed.txs),
                      fields["round"], executed.hash.hex()[:16], extra={FIELDS: fields})
