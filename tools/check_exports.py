#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks what a shared mprocess library exports (its dynamic symbol table): mprocess's public API and
nothing else. Every symbol must belong to namespace mprocess (typeinfo and vtables of its classes
included), and none may name an internal namespace (detail, platform, channel, wait, start), not even
as the type of a parameter: what the public headers' templates call out of line is a member of a
public class. Prints every symbol that breaks a rule and exits 1 if there is one.

    check_exports.py libmprocess.so [libmprocess_mpi.so]"""
import re
import subprocess
import sys

INTERNAL = re.compile(r"mprocess::(detail|platform|channel|wait|start)::")
WRAPPERS = re.compile(r"^(typeinfo name for|typeinfo for|vtable for|VTT for|non-virtual thunk to|virtual thunk to) ")


def dynamic_symbols(library):
    out = subprocess.run(["nm", "-D", "--defined-only", "-C", library], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            yield parts[2]


def breach(symbol):
    name = WRAPPERS.sub("", symbol)
    if not name.startswith("mprocess::"):
        return "not in namespace mprocess"
    if INTERNAL.search(name):
        return "names an internal namespace"
    return None


def main(libraries):
    bad = 0
    for library in libraries:
        count = 0
        for symbol in dynamic_symbols(library):
            count += 1
            why = breach(symbol)
            if why:
                print(f"{library}: {symbol}: {why}")
                bad += 1
        print(f"{library}: {count} exported symbols")
        if count == 0:
            print(f"{library}: exports nothing: not a shared library build?")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main([arg for arg in sys.argv[1:] if arg]))  # an absent library comes as ""
