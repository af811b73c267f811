#!/usr/bin/env bash
# The test command (README, `.ci/run`): installs the Debian packages the suites use when they are
# missing, then runs every suite of the workspace.
#
# CONFLUX_FULL_TESTS=1 switches to the heavy sizes (hundreds of crash cycles and power-loss seeds,
# a thousand property-test cases). Extra arguments go to `cargo test` (and skip the second run of
# the engine suites on io_uring and the benchmark smoke).
#
# After the tests, the instruction-count gate (`bench/gate.sh`, docs/benchmarks.md) checks the hot
# paths against `bench/baseline/instructions.tsv`, then its self-test checks that the gate rejects
# an injected 5% regression. CONFLUX_SKIP_GATE=1 skips both, for quick local runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suites start or call. The engine suites need none; the node's etcd
# compatibility tests add etcd-server and etcd-client, the instruction-count gate adds valgrind
# (and jq, which reads gungraun's JSON summaries).
DEB_PACKAGES=(etcd-server etcd-client valgrind jq)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cargo test --workspace --locked "$@"

# The engine suites again on the io_uring backend (every engine test runs on both; see
# engine/tests/common/mod.rs). Fails with the probe's reason where io_uring is unavailable.
if (($# == 0)); then
    CONFLUX_ENGINE_IO=uring cargo test -p conflux-engine --locked
fi

# The benchmark smoke: every criterion benchmark runs once, in criterion's test mode, so a broken
# benchmark fails here (debug build; figures come from `cargo bench`, docs/benchmarks.md).
if (($# == 0)); then
    cargo test --workspace --locked --benches
fi

if [[ ${CONFLUX_SKIP_GATE:-0} != 1 ]]; then
    bash bench/gate.sh
    bash bench/gate.sh --selftest
fi
