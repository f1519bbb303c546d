#!/usr/bin/env bash
# The load report's frozen-owner scenario: three sluice processes on
# loopback in owner mode; 3,000 keys checked through two of them by 16
# closed-loop callers, first with every node running, then with the third
# frozen (SIGSTOP: a stalled VM, a long pause) for 5 s. Prints both runs.
# Run from the repository root: bash cmd/loadgen/frozen-owner.sh
set -euo pipefail
dir=$(mktemp -d)
trap 'for p in "$dir"/pid-*; do kill -CONT "$(cat "$p")" 2>/dev/null; kill "$(cat "$p")" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
go build -o "$dir/sluice" ./cmd/node
go build -o "$dir/loadgen" ./cmd/loadgen
cat > "$dir/rules.yaml" <<R
rules:
  - {name: spread, limit: 1000, period: 1s, sync: owner}
R
key=$(head -c 32 /dev/urandom | base64)
for i in 2 3 4; do
  ip=127.0.0.2$i
  "$dir/sluice" --node-name "n$i" --gossip-addr "$ip:7946" --peer-addr "$ip:7947" --seed 127.0.0.22 \
    --gossip-key "$key" --cluster-label frozen-owner --http-addr "$ip:8080" --admin-addr "$ip:8081" \
    --data-dir "$dir/data-$i" --rules "$dir/rules.yaml" --log-format text > "$dir/log-$i.txt" 2>&1 &
  echo $! > "$dir/pid-$i"
done
for _ in $(seq 1 150); do
  alive=$(curl -s 127.0.0.22:8081/metrics | awk '/^sluice_gossip_members\{state="alive"\}/ {print $2}')
  [ "$alive" = 3 ] && break
  sleep 0.2
done
[ "$alive" = 3 ] || { echo "the cluster did not form"; cat "$dir"/log-*.txt; exit 1; }
targets=http://127.0.0.22:8080,http://127.0.0.23:8080
run() { "$dir/loadgen" run --targets "$targets" --rule spread --keys 3000 --closed --concurrency 16 --duration "$1" --quiet; }
echo "== every node running"
run 8s
kill -STOP "$(cat "$dir/pid-4")"
echo "== n4 frozen"
run 5s
kill -CONT "$(cat "$dir/pid-4")"
