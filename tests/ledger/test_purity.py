"""The deterministic core reads no clock, no randomness, no file and no network.

Every node must compute the same state from the same blocks, and an auditor must be able to
replay them years later: the modules that execute blocks, and every project module they import,
may not import the standard library's clocks, randomness, processes, sockets or file system,
nor open files. The check reads the source (the import graph), so it holds for code paths the
tests never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: the state machine and the code that builds and checks blocks
CORE = ("ledger/state", "ledger/rules", "ledger/tx", "ledger/block.py", "ledger/chain.py",
        "ledger/encoding.py", "ledger/merkle.py", "ledger/hashing.py")

#: modules whose import means a clock, randomness, the file system, processes or the network
FORBIDDEN = {"time", "random", "secrets", "os", "socket", "pathlib", "io", "shutil", "tempfile", "glob",
             "subprocess", "multiprocessing", "threading", "asyncio", "signal", "select", "selectors",
             "datetime", "uuid", "urllib", "http", "ssl", "aiohttp", "plyvel", "sqlite3", "mmap"}

#: calls that read or write files, or draw randomness
FILE_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "urandom", "token_bytes"}


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, tree: ast.Module) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (functions included), made absolute."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = package[:len(package) - node.level + 1]
                base = ".".join([*prefix, base] if base else prefix)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # "from pkg import module"
    return out


def _closure() -> dict[str, tuple[Path, ast.Module, str]]:
    """Project modules reachable from the core: name -> (file, tree, the module that pulled it in)."""
    todo: list[tuple[Path, str]] = []
    for entry in CORE:
        p = ROOT / entry
        todo += [(f, "(core)") for f in sorted(p.rglob("*.py"))] if p.is_dir() else [(p, "(core)")]
    seen: dict[str, tuple[Path, ast.Module, str]] = {}
    while todo:
        path, via = todo.pop()
        name = _module_name(path)
        if name in seen:
            continue
        tree = ast.parse(path.read_text(), str(path))
        seen[name] = (path, tree, via)
        parts = name.split(".")
        for i in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__
            parent = _module_file(".".join(parts[:i]))
            if parent is not None:
                todo.append((parent, name))
        for imported in _imports(path, tree):
            if imported.split(".")[0] in ("ledger", "node"):
                target = _module_file(imported)
                if target is not None:
                    todo.append((target, name))
    return seen


def _violations() -> list[str]:
    found = []
    for name, (path, tree, via) in sorted(_closure().items()):
        where = f"{name} (imported by {via})"
        for imported in sorted(_imports(path, tree)):
            if imported.split(".")[0] in FORBIDDEN:
                found.append(f"{where} imports {imported}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                if called in FILE_CALLS:
                    found.append(f"{where} calls {called}() on line {node.lineno}")
    return found


def test_the_deterministic_core_does_no_io():
    assert _violations() == []


#: ledger/ modules that may do I/O: the LevelDB store and atomic file writes; the biometric
#: gallery of an enrolment authority and the random secret of a new card
IO_ALLOWED = ("ledger/storage", "ledger/biometrics")


def test_the_rest_of_the_ledger_reads_no_clock_and_no_file():
    # the auditor and the key modules: their files, clocks, processes and randomness live in node/
    found = []
    for path in sorted((ROOT / "ledger").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(IO_ALLOWED):
            continue
        tree = ast.parse(path.read_text(), str(path))
        found += [f"{relative} imports {name}" for name in sorted(_imports(path, tree))
                  if name.split(".")[0] in FORBIDDEN]
    assert found == []


def test_the_core_never_imports_the_node():
    assert not [name for name in _closure() if name.split(".")[0] == "node"]


def test_rejects_a_core_module_that_reads_the_clock(tmp_path, monkeypatch):
    # the check itself must see an offending import inside a function, through a relative import
    fake = tmp_path / "ledger"
    (fake / "rules").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "rules" / "__init__.py").write_text("from . import deadline\n")
    (fake / "rules" / "deadline.py").write_text("from ..helpers import now\n")
    (fake / "helpers.py").write_text("def now():\n    import time\n    return time.time()\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__, fromlist=["CORE"]), "CORE", ("ledger/rules",))
    assert _violations() == ["ledger.helpers (imported by ledger.rules.deadline) imports time"]
