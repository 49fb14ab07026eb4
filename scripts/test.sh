#!/usr/bin/env bash
# Run the test suite (about 5 minutes on 2 cores). Extra arguments go to pytest,
# e.g. `scripts/test.sh --run-slow` for the soak runs, or `scripts/test.sh tests/ledger`.
# Ends with the share of the lines of ledger/ and node/ the tests ran in this process
# (node processes the tests start are not measured); `--no-cov` skips the measurement.
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
rm -f .coverage
status=0
"$VENV/bin/python" -m pytest --cov --cov-report= "$@" || status=$?
if [ -f .coverage ]; then
  echo "coverage: $("$VENV/bin/python" -m coverage report --format=total)% of the lines of ledger/ and node/"
fi
exit "$status"
