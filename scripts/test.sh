#!/usr/bin/env bash
# The test command (README, `.ci/run`): installs the Debian packages the suites use when they are
# missing, then runs every suite of the workspace.
#
# CONFLUX_FULL_TESTS=1 switches to the heavy sizes (hundreds of crash cycles and power-loss seeds,
# a thousand property-test cases, longer fuzz runs). Extra arguments go to `cargo test` (and skip
# the second run of the engine suites on io_uring, the benchmark smoke and the fuzz runs).
#
# After the tests, each cargo-fuzz target in fuzz/ runs for 30 s from its seeds (10 minutes with
# CONFLUX_FULL_TESTS=1; docs/reliability.md), installing cargo-fuzz when it is missing; extra
# arguments or CONFLUX_SKIP_FUZZ=1 skip it. Then the instruction-count gate (`bench/gate.sh`,
# docs/benchmarks.md) checks the hot paths against `bench/baseline/instructions.tsv`, and its
# self-test checks that the gate rejects an injected 5% regression. CONFLUX_SKIP_GATE=1 skips
# both, for quick local runs.
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

# Each phase announces itself with the seconds since the script started, so a slow CI run shows
# where its time went.
phase() { echo "== scripts/test.sh: $1 (at ${SECONDS} s)"; }

phase "cargo test --workspace"
cargo test --workspace --locked "$@"

# The engine suites again on the io_uring backend (every engine test runs on both; see
# engine/tests/common/mod.rs). Fails with the probe's reason where io_uring is unavailable.
if (($# == 0)); then
    phase "engine suites on io_uring"
    CONFLUX_ENGINE_IO=uring cargo test -p conflux-engine --locked
fi

# Disk faults on one member of a real cluster, injected through the engine's I/O seam, and the
# consistency check finding a member made to diverge: both need the test-only `failpoints`
# feature (src/failpoints.rs), so it builds the binary once more with it.
if (($# == 0)); then
    phase "disk faults and the consistency check (failpoints feature)"
    cargo test -p conflux --features failpoints --locked --test disk_faults --test consistency_check
fi

# The benchmark smoke: every criterion benchmark runs once, in criterion's test mode, so a broken
# benchmark fails here (debug build; figures come from `cargo bench`, docs/benchmarks.md).
if (($# == 0)); then
    phase "benchmark smoke"
    cargo test --workspace --locked --benches
fi

# Fuzzing: every target from its committed seeds, new inputs in a temporary corpus so the
# committed one stays as it is. No sanitizer (`-s none`): only the stable toolchain is assumed.
# A crash fails the script and leaves its input in fuzz/artifacts/<target>/.
if (($# == 0)) && [[ ${CONFLUX_SKIP_FUZZ:-0} != 1 ]]; then
    phase "fuzzing"
    if ! cargo fuzz --version >/dev/null 2>&1; then
        cargo install --locked cargo-fuzz
    fi
    fuzz_secs=30
    if [[ ${CONFLUX_FULL_TESTS:-0} == 1 ]]; then fuzz_secs=600; fi
    fuzz_corpus=$(mktemp -d)
    trap 'rm -rf "$fuzz_corpus"' EXIT
    for target in $(cargo fuzz list); do
        mkdir -p "$fuzz_corpus/$target"
        echo "fuzzing $target for ${fuzz_secs}s"
        cargo fuzz run -s none "$target" "$fuzz_corpus/$target" "$PWD/fuzz/corpus/$target" -- \
            -max_total_time="$fuzz_secs" -timeout=20 -print_final_stats=1
    done
fi

if [[ ${CONFLUX_SKIP_GATE:-0} != 1 ]]; then
    phase "instruction-count gate"
    bash bench/gate.sh
    bash bench/gate.sh --selftest
fi
phase "done"
