#!/usr/bin/env bash
# The genesis ceremony for configs/deploy/compose.yaml, played for four agencies on one machine:
# each node directory gets a key, a config that listens on all interfaces in its container and
# is reached by the others as val-N:8800, and a signed join statement; the statements are
# assembled into a genesis; every directory is finalized (each prints the same genesis hash).
# Usage: make-compose-network.sh DIR [CHAIN_ID]   (needs `custos` on PATH, or CUSTOS=path)
set -euo pipefail
DIR="${1:?usage: $0 DIR [CHAIN_ID]}"
CHAIN="${2:-custos-compose}"
CUSTOS="${CUSTOS:-custos}"
KDF="${KDF:-}"   # tests set KDF=--fast-kdf
if [ -e "$DIR/val-0" ]; then echo "$DIR holds a network already" >&2; exit 2; fi
mkdir -p "$DIR"
umask 077
[ -f "$DIR/passphrase" ] || head -c 24 /dev/urandom | base64 > "$DIR/passphrase"
export CUSTOS_PASSPHRASE_FILE="$DIR/passphrase" CUSTOS_PASSPHRASE
CUSTOS_PASSPHRASE="$(cat "$DIR/passphrase")"
joins=()
for i in 0 1 2 3; do
  $CUSTOS keys new "$DIR/council-$i.key" --label "council member of agency $i" $KDF > /dev/null
  $CUSTOS node init --dir "$DIR/val-$i" --name "val-$i" --chain-id "$CHAIN" --label "agency $i" \
    --public-p2p "val-$i:8800" --public-api "http://val-$i:8700" --listen-p2p 0.0.0.0:8800 \
    --listen-api 0.0.0.0:8700 --listen-metrics 0.0.0.0:9700 --council-key "$DIR/council-$i.key" $KDF
  joins+=(--join "$DIR/val-$i/join.json")
done
$CUSTOS genesis assemble --chain-id "$CHAIN" "${joins[@]}" --out "$DIR/assembled"
for i in 0 1 2 3; do
  $CUSTOS genesis finalize --dir "$DIR/val-$i" --from "$DIR/assembled" | tail -2 | head -1
done
