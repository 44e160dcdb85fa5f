# serv6 / cli6. `make help` says what every target does.

CARGO ?= cargo
PORT  ?=
HOST  ?=
MSG   ?=
QUICK ?=
CLIENTS ?=
# Cargo's own output directory, CARGO_TARGET_DIR or target/.
TARGET := $(or $(CARGO_TARGET_DIR),target)
BIN    := $(TARGET)/release
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml)

# Where `make install` puts things (GNU conventions; DESTDIR is never set here).
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALLED := $(BINDIR)/cli6 $(SBINDIR)/serv6 $(MANDIR)/man1/cli6.1 $(MANDIR)/man8/serv6.8 \
             $(UNITDIR)/serv6.socket $(UNITDIR)/serv6.service \
             $(UNITDIR)/serv6-daytime.socket $(UNITDIR)/serv6-time.socket

# Passed through the environment so that any characters survive quoting;
# MSG_TEXT is MSG as typed, since make would expand a `$` in it.
MSG_TEXT := $(value MSG)
export MSG_TEXT HOST PORT

.PHONY: all build servidor server cliente client test test-portable test-install test-system stress bench callgrind \
        demo cluster man install uninstall deb clean help

## build: compile both programs, optimised (what every other target runs first)
all: build

build:
	$(CARGO) build --release

# Built only if missing, so that `make && sudo make install` works where
# root has no cargo: install never rebuilds.
$(BIN)/serv6 $(BIN)/cli6:
	$(CARGO) build --release

## servidor, server: run serv6 in the foreground (HOST= to bind, PORT=); Ctrl-C stops it
# Says what it runs, HOST and PORT expanded; `exec` replaces the shell, so
# `ps` shows serv6 itself, not make or cargo.
servidor server: build
	@set -- $(BIN)/serv6 $${HOST:+--bind "$$HOST"} $${PORT:+--port "$$PORT"}; \
	  echo "$$*"; exec "$$@"

## cliente, client: type messages, one exchange per line; MSG="hola" sends one (HOST=, PORT=)
cliente client: build
	@if [ -n "$$MSG_TEXT" ]; then \
	  exec $(BIN)/cli6 $${HOST:+--host "$$HOST"} $${PORT:+--port "$$PORT"} -- "$$MSG_TEXT"; \
	else \
	  exec $(BIN)/cli6 $${HOST:+--host "$$HOST"} $${PORT:+--port "$$PORT"}; \
	fi

## test: formatting, clippy, every fast test, the install and package checks, then one total; nothing outside the tree changes
# Changes nothing outside the tree; the checks that install a package on
# this machine are make test-system's (and CI's: CI=true make test).
test:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	sh tests/run.sh "$(CARGO)" "$(TARGET)" "$(MAKE)"

## test-portable: clippy and every test against the standard-library build, as macOS and the BSDs build it (part of make test)
# Linux built as other systems build: --cfg serv6_portable chooses the
# standard-library platform, and -F unsafe_code proves it needs no unsafe.
PORTABLE_FLAGS := --cfg serv6_portable -F unsafe_code
test-portable:
	RUSTFLAGS="$(PORTABLE_FLAGS)" $(CARGO) clippy --all-targets --target-dir $(TARGET)/portable -- -D warnings
	RUSTFLAGS="$(PORTABLE_FLAGS)" $(CARGO) test --no-fail-fast --target-dir $(TARGET)/portable

## test-install: make install and uninstall staged, the units checked, the Debian package built and linted
# tests/install.sh and tests/deb.sh say what they skip, and why.
test-install: build
	sh tests/install.sh
	sh tests/deb.sh

## test-system: as root, what changes this machine: the Debian package installed, tried, purged
# CI runs it too: CI=true make test.
test-system: build
	SERV6_TEST_SYSTEM=1 sh tests/deb.sh

## stress: the slow attacks (tests/stress*), with the open-file limit raised to the hard one
stress:
	ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; \
	  $(CARGO) test --release --test tests stress:: -- --ignored --test-threads=1 --nocapture

## bench: serv6 against a bare std server in the same run; QUICK=1 short, CLIENTS=16 one count
# Results also go to a new file in target/bench-results/.
bench:
	ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; \
	  QUICK=$(QUICK) CLIENTS=$(CLIENTS) $(CARGO) bench --bench bench

## callgrind: instructions per exchange, repeatable where wall-clock figures are noise (valgrind)
callgrind: build
	sh scripts/callgrind.sh $(BIN)/serv6

## demo: a server and a few clients, to watch both sides
demo: build
	sh scripts/demo.sh $(BIN)

## cluster: two serv6 instances behind HAProxy on PORT (5006); Ctrl-C stops them all
cluster: build
	sh scripts/cluster.sh $(BIN)

## man: the manual pages, written by the programs from their own option tables
man: $(BIN)/serv6 $(BIN)/cli6
	mkdir -p $(TARGET)/man
	$(BIN)/serv6 --generate-man > $(TARGET)/man/serv6.8
	$(BIN)/cli6 --generate-man > $(TARGET)/man/cli6.1

## install: cli6, serv6, their manual pages and systemd units (receipt, daytime, time) under PREFIX (/usr/local); DESTDIR= stages
# serv6 is a daemon: sbin and section 8; cli6 a user command: bin and section 1.
# What is generated goes through a directory outside the tree: after
# `make`, `sudo make install` leaves no file of root's there.
install: $(BIN)/serv6 $(BIN)/cli6
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR)
	install -m 755 $(BIN)/cli6 $(DESTDIR)$(BINDIR)/cli6
	install -m 755 $(BIN)/serv6 $(DESTDIR)$(SBINDIR)/serv6
	install -m 644 contrib/systemd/serv6.socket contrib/systemd/serv6-daytime.socket \
	  contrib/systemd/serv6-time.socket $(DESTDIR)$(UNITDIR)/
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(BIN)/cli6 --generate-man > "$$tmp/cli6.1" && \
	  $(BIN)/serv6 --generate-man > "$$tmp/serv6.8" && \
	  sed 's|@SBINDIR@|$(SBINDIR)|' contrib/systemd/serv6.service > "$$tmp/serv6.service" && \
	  install -m 644 "$$tmp/cli6.1" $(DESTDIR)$(MANDIR)/man1/cli6.1 && \
	  install -m 644 "$$tmp/serv6.8" $(DESTDIR)$(MANDIR)/man8/serv6.8 && \
	  install -m 644 "$$tmp/serv6.service" $(DESTDIR)$(UNITDIR)/serv6.service

## uninstall: remove exactly what install put there
# In a staging DESTDIR, also the directories that this leaves empty.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@if [ -n "$(DESTDIR)" ]; then \
	  for dir in $(sort $(dir $(addprefix $(DESTDIR),$(INSTALLED)))); do \
	    while [ "$$dir" != "$(DESTDIR)" ] && [ "$$dir" != "$(DESTDIR)/" ] && rmdir "$$dir" 2>/dev/null; do \
	      dir=$$(dirname "$$dir"); \
	    done; \
	  done; \
	fi

## deb: a Debian package, serv6_VERSION_ARCH.deb, from a staged install (dpkg-deb)
deb: $(BIN)/serv6 $(BIN)/cli6
	sh contrib/debian/build.sh $(BIN) $(VERSION) $(TARGET)

## clean: remove what cargo built
clean:
	$(CARGO) clean

## help: this list
help:
	@sed -n 's/^## //p' Makefile
