"""Receipt files: one transaction's inclusion proof as JSON (see :mod:`ledger.audit.receipt`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ledger.audit.receipt import FORMAT, ReceiptError


def read_receipt(path: str | Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ReceiptError(f"cannot read receipt {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ReceiptError(f"receipt {path} is not JSON: {exc}") from None
    except RecursionError:  # arrays in arrays, deeper than the parser follows
        raise ReceiptError(f"receipt {path} is not a receipt: its JSON is nested too deeply") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ReceiptError(f"{path} is not a receipt (format {FORMAT!r} expected)")
    return doc
