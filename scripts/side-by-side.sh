#!/usr/bin/env bash
# conflux 3 members vs etcd 3 members on this machine, driven by the same loadgen settings:
# put with 256-byte values at 1, 64 and 256 clients, and linearizable single-key reads. Each
# cluster runs as three separate processes with its data on the data disk (never tmpfs); one
# cluster runs at a time. Prints a markdown table and leaves the JSON reports in the run
# directory.
#
# Usage: scripts/side-by-side.sh [DURATION]      (default 10s per step)
# Needs etcd 3.4 (Debian's etcd-server). CONFLUX_BENCH_DIR picks the directory (default target/).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
ETCD=${ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}
[[ -x $ETCD ]] || { echo "etcd not found: install the Debian package etcd-server" >&2; exit 2; }

cargo build --release -q -p conflux -p conflux-loadgen
ROOT=$(mktemp -d "${CONFLUX_BENCH_DIR:-$PWD/target}/side-by-side.XXXXXX")
fs=$(df --output=fstype "$ROOT" | tail -1)
[[ $fs != tmpfs ]] || { echo "$ROOT is on tmpfs: set CONFLUX_BENCH_DIR to a directory on the data disk" >&2; exit 2; }
echo "run directory: $ROOT ($fs)" >&2
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start KIND BASEPORT: three members on BASEPORT+{0..5}
start() {
    local kind=$1 base=$2 cluster="" i
    for i in 0 1 2; do cluster+="m$i=http://127.0.0.1:$((base + 2 * i + 1)),"; done
    cluster=${cluster%,}
    PIDS=()
    for i in 0 1 2; do
        local c=$((base + 2 * i)) p=$((base + 2 * i + 1))
        local args=(--name "m$i" --data-dir "$ROOT/$kind-m$i"
            --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c"
            --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p"
            --initial-cluster "$cluster" --initial-cluster-token "sbs-$kind")
        if [[ $kind == etcd ]]; then
            "$ETCD" "${args[@]}" --logger zap --log-level error >"$ROOT/$kind-m$i.log" 2>&1 &
        else
            target/release/conflux "${args[@]}" --log-level warn >"$ROOT/$kind-m$i.log" 2>&1 &
        fi
        PIDS+=($!)
    done
    ENDPOINTS="127.0.0.1:$base,127.0.0.1:$((base + 2)),127.0.0.1:$((base + 4))"
    sleep 3
}

run() { # run KIND NAME ARGS...
    local kind=$1 name=$2
    shift 2
    target/release/loadgen --endpoints "$ENDPOINTS" --duration "$DURATION" --warmup 2s --quiet \
        --json "$ROOT/$kind-$name.json" "$@" >"$ROOT/$kind-$name.txt"
    echo "$kind $name done" >&2
}

for kind in conflux etcd; do
    if [[ $kind == conflux ]]; then start conflux 21000; else start etcd 22000; fi
    for c in 1 64 256; do
        run "$kind" "put-c$c" --workload put --value-size 256 --clients "$c" --conns $((c < 8 ? c : 8))
    done
    run "$kind" "get-c64" --workload get --consistency l --value-size 256 --key-space 10000 --clients 64 --conns 8
    cleanup
    PIDS=()
done

python3 - "$ROOT" <<'EOF'
import json, sys, os
root = sys.argv[1]
print("| workload | clients | conflux ops/s | etcd ops/s | conflux/etcd | conflux p50 / p99 ms | etcd p50 / p99 ms |")
print("|---|---|---|---|---|---|---|")
for name, label, c in [("put-c1", "put 256 B", 1), ("put-c64", "put 256 B", 64), ("put-c256", "put 256 B", 256), ("get-c64", "range (linearizable)", 64)]:
    r = {k: json.load(open(os.path.join(root, f"{k}-{name}.json"))) for k in ("conflux", "etcd")}
    def lat(x):
        l = x["ops"][0]["latency"]
        return f'{l["p50"]:.2f} / {l["p99"]:.2f}'
    t = {k: r[k]["totals"]["throughput"] for k in r}
    print(f'| {label} | {c} | {t["conflux"]:.0f} | {t["etcd"]:.0f} | {t["conflux"] / t["etcd"]:.2f} | {lat(r["conflux"])} | {lat(r["etcd"])} |')
EOF
