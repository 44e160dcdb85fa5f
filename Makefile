# serv6 / cli6. `make help` lists the targets.
#
#   make servidor                  run the server (foreground; Ctrl-C stops it)
#   make cliente                   type messages, one exchange per line
#   make cliente MSG="hola"        send one message
#   HOST=... PORT=...              where (server: address to bind; client: server);
#                                  unset, the programs' own defaults apply

CARGO ?= cargo
PORT  ?=
HOST  ?=
MSG   ?=
QUICK ?=
CLIENTS ?=
BIN   := target/release

# Passed through the environment so that any characters survive quoting;
# MSG_TEXT is MSG as typed, since make would expand a `$` in it.
MSG_TEXT := $(value MSG)
export MSG_TEXT HOST PORT

.PHONY: all build servidor server cliente client test stress bench demo clean help

all: build

build:
	$(CARGO) build --release

# `exec` replaces the shell, so `ps` shows serv6 itself, not make or cargo.
servidor server: build
	exec $(BIN)/serv6 $${HOST:+--bind "$$HOST"} $${PORT:+--port "$$PORT"}

cliente client: build
	@if [ -n "$$MSG_TEXT" ]; then \
	  exec $(BIN)/cli6 $${HOST:+--host "$$HOST"} $${PORT:+--port "$$PORT"} -- "$$MSG_TEXT"; \
	else \
	  exec $(BIN)/cli6 $${HOST:+--host "$$HOST"} $${PORT:+--port "$$PORT"}; \
	fi

test:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test

# The attacks hold about 2000 sockets: raise the open-file limit if allowed.
stress:
	ulimit -n 4096 2>/dev/null || true; \
	  $(CARGO) test --release --test tests stress:: -- --ignored --test-threads=1 --nocapture

# QUICK=1 for a short run, CLIENTS=16 for one client count.
# Results also go to a new file in target/bench-results/.
bench:
	ulimit -n 4096 2>/dev/null || true; \
	  QUICK=$(QUICK) CLIENTS=$(CLIENTS) $(CARGO) bench --bench bench

demo: build
	sh scripts/demo.sh $(BIN)

clean:
	$(CARGO) clean

help:
	@sed -n 's/^#   //p' Makefile
	@echo "targets: build servidor/server cliente/client test stress bench demo clean"
