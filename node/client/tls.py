"""Which certificate authorities a client trusts for nodes' TLS.

The system's trust store, plus every CA file named on the command line (``--ca FILE``), by a
devnet (``--devnet DIR``: its ``devnet.json`` names the CA it made), or in ``$CUSTOS_CA``
(files separated by the path separator). :func:`trust` adds one for the rest of the process;
:func:`client_context` builds the context every HTTP client of Custos uses, so all of them trust
the same authorities and verify host names.
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from ledger.errors import CustosError

_TRUSTED: list[Path] = []
_CONTEXTS: dict[tuple[Path, ...], ssl.SSLContext] = {}


class UntrustedCA(CustosError):
    """A CA file named to be trusted cannot be read as one (a usage error: exit 2)."""

    code = "input"


def trust(ca_file: str | Path) -> None:
    """Trust ``ca_file`` (PEM) for the rest of this process."""
    path = Path(ca_file).resolve()
    if path not in _TRUSTED:
        _TRUSTED.append(path)


def trusted() -> list[Path]:
    """The CA files trusted besides the system's: those :func:`trust` added, then $CUSTOS_CA."""
    env = [Path(p).resolve() for p in os.environ.get("CUSTOS_CA", "").split(os.pathsep) if p]
    return _TRUSTED + [p for p in env if p not in _TRUSTED]


def client_context() -> ssl.SSLContext:
    """A verifying client context: the system's CAs and :func:`trusted` ones (built once for
    each set of trusted files)."""
    paths = tuple(trusted())
    context = _CONTEXTS.get(paths)
    if context is None:
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        for path in paths:
            try:
                context.load_verify_locations(cafile=str(path))
            except (OSError, ssl.SSLError) as exc:
                raise UntrustedCA(f"cannot use {path} as a CA certificate: {exc}") from None
        _CONTEXTS[paths] = context
    return context


def urlopen(url: str | urllib.request.Request, *, timeout: float, **kwargs: Any):
    """``urllib.request.urlopen`` trusting the same CAs as every other client here."""
    return urllib.request.urlopen(url, timeout=timeout, context=client_context(), **kwargs)
