# Sourced by the other scripts: make sure a virtual environment with Custos installed exists.
# VENV (default .venv) chooses where; the install is redone only when pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup 1/2] creating a virtual environment in $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.custos-installed"
# installed again after pyproject.toml changes, or the C source of the state tree's walk (which
# the install compiles)
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/ledger/state/_smt_native.c" -nt "$stamp" ]; then
  # the first time only (and after pyproject.toml changes): about 30 s; each package is named as it comes
  echo "[setup 2/2] installing Custos and its dependencies into $VENV (first run only)" >&2
  started=$SECONDS
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -e "$ROOT[test]" 2>&1 \
      | { grep --line-buffered -E '^(Collecting|Installing|Successfully|ERROR|error)' || true; } \
      | sed -u 's/^/  /' >&2; then
    echo "installation failed: see the lines above" >&2
    exit 1
  fi
  echo "[setup] done in $((SECONDS - started)) s" >&2
  touch "$stamp"
fi
