#!/bin/sh
# `make test`'s tests, after the formatting and lint checks: cargo's tests,
# then the install and package checks (make test-install), each shown as
# it runs, then one line totalling all of them. A test that skipped, in
# whole or in part, counts as skipped, not passed: the tests record each
# skip in $target/test-skips (tests/harness/skip.rs). Cargo's ignored tests
# are the slow ones that `make stress` runs: counted apart.
# Usage: run.sh CARGO TARGETDIR MAKE
set -u
cargo=${1:-cargo}
target=${2:-target}
make=${3:-make}
mkdir -p "$target"
out=$target/test-output
skips=$target/test-skips
: >"$skips"
: >"$out"

# Runs a part in the foreground (Ctrl-C stops it as ever), its output
# shown and kept in $out; fails as it did. The output goes through a fifo
# to a reader that stops at the part's end marker, not at end of file: a
# process that a failing test left behind, still holding the output,
# cannot hold make test up.
fifo=$target/test-fifo
end="-- end of a part of make test ($$) --"
part() {
    rm -f "$fifo" && mkfifo "$fifo"
    show <"$fifo" &
    reader=$!
    exec 4>"$fifo"
    status=0
    "$@" >&4 2>&4 4>&- || status=$?
    printf '%s\n' "$end" >&4
    exec 4>&-
    wait "$reader"
    rm -f "$fifo"
    return "$status"
}
show() {
    while IFS= read -r line; do
        case $line in
            *"$end")
                # After output that did not end its last line.
                line=${line%"$end"}
                [ -z "$line" ] && return
                printf '%s\n' "$line" && printf '%s\n' "$line" >>"$out"
                return
                ;;
        esac
        printf '%s\n' "$line" && printf '%s\n' "$line" >>"$out"
    done
}
trap 'kill "$reader" 2>/dev/null; rm -f "$fifo"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failed_parts=
# Every test binary, even after one fails, so that the total is whole.
SERV6_SKIPS=$(realpath "$skips") part $cargo test --no-fail-fast || failed_parts="$failed_parts cargo-test"
part $make --no-print-directory test-install || failed_parts="$failed_parts test-install"
# The same tests against the standard-library build; its skips are named
# `portable <test>`, and its output is kept apart to find them in.
main_out=$out
out=$target/test-output-portable
: >"$out"
SERV6_SKIPS=$(realpath "$skips") part $make --no-print-directory test-portable ||
    failed_parts="$failed_parts test-portable"

# Skipped: each test that recorded a skip and passed, once per build.
skipped_tests=$(cut -f1 "$skips" | sort -u | while IFS= read -r name; do
    case $name in
        "portable "*) grep -qxF "test ${name#portable } ... ok" "$out" && echo "$name" ;;
        *) grep -qxF "test $name ... ok" "$main_out" && echo "$name" ;;
    esac
done)
cut -f1,2 "$skips" | sort -u -t "$(printf '\t')" -k1,1 |
    sed 's/^\([^\t]*\)\t/skipped: \1: /'
awk -v skipped="$(echo "$skipped_tests" | grep -c .)" -v failed_parts="$failed_parts" '
    /^test result: / {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed;/) passed += $i
            if ($(i + 1) ~ /^failed;/) failed += $i
            if ($(i + 1) ~ /^ignored;/) ignored += $i
        }
    }
    # install: and deb: summaries, as tests/install.sh and tests/deb.sh print them.
    /^(install|deb): [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$/ {
        passed += $2; failed += $4; skip += $6
    }
    /^deb: installing .* left to make test-system/ { to_system = 1 }
    END {
        passed -= skipped; skip += skipped
        # A part that failed with no test failing (it did not build, say).
        note = ""
        if (failed == 0 && failed_parts != "") { failed = 1; note = ";" failed_parts " failed" }
        line = sprintf("make test: %d passed, %d failed, %d skipped", passed, failed, skip)
        if (ignored) note = sprintf("; %d left to make stress", ignored) note
        if (to_system) note = note "; installing the package left to make test-system"
        if (note != "") line = line " (" substr(note, 3) ")"
        print line
    }' "$main_out" "$out"
[ -z "$failed_parts" ]
