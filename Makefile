# chat: the commands a user and CI run. `make help` lists them.
PORT ?= 2000
HOST ?= localhost
# Extra flags, e.g. make run-server ARGS='--mode echo --udp'
ARGS ?=
CARGO ?= cargo

.PHONY: help run-server run-client build test check unit soak bench bench-quick clean redis

help:
	@echo "make run-server [PORT=2000]                 start the chat server"
	@echo "make run-client [HOST=localhost] [PORT=2000] start the terminal client"
	@echo "make test                                    fmt + clippy + every test"
	@echo "make soak                                    the one-minute soak test"
	@echo "make bench | bench-quick                     chat-server vs ncat --chat"
	@echo "make redis [REDIS_PORT=6379]                 a throwaway redis-server in the foreground, for --redis"

# The build shows its progress (on a fresh clone it takes a minute or two,
# which must not look like a hang); the run itself is quiet, since the
# binary is already built.
run-server:
	@echo "building chat-server (release; the first build takes a minute or two)..." >&2
	@$(CARGO) build --release -p chat-server
	@$(CARGO) run --release -q -p chat-server -- --port $(PORT) $(ARGS)

run-client:
	@echo "building chat-client (release; the first build takes a minute)..." >&2
	@$(CARGO) build --release -p chat-client
	@$(CARGO) run --release -q -p chat-client -- $(ARGS) $(HOST) $(PORT)

build:
	$(CARGO) build --workspace --bins

# Style gates first, then the binaries the integration tests start, then
# every test in the workspace (unit, property and integration). The cluster
# tests need Debian's redis-server: installed first when missing (as root).
# One run: a test that fails fails `make test`.
test: check build
	@bash tests/scripts/need-redis.sh
	$(CARGO) test --workspace

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Slow, bounded (about a minute): kept out of `make test`; CI runs it too.
soak: build
	$(CARGO) test -p chat-tests --test soak -- --ignored --nocapture

bench:
	bash bench/run.sh

bench-quick:
	QUICK=1 bash bench/run.sh

# A Redis for trying --redis by hand: in the foreground, nothing saved to
# disk, loopback only (Ctrl+C stops it). Needs Debian's redis-server.
REDIS_PORT ?= 6379
redis:
	redis-server --port $(REDIS_PORT) --bind 127.0.0.1 --save '' --appendonly no

clean:
	$(CARGO) clean
