#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks what a shared mprocess library exports (its dynamic symbol table): mprocess's public API and
nothing else. Every symbol must belong to namespace mprocess (typeinfo and vtables of its classes
included); none may belong to an internal layer (platform, channel, wait, start, the pool core, the
manager's server); and of mprocess::detail only what the public headers' templates call, listed below.
Prints every symbol that breaks a rule and exits 1 if there is one.

    check_exports.py libmprocess.so [libmprocess_mpi.so]"""
import re
import subprocess
import sys

# Out-of-line functions and classes the templates in include/mprocess call: they are part of the
# binary interface though no user names them. A new one must be added here on purpose.
HEADER_CALLS = {
    "QueueHandle", "SyncHandle", "PoolCore", "TaskState", "SpawnArg",
    "advise_large_buffer", "call", "check_frame", "close_spawn_fds", "join_parts", "register_entry_point",
    "release_scratch", "report_progress", "scratch", "task_message_head", "throw_bad_size", "throw_type_mismatch",
    "wait_task", "when_done", "when_done_user",
}
INTERNAL = re.compile(r"mprocess::(platform|channel|wait|start)::")
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
    if INTERNAL.match(name):
        return "an internal layer's"
    if name.startswith("mprocess::detail::"):
        head = re.match(r"mprocess::detail::([A-Za-z_0-9]+)", name).group(1)
        if head not in HEADER_CALLS:
            return "internal (mprocess::detail, not called by the public headers)"
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
