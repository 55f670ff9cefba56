#!/usr/bin/env bash
# Side by side: chat-server at two commits, the same workloads, interleaved
# (A, B, A, B, ...) so that a machine whose load changes during the run
# weighs on both alike. Quick windows (QUICK=0: full ones, as `make
# bench`). Usage:
#   bash bench/ab.sh REV_A REV_B [ROUNDS=2] [WORKLOADS=b,d]
# Each binary is built in a temporary git worktree (removed afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?REV_A}; b=${2:?REV_B}; rounds=${3:-2}; workloads=${4:-b,d}
out=$(mktemp -d)
quick=--quick
if [ "${QUICK:-1}" = 0 ]; then quick=; fi
trap 'for r in "$a" "$b"; do git worktree remove --force "$out/src-$r" 2>/dev/null || true; done; rm -rf "$out"' EXIT
cargo build --release -q -p chat-bench
for rev in "$a" "$b"; do
    git worktree add -q --detach "$out/src-$rev" "$rev"
    (cd "$out/src-$rev" && CARGO_TARGET_DIR="$PWD/../target-ab" cargo build --release -q -p chat-server)
    cp "$out/target-ab/release/chat-server" "$out/chat-server-$rev"
done
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
    for rev in "$a" "$b"; do
        echo "== round $round, $rev"
        target/release/chat-bench $quick --workloads "$workloads" \
            --chat-server "$out/chat-server-$rev" --out-dir "$out/run-$round-$rev" 2>/dev/null |
            grep -E '^\| \(|delivered lines|latency p50|latency p99 |server CPU s|Redis CPU s|CPU us/line' || true
    done
done
