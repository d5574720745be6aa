#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""mprocess's micro benchmarks beside the machine's limits, and the rows bench/fair/ has not taken yet.

The comparison with Python's multiprocessing is bench/fair/run.py: every run a fresh process on both
sides, interleaved, the same span. This script runs the Google Benchmark binaries
(build/release/bench/bench_pipe and its neighbours) and prints, for each row, mprocess's figure next
to the raw limit of the machine (a kernel pipe, fork+waitpid, a shared-memory ring, memcpy). Google
Benchmark repeats each function, so these figures are warm: they tell how close mprocess comes to
the machine, never how it compares with Python (a comparison row must not come from a repeated
benchmark function).

    python3 bench/compare.py                      # everything
    python3 bench/compare.py --only pipe-rtt      # rows whose key or workload contains a word
    python3 bench/compare.py --markdown           # the table as Markdown
    python3 bench/compare.py --list               # the rows and their keys
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BENCH = REPO / "build" / "release" / "bench" / "bench_pipe"

# ---------------------------------------------------------------------------------------------

class WorkloadError(RuntimeError):
    pass


def cpp_perf1_speedup(examples_dir: Path, n: int = 1_000_000_000, runs: int = 3) -> tuple[float, float]:
    """examples/perf1 with a count large enough that the work dwarfs process start-up: the speedup of
    two processes, and of two threads (the limit: what this machine's two CPUs give at all)."""
    out = subprocess.run([str(examples_dir / "perf1"), str(n), str(runs)], capture_output=True, text=True,
                         timeout=600, check=True).stdout
    procs = re.search(r"multiprocess speedup = ([0-9.]+)x", out)
    threads = re.search(r"Threaded speedup = ([0-9.]+)x", out)
    if not procs or not threads:
        raise WorkloadError(f"perf1 printed no speedup: {out!r}")
    return float(procs.group(1)), float(threads.group(1))


# ---------------------------------------------------------------------------------------------
# Rows

# bench_mpi runs under mpirun: rank 0 measures, the other two ranks are the mpi::Pool's workers.
MPIRUN = ("mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3")

@dataclass
class Row:
    key: str                 # short id for --only
    workload: str            # as printed
    kind: str                # "time": seconds per operation, lower is better; "rate": per second, higher is
                             # better; "speedup": parallel vs sequential (cpp, raw: parallel; base: sequential)
    cpp: Optional[str]       # C++ benchmark (its name without /min_time:..., /real_time, ...)
    raw: Optional[str] = None      # C++ benchmark of the machine's limit for this workload
    binary: str = "bench_pipe"     # the C++ binary holding cpp and raw
    unit: str = ""                 # for rates: what is counted ("msgs")
    raw_goal: Optional[float] = None  # time rows: at most this many times the raw limit
    raw_share: Optional[float] = None  # rate rows: at least this fraction of the raw limit
    base: Optional[str] = None     # speedup rows: the C++ benchmark of the same work in one thread
    min_speedup: Optional[float] = None  # speedup rows: at least this speedup
    launcher: tuple[str, ...] = ()  # run the binary through this (mpirun for bench_mpi)


ROWS: list[Row] = [
    Row("pipe-rtt-8", "Pipe round trip, 8-byte object ", "time",
        cpp="BM_PipeRoundTrip/8",
        raw="BM_RawKernelPipeRoundTrip"),
    Row("pipe-rtt-64k", "Pipe round trip, 64 KiB bytes", "time",
        cpp="BM_PipeRoundTrip/65536"),
    Row("pipe-throughput", "Pipe one-way, 8-byte objects ", "rate",
        cpp="BM_PipeThroughput",
        raw="BM_RawKernelPipeThroughput", unit="msgs"),
    Row("start-fork", "Process start+join, fork", "time", cpp="BM_ProcessStartJoin/fork",
        raw="BM_RawForkWaitpid", binary="bench_process", raw_goal=1.5),
    Row("start-spawn", "Process start+join, spawn (raw: posix_spawn of /bin/true)", "time",
        cpp="BM_ProcessStartJoin/spawn", raw="BM_RawPosixSpawnTrue",
        binary="bench_process"),
    Row("start-forkserver", "Process start+join, forkserver", "time", cpp="BM_ProcessStartJoin/forkserver",
        raw="BM_RawForkWaitpid", binary="bench_process"),
    Row("queue-spsc", "Queue 1 producer -> 1 consumer, 8-byte items (raw: SPSC ring)", "rate",
        cpp="BM_QueueThroughput/8", raw="BM_RawShmRing/8", binary="bench_queue",
        raw_share=0.10, unit="items"),
    Row("queue-mpmc", "Queue 2 producers x 2 consumers, 8-byte items ", "rate",
        cpp="BM_QueueMpmc", binary="bench_queue", unit="items"),
    Row("queue-4k", "Queue 4 KiB items (raw: SPSC ring of 4 KiB slots)", "rate",
        cpp="BM_QueueThroughput/4096",
        raw="BM_RawShmRing/4096", binary="bench_queue", unit="items"),
    Row("queue-64m", "Queue 64 MiB items (raw: memcpy of 64 MiB)", "rate",
        cpp="BM_QueueBigItems",
        raw="BM_RawMemcpy64MiB", binary="bench_queue", raw_share=0.30, unit="MiB"),
    Row("lock", "Lock acquire+release, uncontended (raw: a compare-and-swap and an exchange)", "time",
        cpp="BM_LockUncontended", raw="BM_RawAtomicPair", binary="bench_sync"),
    Row("counter", "Value counter under its lock, 2 processes incrementing", "rate",
        cpp="BM_ContendedCounter", binary="bench_sync", unit="increments"),
    Row("value-rw", "Value read then write (each takes the lock)", "time",
        cpp="BM_ValueReadWrite", binary="bench_sync"),
    Row("pool-map", "Pool(2).map of 1,000,000 trivial tasks (raw: the same loop in one process)", "rate",
        cpp="BM_PoolMapTrivial", raw="BM_RawMapTrivial", binary="bench_pool",
        unit="items"),
    Row("pool-apply", "Pool(2).apply_async(f, x).get() round trip", "time",
        cpp="BM_PoolApplyRoundTrip", binary="bench_pool"),
    Row("pool-cpu", "Pool(2) CPU-bound speedup, prime count in 16 ranges (raw: 2 threads)", "speedup",
        cpp="BM_PoolPrimes", raw="BM_ThreadsPrimes", base="BM_SequentialPrimes",
        binary="bench_pool", min_speedup=1.9),
    Row("net-rtt", "Client round trip on 127.0.0.1 with an authkey, small int (raw: plain TCP)", "time",
        cpp="BM_ClientRoundTrip", raw="BM_RawTcpRoundTrip", binary="bench_net"),
    Row("manager-queue", "Manager() queue through proxies, producer -> consumer process", "rate",
        cpp="BM_ManagerQueue/local", binary="bench_net", unit="items"),
    Row("manager-queue-tcp", "The same through a manager on 127.0.0.1 (an authkey; clients on this host move to shared memory)", "rate",
        cpp="BM_ManagerQueue/tcp", binary="bench_net", unit="items"),
    Row("tickets", "tickets app: 4 controllers, a dispatcher with 2 workers, on 127.0.0.1", "rate",
        cpp="BM_Tickets4Controllers", binary="bench_tickets", unit="tickets"),
    Row("mpi-apply", "mpi::Pool apply_async round trip, 3 ranks (raw: the local Pool, 2 workers)", "time",
        cpp="BM_MpiApply", raw="BM_LocalApply", binary="bench_mpi", raw_goal=3, launcher=MPIRUN),
    Row("mpi-map", "mpi::Pool map of 100,000 tasks, chunksize 1, 3 ranks (raw: the local Pool)", "rate",
        cpp="BM_MpiMap100k", raw="BM_LocalMap100k", binary="bench_mpi", unit="tasks",
        launcher=MPIRUN),
]


# ---------------------------------------------------------------------------------------------
# C++ side

TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def bench_key(run_name: str) -> str:
    """BM_X/8/min_time:0.500/real_time (or manual_time) -> BM_X/8: the name rows refer to."""
    return "/".join(p for p in run_name.split("/") if ":" not in p and p not in ("real_time", "manual_time"))


@dataclass
class CppResult:
    seconds: Optional[float] = None       # real time per iteration
    items_per_second: Optional[float] = None
    error: Optional[str] = None


def run_cpp(binary: Path, names: list[str], repetitions: int, timeout: float,
            launcher: tuple[str, ...] = ()) -> dict[str, CppResult]:
    """Runs one bench binary over the named benchmarks; returns medians by bench_key."""
    results: dict[str, CppResult] = {}
    if not binary.exists():
        msg = f"{binary} not found (build it: cmake --build build --target {binary.name})"
        return {n: CppResult(error=msg) for n in names}
    pattern = "^(" + "|".join(names) + ")(/|$)"  # a regex; the names hold no special characters
    cmd = [*launcher, str(binary), "--benchmark_format=json", f"--benchmark_filter={pattern}"]
    if repetitions > 1:
        cmd += [f"--benchmark_repetitions={repetitions}", "--benchmark_report_aggregates_only=true"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {n: CppResult(error=f"{binary.name} took longer than {timeout:.0f} s") for n in names}
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {n: CppResult(error=f"{binary.name} failed (exit {proc.returncode}): {tail}") for n in names}

    for b in data.get("benchmarks", []):
        key = bench_key(b.get("run_name", b["name"]))
        if b.get("error_occurred"):
            results[key] = CppResult(error=b.get("error_message", "error"))
            continue
        # With repetitions take the median aggregate; without, the single run.
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        if repetitions > 1 and b.get("run_type") != "aggregate":
            continue
        scale = TIME_UNITS[b.get("time_unit", "ns")]
        results[key] = CppResult(seconds=b["real_time"] * scale, items_per_second=b.get("items_per_second"))
    for n in names:
        results.setdefault(n, CppResult(error=f"{binary.name} reported no result (exit {proc.returncode})"))
    return results


def cpp_value(row: Row, r: Optional[CppResult], base: Optional[CppResult] = None) -> Optional[float]:
    if r is None or r.error:
        return None
    if row.kind == "speedup":
        return base.seconds / r.seconds if base and not base.error and r.seconds else None
    return r.seconds if row.kind == "time" else r.items_per_second


# ---------------------------------------------------------------------------------------------
# Formatting

def fmt_time(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if s >= scale or unit == "ns":
            return f"{s / scale:.3g} {unit}"
    return f"{s} s"


def fmt_rate(r: float, unit: str) -> str:
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0)):
        if r >= scale or not prefix:
            return f"{r / scale:.3g} {prefix} {unit}/s".replace("  ", " ")
    return f"{r}/s"


def fmt_value(row: Row, v: Optional[float]) -> str:
    if v is None:
        return "—"
    if row.kind == "speedup":
        return f"{v:.2f}x"
    return fmt_time(v) if row.kind == "time" else fmt_rate(v, row.unit)


def render(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    sep = "-+-".join("-" * w for w in widths)
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), sep]
    out += [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", type=Path, default=DEFAULT_BENCH,
                    help="path of bench_pipe (other bench binaries are looked for next to it); default %(default)s")
    ap.add_argument("--only", action="append", default=[], metavar="WORD",
                    help="only rows whose key or workload contains WORD (repeatable, or comma-separated)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    ap.add_argument("--cpp-repetitions", type=int, default=3,
                    help="--benchmark_repetitions for the C++ binary; the median is shown")
    ap.add_argument("--timeout", type=float, default=180, help="seconds allowed for each C++ binary")
    args = ap.parse_args()

    if args.list:
        for r in ROWS:
            print(f"{r.key:20} {r.workload}")
        return 0

    words = [w.strip().lower() for arg in args.only for w in arg.split(",") if w.strip()]
    rows = [r for r in ROWS if not words or any(w in r.key.lower() or w in r.workload.lower() for w in words)]
    perf1 = not words or any(w in "perf1 speedup cpu" for w in words)
    if not rows and not perf1:
        print(f"no row matches {words}; see --list", file=sys.stderr)
        return 0

    load_before = os.getloadavg()[0]
    bench_dir = args.bench.parent
    by_binary: dict[str, list[str]] = {}
    for r in rows:
        for name in (r.cpp, r.raw, r.base):
            if name and name not in by_binary.setdefault(r.binary, []):
                by_binary[r.binary].append(name)
    cpp: dict[tuple[str, str], CppResult] = {}
    for binary, names in by_binary.items():
        path = args.bench if binary == args.bench.name or binary == "bench_pipe" else bench_dir / binary
        print(f"running {path} ({len(names)} benchmarks x {args.cpp_repetitions}) ...", file=sys.stderr, flush=True)
        launcher = next((r.launcher for r in rows if r.binary == binary and r.launcher), ())
        for name, res in run_cpp(path, names, args.cpp_repetitions, args.timeout, launcher).items():
            cpp[(binary, name)] = res
    load_after = os.getloadavg()[0]

    header = ["workload", "mprocess", "raw limit", "goal", "met?"]
    table, notes, verdicts = [], [], []
    for r in rows:
        res = cpp.get((r.binary, r.cpp)) if r.cpp else None
        base_res = cpp.get((r.binary, r.base)) if r.base else None
        mine = cpp_value(r, res, base_res)
        if res and res.error:
            notes.append(f"{r.key}: mprocess: {res.error}")
        raw_res = cpp.get((r.binary, r.raw)) if r.raw else None
        raw = cpp_value(r, raw_res, base_res)
        if raw_res and raw_res.error:
            notes.append(f"{r.key}: raw limit: {raw_res.error}")
        goals, checks = [], []
        of_raw = mine / raw if mine and raw else None
        if r.min_speedup is not None:
            goals.append(f"≥ {r.min_speedup:g}x speedup" + ("" if raw is None else f" (machine: {raw:.2f}x)"))
            checks.append(None if mine is None else mine >= r.min_speedup)
        if r.raw_goal is not None:
            goals.append(f"≤ {r.raw_goal:g}x raw" + ("" if of_raw is None else f" (is {of_raw:.2f}x)"))
            checks.append(None if of_raw is None else of_raw <= r.raw_goal)
        if r.raw_share is not None:
            goals.append(f"≥ {r.raw_share:.0%} of raw" + ("" if of_raw is None else f" (is {of_raw:.0%})"))
            checks.append(None if of_raw is None else of_raw >= r.raw_share)
        if not goals:
            goal, met = "—", "—"
        else:
            goal = "; ".join(goals)
            met = "n/a" if None in checks else ("yes" if all(checks) else "NO")
            verdicts.append((r, met, goal))
        table.append([r.workload, fmt_value(r, mine), fmt_value(r, raw), goal, met])

    print(render(header, table, args.markdown))
    print()
    item = "- " if args.markdown else "  "
    print(f"mprocess: median of {args.cpp_repetitions} benchmark repetition(s). {os.cpu_count()} CPUs, "
          f"load average {load_before:.2f} before, {load_after:.2f} after. Against Python: bench/fair/run.py.")
    if notes:
        print("Errors:")
    for n in notes:
        print(f"{item}{n}")
    if verdicts:
        met = sum(1 for _, m, _ in verdicts if m == "yes")
        print(f"Goals against the machine's limits met: {met} of {len(verdicts)}.")
        for r, m, want in verdicts:
            state = {"yes": "met", "NO": "NOT MET", "n/a": "not measured"}[m]
            print(f"{item}{state:13} {r.workload}: goal {want}")
    if perf1:
        print()
        print("CPU-bound work (perf1): two processes vs the same work in a row", file=sys.stderr, flush=True)
        mine = limit = None
        try:
            mine, limit = cpp_perf1_speedup(bench_dir.parent / "examples")
        except Exception as e:  # reported, not fatal
            print(f"perf1: {e}")
        cells = ["perf1: 2 processes vs the same work in a row (2 x 1e9)",
                 "—" if mine is None else f"{mine:.2f}x", "—" if limit is None else f"{limit:.2f}x", "≥ 1.8x",
                 "n/a" if mine is None else ("yes" if mine >= 1.8 else "NO")]
        print(render(["workload", "mprocess speedup", "raw limit (2 C++ threads)", "goal", "met?"], [cells],
                     args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
