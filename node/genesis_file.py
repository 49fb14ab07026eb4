"""Reading the genesis file an operator was given (the format: :mod:`ledger.genesis`)."""

from __future__ import annotations

from pathlib import Path

from ledger.errors import DecodeError
from ledger.genesis import Genesis, genesis_from_toml


def load_genesis(path: str | Path) -> Genesis:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DecodeError(f"cannot read genesis file: {exc.strerror}", str(path)) from None
    return genesis_from_toml(data, str(path))
