#!/usr/bin/env bash
# How long a member with ~1 GiB of state takes to rejoin via snapshot: three release-build
# members (separate processes, data on the data disk, never tmpfs) are filled with loadgen
# (KEYS keys of VALUE bytes: 65536 x 16 KiB = 1 GiB by default), a follower is stopped, its data
# directory wiped, it is removed and re-added (etcdctl member remove / add) and started with
# --initial-cluster-state existing. The leader has purged its log behind its snapshot
# (--snapshot-count 10000, --snapshot-catchup-entries 1000), so the new member can only catch up
# by installing the snapshot. Prints the time from the new process's start until its Status
# raft_applied_index reaches the leader's and its HashKV equals the leader's.
#
# Usage: scripts/rejoin.sh             KEYS=65536 VALUE=16KiB by default
# CONFLUX_BENCH_DIR picks the directory (default target/); the run's data is deleted at the end
# unless KEEP=1. Needs etcdctl 3.4 (Debian's etcd-client) and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-65536}
VALUE=${VALUE:-16KiB}
command -v etcdctl >/dev/null || { echo "etcdctl not found: install etcd-client" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq not found: install jq" >&2; exit 2; }

[[ ${SKIP_BUILD:-} == 1 ]] || cargo build --release -q -p conflux -p conflux-loadgen
ROOT=$(mktemp -d "${CONFLUX_BENCH_DIR:-$PWD/target}/rejoin.XXXXXX")
fs=$(df --output=fstype "$ROOT" | tail -1)
[[ $fs != tmpfs ]] || { echo "$ROOT is on tmpfs: set CONFLUX_BENCH_DIR to a directory on the data disk" >&2; exit 2; }
echo "run directory: $ROOT ($fs)" >&2
declare -A PID
cleanup() {
    for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ ${KEEP:-} == 1 ]] || rm -rf "$ROOT"
}
trap cleanup EXIT

BASE=${BASE:-24300}
client() { echo "127.0.0.1:$((BASE + 2 * $1))"; }
peer() { echo "http://127.0.0.1:$((BASE + 2 * $1 + 1))"; }
CLUSTER="m0=$(peer 0),m1=$(peer 1),m2=$(peer 2)"
ALL="$(client 0),$(client 1),$(client 2)"

# start I STATE
start() {
    local i=$1 state=$2 c
    c=$(client "$i")
    target/release/conflux --name "m$i" --data-dir "$ROOT/m$i" \
        --listen-client-urls "http://$c" --advertise-client-urls "http://$c" \
        --listen-peer-urls "$(peer "$i")" --initial-advertise-peer-urls "$(peer "$i")" \
        --initial-cluster "$CLUSTER" --initial-cluster-token rejoin --initial-cluster-state "$state" \
        --snapshot-count "${SNAP_COUNT:-10000}" --snapshot-catchup-entries 1000 --quota-backend-bytes 8589934592 \
        --log-level warn >>"$ROOT/m$i.log" 2>&1 &
    PID[$i]=$!
}

# field I NAME: a field of member I's Status, exact (etcdctl's fields output, not JSON: ids are u64).
field() {
    etcdctl --endpoints="$(client "$1")" endpoint status -w fields 2>/dev/null |
        awk -F' : ' -v f="\"$2\"" '$1 == f { print $2 }' || true
}
applied() { local a; a=$(field "$1" RaftAppliedIndex); echo "${a:-0}"; }
hashkv() {
    etcdctl --endpoints="$(client "$1")" endpoint hashkv -w fields 2>/dev/null |
        awk -F' : ' '$1 == "\"Hash\"" { print $2 }' || true
}
is_leader() { [[ -n $(field "$1" Leader) && $(field "$1" Leader) == $(field "$1" MemberID) ]]; }

for i in 0 1 2; do start "$i" new; done
for _ in $(seq 150); do [[ $(field 0 Leader) =~ ^[1-9] ]] && break; sleep 0.2; done

echo "filling: $KEYS keys of $VALUE" >&2
t0=$(date +%s.%N)
# Each key once, in order (put has no preload phase).
target/release/loadgen --endpoints "$ALL" --workload put --distribution sequential --key-space "$KEYS" \
    --value-size "$VALUE" --clients 32 --total "$KEYS" --warmup 0s --quiet >"$ROOT/fill.txt" 2>&1
t1=$(date +%s.%N)
echo "filled in $(echo "$t1 - $t0" | bc) s" >&2

# The leader, and a follower as the victim.
lead=""
for i in 0 1 2; do if is_leader "$i"; then lead=$i; fi; done
[[ -n $lead ]] || { echo "no leader" >&2; exit 1; }
victim=$(( (lead + 1) % 3 ))
# Wait for the leader's snapshot of the filled state and its log purge behind it.
for _ in $(seq "${SNAP_WAIT:-600}"); do
    ls "$ROOT/m$lead/snapshots/"*.snap.zst >/dev/null 2>&1 && break
    sleep 0.5
done
sleep 2
echo "leader m$lead: applied $(applied "$lead"), snapshots: $(ls -l "$ROOT/m$lead/snapshots/" | tail -n +2)" >&2
du -sh "$ROOT"/m* >&2

# Stop, wipe, remove, re-add, start.
vid=$(etcdctl --endpoints="$(client "$lead")" member list | awk -F', ' -v n="m$victim" '$3 == n { print $1 }')
kill -TERM "${PID[$victim]}"
wait "${PID[$victim]}" 2>/dev/null || true
unset "PID[$victim]"
rm -rf "$ROOT/m$victim"
etcdctl --endpoints="$(client "$lead")" member remove "$vid" >&2
etcdctl --endpoints="$(client "$lead")" member add "m$victim" --peer-urls="$(peer "$victim")" >&2
target_applied=$(applied "$lead")
t0=$(date +%s.%N)
start "$victim" existing
until [[ $(applied "$victim") -ge $target_applied ]]; do
    kill -0 "${PID[$victim]}" 2>/dev/null || { echo "m$victim exited; its log:" >&2; cat "$ROOT/m$victim.log" >&2; exit 1; }
    sleep 0.1
done
t1=$(date +%s.%N)
until [[ $(hashkv "$victim") == "$(hashkv "$lead")" ]]; do sleep 0.2; done
t2=$(date +%s.%N)
echo "applied index $target_applied reached after $(echo "$t1 - $t0" | bc) s; HashKV equal after $(echo "$t2 - $t0" | bc) s"
du -sh "$ROOT/m$victim" >&2
