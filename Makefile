# serv6 / cli6. `make help` lists the targets.
#
#   make servidor                  run the server (foreground; Ctrl-C stops it)
#   make cliente                   type messages, one exchange per line
#   make cliente MSG="hola"        send one message
#   HOST=... PORT=...              where (server: address to bind; client: server);
#                                  unset, the programs' own defaults apply
#   make cluster                   two serv6 instances behind HAProxy on PORT (5006)
#   make install                   cli6, serv6, their manual pages and systemd units,
#                                  under PREFIX (/usr/local); DESTDIR=... stages them

CARGO ?= cargo
PORT  ?=
HOST  ?=
MSG   ?=
QUICK ?=
CLIENTS ?=
BIN   := target/release

# Where `make install` puts things (GNU conventions; DESTDIR is never set here).
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALLED := $(BINDIR)/cli6 $(SBINDIR)/serv6 $(MANDIR)/man1/cli6.1 $(MANDIR)/man8/serv6.8 \
             $(UNITDIR)/serv6.socket $(UNITDIR)/serv6.service

# Passed through the environment so that any characters survive quoting;
# MSG_TEXT is MSG as typed, since make would expand a `$` in it.
MSG_TEXT := $(value MSG)
export MSG_TEXT HOST PORT

.PHONY: all build servidor server cliente client test test-install stress bench callgrind demo \
        cluster man install uninstall clean help

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
	$(MAKE) --no-print-directory test-install

# make install and uninstall into a staging directory, and the units checked
# by systemd-analyze (tests/install.sh says what it skips, and why).
test-install: build
	sh tests/install.sh

# The attacks hold about 2000 sockets: raise the open-file limit if allowed.
stress:
	ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; \
	  $(CARGO) test --release --test tests stress:: -- --ignored --test-threads=1 --nocapture

# QUICK=1 for a short run, CLIENTS=16 for one client count.
# Results also go to a new file in target/bench-results/.
bench:
	ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; \
	  QUICK=$(QUICK) CLIENTS=$(CLIENTS) $(CARGO) bench --bench bench

# Instructions per exchange, counted by callgrind (apt-get install valgrind):
# repeatable where wall-clock figures are noise.
callgrind: build
	sh scripts/callgrind.sh $(BIN)/serv6

demo: build
	sh scripts/demo.sh $(BIN)

# Two instances behind HAProxy (apt-get install haproxy), on PORT or 5006.
cluster: build
	sh scripts/cluster.sh $(BIN)

# The manual pages, written by the programs from their own option tables.
man: build
	mkdir -p target/man
	$(BIN)/serv6 --generate-man > target/man/serv6.8
	$(BIN)/cli6 --generate-man > target/man/cli6.1

# serv6 is a daemon: sbin and section 8; cli6 a user command: bin and section 1.
install: build man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR)
	install -m 755 $(BIN)/cli6 $(DESTDIR)$(BINDIR)/cli6
	install -m 755 $(BIN)/serv6 $(DESTDIR)$(SBINDIR)/serv6
	install -m 644 target/man/cli6.1 $(DESTDIR)$(MANDIR)/man1/cli6.1
	install -m 644 target/man/serv6.8 $(DESTDIR)$(MANDIR)/man8/serv6.8
	install -m 644 contrib/systemd/serv6.socket $(DESTDIR)$(UNITDIR)/serv6.socket
	sed 's|@SBINDIR@|$(SBINDIR)|' contrib/systemd/serv6.service > target/serv6.service
	install -m 644 target/serv6.service $(DESTDIR)$(UNITDIR)/serv6.service

# Removes exactly what install put there; in a staging DESTDIR, also the
# directories that this leaves empty.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@if [ -n "$(DESTDIR)" ]; then \
	  for dir in $(sort $(dir $(addprefix $(DESTDIR),$(INSTALLED)))); do \
	    while [ "$$dir" != "$(DESTDIR)" ] && [ "$$dir" != "$(DESTDIR)/" ] && rmdir "$$dir" 2>/dev/null; do \
	      dir=$$(dirname "$$dir"); \
	    done; \
	  done; \
	fi

clean:
	$(CARGO) clean

help:
	@sed -n 's/^#   //p' Makefile
	@echo "targets: build servidor/server cliente/client test stress bench demo cluster man install uninstall clean"
