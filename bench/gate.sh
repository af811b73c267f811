#!/usr/bin/env bash
# The instruction-count gate: runs the gungraun suite `bench/benches/instructions.rs` under
# valgrind (callgrind) and compares each benchmark's instruction count (Ir) with the baseline kept
# in the repository, `bench/baseline/instructions.tsv`. Called by `scripts/test.sh` (so by
# `.ci/run`); see docs/benchmarks.md, "Instruction-count gate".
#
#   bench/gate.sh             check: exit 1 when a benchmark runs more than 2% more instructions
#                             than its baseline line, or when the suite and the baseline do not
#                             name the same benchmarks
#   bench/gate.sh --update    run the suite and rewrite the baseline: a deliberate, visible diff
#                             to commit with the reason the change costs more
#   bench/gate.sh --selftest  run `mvcc::apply_batch` with CONFLUX_GATE_SELFTEST=1 (about 5% more
#                             puts in the measured code) and check that the gate rejects it
#
# Exit status: 0 pass, 1 gate failure (or failed self-test), 2 the suite could not be measured.
#
# Needs valgrind and jq (Debian packages; scripts/test.sh installs them) and `gungraun-runner` of
# the exact version bench/Cargo.toml pins for `gungraun`: when missing, this script installs it
# with `cargo install --locked --debug` into cargo's bin directory (${CARGO_HOME:-~/.cargo}/bin),
# once.
set -euo pipefail
cd "$(dirname "$0")/.."

BASELINE=bench/baseline/instructions.tsv
LIMIT_PCT=2
SELFTEST_ID=mvcc::apply_batch::keys_4ki_puts_256
SELFTEST_FILTER='instructions::mvcc::apply_batch::*'

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

mode=check
case "${1:-}" in
    "") ;;
    --update) mode=update ;;
    --selftest) mode=selftest ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && exit 2 ;;
esac
started=$SECONDS

for tool in valgrind jq; do
    if ! command -v "$tool" >/dev/null; then
        echo "gate: $tool not found (Debian package $tool; scripts/test.sh installs it)" >&2
        exit 2
    fi
done

# The runner must be the library's exact version; bench/Cargo.toml pins it (`gungraun = "=X"`).
version=$(sed -n 's/^gungraun = "=\([0-9][0-9.]*\)".*/\1/p' bench/Cargo.toml)
if [[ -z $version ]]; then
    echo "gate: no exact gungraun version (gungraun = \"=X.Y.Z\") in bench/Cargo.toml" >&2
    exit 2
fi
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$cargo_bin:$PATH"
if [[ "$(gungraun-runner --version 2>/dev/null)" != "gungraun-runner $version" ]]; then
    # --debug: the runner only starts valgrind and reads its output files, so optimizing it buys
    # nothing here, and it builds in 1 minute instead of 3 on two cores.
    echo "gate: installing gungraun-runner $version into $cargo_bin (cargo install --locked --debug, once)"
    cargo install gungraun-runner --version "=$version" --locked --debug
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Run the suite (optionally only the benchmarks matching $1) and print "<id>\t<Ir>" lines, sorted.
# The id is the benchmark's gungraun path without the file name: group::function::bench-id.
measure() {
    if ! cargo bench -p conflux-bench --bench instructions --locked -- --output-format=json ${1:+"$1"} \
        >"$tmp/summary.json"; then
        echo "gate: the instruction-count suite failed to build or run" >&2
        exit 2
    fi
    if ! grep -q '^{' "$tmp/summary.json"; then
        echo "gate: the suite reported no benchmarks" >&2
        exit 2
    fi
    if ! grep '^{' "$tmp/summary.json" | jq -r '
        . as $b
        | [ ($b.module_path | sub("^instructions::"; "")) + "::" + $b.id,
            ([$b.profiles[] | select(.tool == "Callgrind") | .data.total.metrics.Ir.values.new | numbers]
             | if length == 1 then .[0] else error("no callgrind Ir for \($b.module_path)::\($b.id)") end) ]
        | @tsv' >"$tmp/ir.tsv"; then
        echo "gate: could not read the suite's JSON summaries" >&2
        exit 2
    fi
    LC_ALL=C sort "$tmp/ir.tsv"
}

# Print the table of $2 (measured) against $1 (baseline); exit 1 when a benchmark is over the
# limit, or, unless $3 is "partial", when the two do not name the same benchmarks.
compare() {
    awk -F'\t' -v limit="$LIMIT_PCT" -v partial="${3:-}" '
        FNR == NR { if ($0 !~ /^#/ && NF >= 2) { base[$1] = $2; border[++nb] = $1 } next }
        { now[$1] = $2; order[++nn] = $1 }
        END {
            fmt = "%-48s %12s %12s %9s  %s\n"
            printf fmt, "benchmark", "baseline", "now", "change", ""
            fail = 0
            for (i = 1; i <= nn; i++) {
                id = order[i]
                if (!(id in base)) {
                    printf fmt, id, "-", now[id], "", "FAIL: not in the baseline (bench/gate.sh --update adds it)"
                    fail = 1
                    continue
                }
                change = sprintf("%+.2f%%", (now[id] - base[id]) * 100 / base[id])
                # Exact integer test: now > base * (1 + limit/100).
                if (now[id] * 100 > base[id] * (100 + limit)) {
                    verdict = "FAIL: more than +" limit "%"
                    fail = 1
                } else if (now[id] * 100 < base[id] * (100 - limit)) {
                    verdict = "ok, faster: bench/gate.sh --update keeps the gain"
                } else {
                    verdict = "ok"
                }
                printf fmt, id, base[id], now[id], change, verdict
            }
            if (partial != "partial")
                for (i = 1; i <= nb; i++)
                    if (!(border[i] in now)) {
                        gone = "FAIL: in the baseline, not in the suite (bench/gate.sh --update drops it)"
                        printf fmt, border[i], base[border[i]], "-", "", gone
                        fail = 1
                    }
            exit fail
        }' "$1" "$2"
}

toolchain="$(rustc -V), $(valgrind --version), gungraun $version, $(uname -m)"

case $mode in
update)
    measure >"$tmp/now.tsv"
    if [[ -f $BASELINE ]]; then compare "$BASELINE" "$tmp/now.tsv" || true; fi
    mkdir -p "$(dirname "$BASELINE")"
    {
        echo "# Instruction counts (callgrind Ir) of bench/benches/instructions.rs, one benchmark a line:"
        echo "# <group::function::id> TAB <instructions>. bench/gate.sh (run by scripts/test.sh) fails when a"
        echo "# benchmark runs more than ${LIMIT_PCT}% more instructions than its line here."
        echo "# Written by \`bench/gate.sh --update\`: refresh only on purpose, and give the reason in the commit."
        echo "# toolchain: $toolchain"
        cat "$tmp/now.tsv"
    } >"$BASELINE"
    echo "gate: wrote $BASELINE ($(wc -l <"$tmp/now.tsv") benchmarks) in $((SECONDS - started)) s;" \
        "review and commit its diff"
    ;;
check)
    if [[ ! -f $BASELINE ]]; then
        echo "gate: no baseline $BASELINE; create it with bench/gate.sh --update" >&2
        exit 1
    fi
    measure >"$tmp/now.tsv"
    recorded=$(sed -n 's/^# toolchain: //p' "$BASELINE")
    if [[ $recorded != "$toolchain" ]]; then
        echo "gate: note: baseline measured with [$recorded], now [$toolchain];"
        echo "      another compiler or valgrind can move counts by itself (docs/benchmarks.md)"
    fi
    if compare "$BASELINE" "$tmp/now.tsv"; then
        echo "gate: pass (limit +${LIMIT_PCT}%), $((SECONDS - started)) s"
    else
        echo "gate: FAIL (limit +${LIMIT_PCT}%). If the extra cost is intended, run bench/gate.sh --update" \
            "and commit the baseline diff with the reason." >&2
        exit 1
    fi
    ;;
selftest)
    if [[ ! -f $BASELINE ]]; then
        echo "gate: no baseline $BASELINE; create it with bench/gate.sh --update" >&2
        exit 1
    fi
    echo "gate self-test: $SELFTEST_ID with CONFLUX_GATE_SELFTEST=1 (about 5% more puts applied)"
    CONFLUX_GATE_SELFTEST=1 measure "$SELFTEST_FILTER" >"$tmp/now.tsv"
    status=0
    compare "$BASELINE" "$tmp/now.tsv" partial >"$tmp/table" || status=$?
    cat "$tmp/table"
    if [[ $status -eq 1 ]] && grep -q "^$SELFTEST_ID .*FAIL: more than" "$tmp/table"; then
        echo "gate self-test: pass (the gate rejected the injected regression), $((SECONDS - started)) s"
    else
        echo "gate self-test: FAIL: the gate did not reject the injected regression (status $status)" >&2
        exit 1
    fi
    ;;
esac
