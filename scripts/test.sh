#!/usr/bin/env bash
# Run the test suite (about 5 minutes on 2 cores). Extra arguments go to pytest,
# e.g. `scripts/test.sh --run-slow` for the soak runs, or `scripts/test.sh tests/ledger`.
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
