#!/usr/bin/env bash
# The benchmark: chat-server against `ncat -l --chat`, same workloads, one
# table. Called by `make bench` (full, about 6 minutes) and `make bench-quick`
# (QUICK=1, about a minute).
#
# Environment:
#   QUICK=1             a few seconds per workload (same as passing --quick)
#   WORKLOADS=a,c,f     only these workloads (default: a to g)
#   SERVERS="chat-server ncat"   which servers to measure (default: both)
#   OUT_DIR=target/bench         where results.md and the servers' logs go
# Any other argument is passed on to chat-bench (see `chat-bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for a in "$@"; do
    case "$a" in
        --quick) QUICK=1 ;;
        *) args+=("$a") ;;
    esac
done
[ "${QUICK:-0}" != 0 ] && args+=(--quick)
args+=(--workloads "${WORKLOADS:-a,b,c,d,e,f,g}" --out-dir "${OUT_DIR:-target/bench}")
SERVERS="${SERVERS:-chat-server ncat}"

note() { echo "bench: $*" >&2; }

if [[ " $SERVERS " == *" chat-server "* ]]; then
    cargo build --release -q -p chat-server -p chat-bench
    args+=(--chat-server target/release/chat-server)
else
    cargo build --release -q -p chat-bench
fi

if [[ " $SERVERS " == *" ncat "* ]]; then
    if ! command -v ncat >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            note "ncat is missing: installing the Debian package"
            { apt-get update -q && apt-get install -y -q ncat; } >&2 || true
        fi
    fi
    if command -v ncat >/dev/null 2>&1; then
        args+=(--ncat "$(command -v ncat)")
    else
        note "NOTE: ncat is not installed and cannot be (needs root and apt-get):"
        note "      the table shows chat-server's rows alone."
    fi
fi

echo "# chat-server vs ncat --chat"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc: $(nproc);" \
    "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "kernel: $(uname -r); ncat: $(ncat --version 2>&1 | head -1 || echo none)"
echo "command: target/release/chat-bench ${args[*]}"
echo
exec target/release/chat-bench "${args[@]}"
