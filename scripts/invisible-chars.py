#!/usr/bin/env python3
"""Prints the ranges of code points serv6's log escapes by property: the
controls (Cc), the format characters (Cf: bidirectional marks and
embeddings, zero-width characters, the byte order mark, ...) and the line
and paragraph separators (Zl, Zp), by Python's Unicode database. The table
in src/escape.rs is this output; its unit test runs this script again and
compares, walking the whole code space."""
import sys
import unicodedata

ESCAPED = {"Cc", "Cf", "Zl", "Zp"}

def ranges():
    start = None
    for cp in range(sys.maxunicode + 2):
        hit = cp <= sys.maxunicode and unicodedata.category(chr(cp)) in ESCAPED
        if hit and start is None:
            start = cp
        elif not hit and start is not None:
            yield start, cp - 1
            start = None

if __name__ == "__main__":
    print(f"# Unicode {unicodedata.unidata_version}")
    for first, last in ranges():
        print(f"{first:04x} {last:04x}")
