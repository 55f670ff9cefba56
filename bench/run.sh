#!/usr/bin/env bash
# The benchmark: chat-server against `ncat -l --chat`, same workloads, one
# table; (h) to (k) are chat-server's alone, (j) and (k) with 3 chat-servers
# sharing a throwaway redis-server. Called by `make bench` (full, about 6
# minutes) and `make bench-quick` (QUICK=1, about a minute and a half).
#
# Environment:
#   QUICK=1             a few seconds per workload (same as passing --quick)
#   WORKLOADS=a,c,f     only these workloads (default: a to k; (i), (k) bring (c))
#   SERVERS="chat-server ncat"   which servers to measure (default: both)
#   OUT_DIR=target/bench         where results.md and the servers' logs go
#   STALL_PROBE_SECS=3  how long the host-stall probe spins before the workloads
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
if [ "${QUICK:-0}" != 0 ]; then args+=(--quick); fi

SERVERS="${SERVERS:-chat-server ncat}"
OUT="${OUT_DIR:-target/bench}"
WORKLOADS="${WORKLOADS:-a,b,c,d,e,f,g,h,i,j,k}"
args+=(--workloads "$WORKLOADS" --out-dir "$OUT")

note() { echo "bench: $*" >&2; }
missing_ncat=""

mkdir -p "$OUT"
if [[ " $SERVERS " == *" chat-server "* ]]; then
    cargo build --release -q -p chat-server -p chat-bench
    # A private copy: a rebuild during the run must not mix two servers.
    cp target/release/chat-server "$OUT/chat-server"
    args+=(--chat-server "$OUT/chat-server")
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
        missing_ncat="NOTE: ncat is not installed and cannot be (needs root and apt-get): chat-server's rows alone."
        note "$missing_ncat"
    fi
fi

# (j) and (k) start their own redis-server (Debian's package).
if [[ "$WORKLOADS" == *[jk]* ]] && ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        note "redis-server is missing: installing the Debian package"
        { apt-get update -q && apt-get install -y -q redis-server; } >&2 || true
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        note "redis-server is not installed and cannot be (needs root and apt-get): (j) and (k) will say so"
    fi
fi

echo "# chat-server vs ncat --chat"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc: $(nproc);" \
    "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
ncat_version=none
if command -v ncat >/dev/null 2>&1; then ncat_version=$(ncat --version 2>&1 | head -1); fi
redis_version=none
if command -v redis-server >/dev/null 2>&1; then redis_version=$(redis-server --version 2>&1 | head -1); fi
echo "kernel: $(uname -r); ncat: $ncat_version; redis: $redis_version"
dirty=$(git status --porcelain -- server common 2>/dev/null | wc -l)
echo "source: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "($dirty uncommitted files in server/ and common/)"
echo "command: target/release/chat-bench ${args[*]}"
if [ -n "$missing_ncat" ]; then echo "$missing_ncat"; fi
# The host's own noise, before any workload: see bench/src/stalls.rs.
target/release/chat-bench --host-stalls "${STALL_PROBE_SECS:-3}"
# A shell's background jobs start with SIGINT ignored, and what they start
# inherits that: ncat, which has no handler of its own, would then survive
# (g)'s SIGINT. chat-server installs its handler either way.
sigign=$(awk '/^SigIgn:/ {print $2}' /proc/$$/status 2>/dev/null)
if [ -n "$sigign" ] && (( (16#$sigign >> 1) & 1 )); then
    echo "NOTE: SIGINT is ignored in this run (started as a background job?): ncat inherits that and ignores (g)'s SIGINT."
fi
echo
exec target/release/chat-bench "${args[@]}"
