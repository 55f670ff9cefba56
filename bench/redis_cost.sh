#!/usr/bin/env bash
# Redis's own CPU per command on this machine, one client, one command at
# a time (as the cluster's appends mostly go under (j)): a PING (the round
# trip alone), a bare XADD, and an EVALSHA of the cluster's append script
# (server/src/cluster/keys.rs, APPEND; its counter taken from a key so
# that every call appends). Starts its own redis-server on a free port,
# persistence off, and stops it. Usage:
#   bash bench/redis_cost.sh [CALLS=30000]
set -euo pipefail
calls="${1:-30000}"
cd "$(dirname "$0")/.."
for tool in redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null || { echo "redis_cost: $tool is not installed" >&2; exit 1; }
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
until redis-cli -p "$port" PING >/dev/null 2>&1; do sleep 0.05; done
script=$(python3 - <<'EOF'
import re
text = open("server/src/cluster/keys.rs").read()
body = re.search(r'pub const APPEND: &str = r"(.*?)";', text, re.S).group(1)
print(body.replace("local c = tonumber(ARGV[7])", "local c = redis.call('INCR', 'bench:counter')"))
EOF
)
sha=$(redis-cli -p "$port" SCRIPT LOAD "$script")
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
now_ms=$(($(date +%s) * 1000))
run() {
    local name=$1; shift
    local before after
    before=$(ticks)
    redis-benchmark -p "$port" -c 1 -n "$calls" -q "$@" >/dev/null 2>&1
    after=$(ticks)
    python3 -c "print(f'$name: {($after - $before) / $hz / $calls * 1e6:.1f} us of Redis CPU per call')"
}
echo "redis_cost: $(date -u +'%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(redis-server --version | cut -d' ' -f3), $calls calls each"
run "PING" PING
run "XADD" XADD bench:log MAXLEN '~' 1000 '*' n 1 uid s:1 from alice kind say text hellohellohellohello
run "EVALSHA append" EVALSHA "$sha" 3 bench:log2 bench:seq bench:hw 1000 86400000 s:1 alice say hellohellohellohello 0 "$now_ms" 99999999999
