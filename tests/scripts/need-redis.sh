#!/usr/bin/env bash
# The cluster tests (issue 11) start their own redis-server (Debian's
# package) on a free loopback port with persistence off. `make test` calls
# this first, so a fresh machine needs nothing installed by hand: when
# redis-server is missing it is installed with apt-get (as root, or through
# password-less sudo); when that is impossible, it says so and fails at once
# rather than leaving every cluster test to fail on its own.
# The tests never use the system instance the package may start (on a
# systemd host Debian's package starts one on 6379: see the README).
# The cluster needs Redis 6.2 or later: an older one is named clearly here,
# not left to fail test by test.
set -euo pipefail
MIN_MAJOR=6
MIN_MINOR=2
if ! command -v redis-server >/dev/null 2>&1; then
    # As root, apt-get itself; otherwise through sudo if it needs no
    # password (a CI runner's usual user).
    as_root=()
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    fi
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ ${#as_root[@]} -gt 0 ]; }; then
        echo "redis-server is missing: installing Debian's package for the cluster tests" >&2
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends redis-server >&2
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "error: redis-server is not installed and cannot be installed here" \
            "(needs apt-get, and root or password-less sudo): the cluster tests need it;" \
            "install Debian's redis-server package (6.2 or later) and run make test again" >&2
        exit 1
    fi
fi
# `redis-server --version`: "Redis server v=7.0.15 sha=... malloc=..."
version=$(redis-server --version 2>/dev/null | sed -n 's/.*v=\([0-9][0-9.]*\).*/\1/p')
major=${version%%.*}
rest=${version#*.}
minor=${rest%%.*}
if [ -z "$version" ] || [ -z "$major" ] || [ -z "$minor" ]; then
    echo "NOTE: cannot tell redis-server's version (\`redis-server --version\` said:" \
        "$(redis-server --version 2>&1 | head -n 1)); the cluster tests need ${MIN_MAJOR}.${MIN_MINOR} or later" >&2
elif [ "$major" -lt "$MIN_MAJOR" ] || { [ "$major" -eq "$MIN_MAJOR" ] && [ "$minor" -lt "$MIN_MINOR" ]; }; then
    echo "NOTE: redis-server is version $version; the cluster needs ${MIN_MAJOR}.${MIN_MINOR} or later," \
        "so the cluster tests will fail: install a newer redis-server (Debian 12's package is 7.0)" >&2
fi
