#!/usr/bin/env bash
# Run the test suite (about 5 minutes on 2 cores). Extra arguments go to pytest,
# e.g. `scripts/test.sh --run-slow` for the soak runs, or `scripts/test.sh tests/ledger`.
# Tests run in TEST_WORKERS processes side by side (default 2: most of a process test's time is
# spent waiting for its nodes); TEST_WORKERS=0 runs them in this process, one after the other,
# which is the default with --run-slow (soak and WAN runs measure timings: they get the machine).
# With COVERAGE=1 (as CI runs it) it measures which lines of ledger/ and node/ the tests ran in
# this process (node processes the tests start are not measured) and ends with the total; the
# measurement costs about a third more CPU, so it is off by default.
source "$(dirname "$0")/_venv.sh"
source "$(dirname "$0")/_chromium.sh"
cd "$ROOT"
workers="${TEST_WORKERS:-2}"
for arg in "$@"; do
  if [ "$arg" = "--run-slow" ]; then workers="${TEST_WORKERS:-0}"; fi
done
set -- -n "$workers" "$@"
if [ "${COVERAGE:-0}" != "1" ]; then
  exec "$VENV/bin/python" -m pytest "$@"
fi
rm -f .coverage
status=0
"$VENV/bin/python" -m pytest --cov --cov-report= "$@" || status=$?
if [ -f .coverage ]; then
  echo "coverage: $("$VENV/bin/python" -m coverage report --format=total)% of the lines of ledger/ and node/"
fi
exit "$status"
