#!/usr/bin/env bash
# The cluster tests (issue 11) start their own redis-server (Debian's
# package) on a free loopback port with persistence off. `make test` calls
# this first, so a fresh machine needs nothing installed by hand: when
# redis-server is missing and we are root with apt-get, it is installed.
# The tests never use the system instance the package may start.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server is missing: installing Debian's package for the cluster tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends redis-server >&2
else
    echo "NOTE: redis-server is not installed and cannot be here (needs root and apt-get):" \
        "the cluster tests will fail; install Debian's redis-server package" >&2
fi
