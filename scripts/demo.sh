#!/usr/bin/env bash
# The main job: start a local network of 4 validators on 127.0.0.1, play the whole story
# (council, enrolment, a crossing approved by both guardians, an attempt that expires and
# raises an alert, an audit of the chain), then stop the network.
# DEVNET_DIR (default: a new temporary directory) keeps the network's data.
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
DIR="${DEVNET_DIR:-$(mktemp -d -t custos-devnet.XXXXXX)}"
"$VENV/bin/custos" devnet up --validators "${VALIDATORS:-4}" --dir "$DIR" --heartbeat 1s --reuse &
devnet=$!
trap 'kill -INT $devnet 2>/dev/null; wait $devnet 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q '"nodes"' "$DIR/devnet.json" 2>/dev/null && break
  sleep 0.1
done
for _ in $(seq 1 120); do  # until a node answers (over TLS: `devnet status` trusts the devnet's CA)
  "$VENV/bin/custos" devnet status --dir "$DIR" >/dev/null 2>&1 && break
  sleep 0.5
done
status=0
"$VENV/bin/custos" devnet demo --dir "$DIR" || status=$?
echo "network data kept in $DIR"
exit $status
