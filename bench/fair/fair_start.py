#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Python's side of the start rows (bench/fair/run.py): Process start+join, n times, per start method.

A program of its own, as small as a user's: spawn and forkserver children re-import the main module,
and they should import no more than a user's program would make them.

    fair_start.py method=spawn n=50      prints {"value": seconds per start+join}
"""
import json
import multiprocessing as mp
import sys
import time


def noop():
    pass


def main():
    args = dict(a.split("=", 1) for a in sys.argv[1:])
    ctx = mp.get_context(args["method"])
    n = int(args["n"])
    t0 = time.monotonic()
    for _ in range(n):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        if p.exitcode != 0:
            sys.exit(f"start: a child exited with {p.exitcode}")
    print(json.dumps({"value": (time.monotonic() - t0) / n}))


if __name__ == "__main__":
    main()
