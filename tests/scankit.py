"""Looking for personal data in files, byte for byte: what an erasure must leave nowhere.

A value counts as found in a file if its raw bytes, its hex (lower case, as logs and JSON write
bytes), or LevelDB's escaped spelling of it (diagnostic logs) appear anywhere in the file.
"""

from __future__ import annotations

from pathlib import Path


def escaped(value: bytes) -> bytes:
    """How LevelDB's diagnostic log writes a key: printable ASCII as is, the rest as \\xNN."""
    return "".join(chr(c) if 32 <= c <= 126 else f"\\x{c:02x}" for c in value).encode()


def spellings(value: bytes) -> list[bytes]:
    return [value, value.hex().encode(), escaped(value)]


def files_holding(directory: Path, needles: dict[str, bytes]) -> list[str]:
    """``"NAME in PATH"`` for each needle found in a file below ``directory``."""
    found = []
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # a running LevelDB removed it meanwhile
        for name, value in needles.items():
            if any(form in data for form in spellings(value)):
                found.append(f"{name} in {path.relative_to(directory)}")
    return found
