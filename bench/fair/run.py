#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""mprocess against Python's multiprocessing, like for like (docs/benchmarks.md says why each rule).

Every run of every row is a fresh process on both sides (fair_cpp, and fair.py or fair_start.py in a
fresh interpreter), given the same arguments from the table below; the two sides alternate run by run
(Python first in even runs, C++ first in odd ones); each run checks its own result whole, and a run
that fails reports no number. A row gives, for each side, the median and min..max over the runs, and
the ratio of the medians (how many times better mprocess is: faster, more per second, or, for the
speedup row, the ratio of the two speedups).

    python3 bench/fair/run.py                    # every row, 5 runs each
    python3 bench/fair/run.py --only queue       # rows whose key contains a word
    python3 bench/fair/run.py --runs 9 --markdown
    python3 bench/fair/run.py --list
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_CPP = REPO / "build" / "release" / "bench" / "fair_cpp"


def prime_count(limit: int) -> int:
    """The number of primes below limit (a sieve): what the CPU rows' trial division must find."""
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\0\0"
    for i in range(2, int(limit ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytearray(len(range(i * i, limit, i)))
    return sum(sieve)


@dataclass
class Row:
    key: str
    label: str
    kind: str  # "time": seconds per operation; "rate": items per second; "speedup": serial / parallel
    workload: str
    args: dict = field(default_factory=dict)
    py_script: str = "fair.py"
    timeout: float = 120.0
    netns: bool = False  # the clients in a network namespace of their own, the server here
    one_cpu: bool = False  # every process of both sides on CPU 0 (taskset): a peer that cannot run meanwhile
    # The machine's limit for the row's work: a fair_cpp workload in plain POSIX, no mprocess (its
    # name, its arguments, and for a netns row the server it talks to), run as a third side.
    limit: Optional[tuple] = None

    def argv(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.args.items()]


CPU_LIMIT = 500_000
ROWS = [
    Row("pipe-rtt-8", "Pipe round trip, 8-byte object (Python: small int)", "time", "pipe-rtt", {"n": 5000, "size": 0}),
    Row("pipe-rtt-8-one-cpu", "The same, both processes on one CPU", "time", "pipe-rtt", {"n": 5000, "size": 0},
        one_cpu=True),
    Row("pipe-rtt-64k", "Pipe round trip, 64 KiB bytes", "time", "pipe-rtt", {"n": 2000, "size": 65536}),
    Row("pipe-throughput", "Pipe one-way, 8-byte objects (Python: small ints), one reply per 16,384", "rate",
        "pipe-throughput", {"n": 262144, "batch": 16384}),
    Row("start-fork", "Process start+join, fork", "time", "start", {"method": "fork", "n": 100}, "fair_start.py"),
    Row("start-spawn", "Process start+join, spawn", "time", "start", {"method": "spawn", "n": 20}, "fair_start.py"),
    Row("start-forkserver", "Process start+join, forkserver (the server's start included)", "time", "start",
        {"method": "forkserver", "n": 20}, "fair_start.py"),
    Row("queue-spsc", "Queue 1 producer -> 1 consumer, 8-byte items (Python: small ints)", "rate", "queue",
        {"n": 262144, "size": 0, "producers": 1, "consumers": 1}),
    Row("queue-mpmc", "Queue 2 producers x 2 consumers, 8-byte items (Python: small ints)", "rate", "queue",
        {"n": 262144, "size": 0, "producers": 2, "consumers": 2}),
    Row("queue-4k", "Queue 4 KiB items, distinct, kept by the consumer", "rate", "queue",
        {"n": 20000, "size": 4096, "producers": 1, "consumers": 1},
        limit=("queue-limit", {"n": 20000, "size": 4096})),
    Row("queue-64m", "Queue 64 MiB items, distinct, kept by the consumer", "rate", "queue",
        {"n": 6, "size": 64 << 20, "producers": 1, "consumers": 1},
        limit=("queue-limit", {"n": 6, "size": 64 << 20})),
    Row("lock", "Lock acquire+release, uncontended", "time", "lock", {"n": 300000}),
    Row("counter", "Value counter under its lock, 2 processes incrementing", "rate", "counter",
        {"n": 100000, "processes": 2}),
    Row("value-rw", "Value read then write (each takes the lock)", "time", "value-rw", {"n": 200000}),
    Row("pool-map", "Pool(2).map of 1,000,000 64-bit squares, cold pool, input built in the span", "rate",
        "pool-map", {"n": 1_000_000, "processes": 2},
        limit=("pool-map-limit", {"n": 1_000_000, "processes": 2})),
    Row("pool-apply", "Pool(2).apply_async(f, x).get() round trip, cold pool", "time", "pool-apply",
        {"n": 2000, "processes": 2}),
    Row("pool-apply-one-cpu", "The same, every process on one CPU", "time", "pool-apply", {"n": 2000, "processes": 2},
        one_cpu=True),
    Row("pool-cpu", f"Pool(2) speedup over serial, primes below {CPU_LIMIT:,} in 16 ranges (each side's own)",
        "speedup", "pool-cpu", {"limit": CPU_LIMIT, "chunks": 16, "processes": 2, "primes": None}, timeout=300),
    Row("tickets", "tickets app: 4 controllers, a dispatcher with 2 workers on 127.0.0.1, 2,000 numbers each, "
        "from the controllers' launch to the last one's exit", "rate", "tickets",
        {"controllers": 4, "per_controller": 2000}, timeout=300),
    Row("net-rtt", "Client round trip on 127.0.0.1 with an authkey, 8-byte object (Python: small int)", "time",
        "net-rtt", {"n": 5000}),
    Row("net-rtt-one-cpu", "The same, both processes on one CPU", "time", "net-rtt", {"n": 5000}, one_cpu=True),
    Row("manager-queue", "Manager() queue through proxies, this process -> a consumer, one reply per 2,000", "rate",
        "manager-queue", {"n": 20000, "batch": 2000, "tcp": 0}),
    Row("manager-queue-tcp", "The same over TCP for both: the server here, the two clients in another network "
        "namespace (a veth pair)", "rate", "manager-queue", {"n": 20000, "batch": 2000, "tcp": 1}, netns=True,
        limit=("tcp-rtt", {"n": 20000}, "tcp-echo-serve")),
    Row("manager-queue-tcp-shortcut", "The same, manager on 127.0.0.1 with an authkey: mprocess's clients on this "
        "host move to shared memory, Python's stay on TCP", "rate", "manager-queue",
        {"n": 20000, "batch": 2000, "tcp": 1}),
]


def run_side(cmd: list[str], timeout: float) -> tuple[Optional[dict], str]:
    """One fresh process; what it printed (its JSON lines, merged: "value", and "p99" for the latency rows),
    or None and why not. The whole process group goes at the end."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"timed out after {timeout:.0f} s"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children it left behind
        except ProcessLookupError:
            pass
    if proc.returncode != 0:
        return None, (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    try:
        merged = {}
        for line in out.strip().splitlines():
            merged.update(json.loads(line))
        float(merged["value"])
        return merged, ""
    except (ValueError, KeyError, TypeError):
        return None, f"unreadable output: {out.strip()[-200:]!r}"


def end_group(proc: subprocess.Popen) -> None:
    """A server told to end: its time to do so, then whatever is left of its process group goes."""
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tickets_side(lang: str, cpp_bin: Path, controllers: int, per_controller: int) -> tuple[Optional[dict], str]:
    """One run of the tickets app (apps/tickets, or tickets_py.py: the same roles and messages), its
    dispatcher fresh: tickets per second over all controllers, from their launch to the last one's exit,
    every controller having every answer. The same code drives both sides."""
    if lang == "cpp":
        app = [str(cpp_bin.parent.parent / "apps" / "tickets" / "tickets")]
        dispatcher = [*app, "dispatcher", "--listen", "127.0.0.1:0", "--workers", "2", "--quiet"]
        controller = lambda address: [*app, "controller", "--connect", address, "--quiet"]
    else:
        app = [sys.executable, str(HERE / "tickets_py.py")]
        dispatcher = [*app, "dispatcher", "127.0.0.1:0"]
        controller = lambda address: [*app, "controller", address]
    env = dict(os.environ, TICKETS_AUTHKEY="bench")
    d = subprocess.Popen(dispatcher, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        line = d.stdout.readline()
        if "serving on " not in line:
            return None, f"the dispatcher did not start: {line!r}"
        address = line.split("serving on ", 1)[1].split()[0]
        numbers = "".join(f"{i - per_controller // 2}\n" for i in range(per_controller))
        t0 = time.monotonic()
        cs = [subprocess.Popen(controller(address), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=env, start_new_session=True) for _ in range(controllers)]
        for c in cs:
            c.stdin.write(numbers)
            c.stdin.close()
        outs = [c.stdout.read() for c in cs]
        for c in cs:
            c.wait(timeout=300)
        elapsed = time.monotonic() - t0
        want = f"summary: {per_controller} tickets, {per_controller} answered, 0 failed"
        if any(want not in o for o in outs) or any(c.returncode != 0 for c in cs):
            return None, "a controller did not get every answer"
        return {"value": controllers * per_controller / elapsed}, ""
    finally:
        d.send_signal(signal.SIGINT)
        end_group(d)


class NetNamespace:
    """A network namespace joined to this one by a veth pair, for rows where the clients must reach the
    server over TCP as from another machine (no same-host shortcut: Unix sockets, abstract ones included,
    do not cross namespaces). Needs root and iproute2; removed on exit."""

    def __init__(self):
        self.name = f"mpbench{os.getpid()}"
        self.host, self.peer = "10.231.7.1", "10.231.7.2"
        outer, inner = f"mpb{os.getpid() % 100000}a", f"mpb{os.getpid() % 100000}b"
        steps = [["ip", "netns", "add", self.name],
                 ["ip", "link", "add", outer, "type", "veth", "peer", "name", inner],
                 ["ip", "link", "set", inner, "netns", self.name],
                 ["ip", "addr", "add", f"{self.host}/30", "dev", outer],
                 ["ip", "link", "set", outer, "up"],
                 ["ip", "netns", "exec", self.name, "ip", "addr", "add", f"{self.peer}/30", "dev", inner],
                 ["ip", "netns", "exec", self.name, "ip", "link", "set", inner, "up"],
                 ["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"]]
        self.outer = outer
        for step in steps:
            r = subprocess.run(step, capture_output=True, text=True)
            if r.returncode != 0:
                self.close()
                raise RuntimeError(f"{' '.join(step)}: {r.stderr.strip()} (the row needs root and iproute2)")

    def close(self):
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def remote_side(serve: list[str], client: list[str], netns: NetNamespace, timeout: float):
    """A server started here (this namespace), a client run in `netns`: the client's value."""
    server = subprocess.Popen([*serve, f"address={netns.host}:0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        line = server.stdout.readline()
        if "serving on " not in line:
            return None, f"the server did not start: {line!r}"
        address = line.split("serving on ", 1)[1].strip()
        return run_side(["ip", "netns", "exec", netns.name, *client, f"connect={address}"], timeout)
    finally:
        server.stdin.close()  # its end
        end_group(server)


@dataclass
class Result:
    cpp: list[float] = field(default_factory=list)
    py: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)  # the machine's limit, for rows that have one
    errors: list[str] = field(default_factory=list)


def measure(row: Row, cpp_bin: Path, runs: int, verbose: bool) -> Result:
    res = Result()
    netns = None
    if row.netns:
        try:
            netns = NetNamespace()
        except RuntimeError as e:
            res.errors.append(str(e))
            return res
    try:
        return measure_runs(row, cpp_bin, runs, verbose, res, netns)
    finally:
        if netns:
            netns.close()


def measure_runs(row: Row, cpp_bin: Path, runs: int, verbose: bool, res: Result, netns) -> Result:
    pin = ["taskset", "-c", "0"] if row.one_cpu else []
    # Each side: its name, its command, the workload in it, and the server it talks to in a netns row.
    sides = [("py", [*pin, sys.executable, str(HERE / row.py_script),
                     *([] if row.py_script != "fair.py" else [row.workload]), *row.argv()],
              row.workload, "manager-serve"),
             ("cpp", [*pin, str(cpp_bin), row.workload, *row.argv()], row.workload, "manager-serve")]
    if row.limit:
        workload, args, *serve = row.limit
        sides.append(("raw", [*pin, str(cpp_bin), workload, *(f"{k}={v}" for k, v in args.items())], workload,
                      serve[0] if serve else None))
    for r in range(runs):
        order = sides[r % len(sides):] + sides[:r % len(sides)]  # each side first in turn
        for name, cmd, workload, serve_workload in order:
            if row.workload == "tickets":
                out, why = tickets_side(name, cpp_bin, row.args["controllers"], row.args["per_controller"])
            elif netns:
                serve = [*cmd[:cmd.index(workload)], serve_workload]
                out, why = remote_side(serve, cmd, netns, row.timeout)
            else:
                out, why = run_side(cmd, row.timeout)
            value = None if out is None else float(out["value"])
            if value is None:
                res.errors.append(f"{name} run {r + 1}: {why}")
            else:
                getattr(res, name).append(value)
            if verbose:
                print(f"  {row.key} run {r + 1} {name}: {value if value is not None else why}", file=sys.stderr)
    return res


# The latency table (as iceoryx2 publishes one): half a round trip by payload size, both ends on
# different CPUs and on one, mprocess's Pipe beside a Unix socket pair (the kernel's path, from fair_cpp)
# and Python's Pipe, all three in each run.
LATENCY_SIZES = [(64, 2000), (4096, 2000), (65536, 1000), (1 << 20, 300), (4 << 20, 100)]
LATENCY_SIDES = [("mprocess Pipe", "cpp", "pipe"), ("Unix socket pair", "cpp", "unix"), ("Python Pipe", "py", "pipe")]


def measure_latency(cpp_bin: Path, runs: int, verbose: bool) -> tuple[list[list[str]], list[str], list[dict]]:
    table, errors, raw = [], [], []
    for size, n in LATENCY_SIZES:
        for cpus in ("cross", "same"):
            samples = {name: ([], []) for name, _, _ in LATENCY_SIDES}
            args = [f"n={n}", f"size={size}", f"cpus={cpus}"]
            for r in range(runs):
                sides = LATENCY_SIDES if r % 2 == 0 else list(reversed(LATENCY_SIDES))
                for name, lang, transport in sides:
                    cmd = ([str(cpp_bin), "latency", *args, f"transport={transport}"] if lang == "cpp" else
                           [sys.executable, str(HERE / "fair.py"), "latency", *args, f"transport={transport}"])
                    out, why = run_side(cmd, 120)
                    if out is None:
                        errors.append(f"latency {size} B {cpus} {name} run {r + 1}: {why}")
                        continue
                    samples[name][0].append(float(out["value"]))
                    samples[name][1].append(float(out["p99"]))
                    if verbose:
                        print(f"  latency {size} {cpus} {name}: {out}", file=sys.stderr)
            cells = []
            for name, _, _ in LATENCY_SIDES:
                p50, p99 = samples[name]
                cells.append("—" if not p50 else
                             f"{fmt('time', statistics.median(p50))} / {fmt('time', statistics.median(p99))}")
            label = f"{size >> 20} MiB" if size >= 1 << 20 else (f"{size >> 10} KiB" if size >= 1024 else f"{size} B")
            table.append([label, "different CPUs" if cpus == "cross" else "one CPU", *cells])
            raw.append({"size": size, "cpus": cpus,
                        "sides": {name: {"p50": samples[name][0], "p99": samples[name][1]} for name in samples}})
    return table, errors, raw


def fmt(kind: str, v: float) -> str:
    if kind == "time":
        for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
            if v >= scale or unit == "ns":
                return f"{v / scale:.3g} {unit}"
    if kind == "rate":
        for unit, scale in (("G/s", 1e9), ("M/s", 1e6), ("k/s", 1e3), ("/s", 1)):
            if v >= scale or unit == "/s":
                return f"{v / scale:.3g} {unit}"
    return f"{v:.3g}x"


def spread(kind: str, values: list[float]) -> str:
    if not values:
        return "—"
    return f"{fmt(kind, statistics.median(values))} ({fmt(kind, min(values))}..{fmt(kind, max(values))})"


def ratio(kind: str, ours: list[float], theirs: list[float]) -> Optional[float]:
    """How many times better `ours` is than `theirs`, medians against each other."""
    if not ours or not theirs:
        return None
    c, p = statistics.median(ours), statistics.median(theirs)
    return p / c if kind == "time" else c / p


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}"


def print_table(header: list[str], table: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for line in table:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for line in table:
        print(" | ".join(c.ljust(w) for c, w in zip(line, widths)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpp", type=Path, default=DEFAULT_CPP, help="the fair_cpp binary (default: %(default)s)")
    ap.add_argument("--only", action="append", default=[], help="rows whose key contains this word (repeatable)")
    ap.add_argument("--runs", type=int, default=5, help="interleaved runs of each side per row (default 5)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--json", type=Path, help="also write every sample to this file (plot.py draws it)")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    ap.add_argument("--latency", action="store_true", help="also the latency table by payload size (slow)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every sample as it comes")
    opts = ap.parse_args()
    words = [w for o in opts.only for w in o.split(",") if w]
    rows = [r for r in ROWS if not words or any(w in r.key for w in words)]
    if opts.list:
        for r in ROWS:
            print(f"{r.key:18} {r.label}")
        return 0
    if not opts.cpp.exists():
        print(f"{opts.cpp}: not built (cmake --build --preset release --target fair_cpp)", file=sys.stderr)
        return 2
    for r in rows:
        if "primes" in r.args and r.args["primes"] is None:
            r.args["primes"] = prime_count(r.args["limit"])

    load_before = os.getloadavg()
    results = {}
    for row in rows:
        print(f"running {row.key} ({opts.runs} runs a side) ...", file=sys.stderr)
        results[row.key] = measure(row, opts.cpp, opts.runs, opts.verbose)
    load_after = os.getloadavg()

    header = ["row", "mprocess: median (min..max)", "Python: median (min..max)", "mprocess / Python"]
    table = []
    for row in rows:
        res = results[row.key]
        x = ratio(row.kind, res.cpp, res.py)
        table.append([row.label, spread(row.kind, res.cpp), spread(row.kind, res.py),
                      "—" if x is None else f"{x:.3g}x"])
    print_table(header, table, opts.markdown)
    limited = [row for row in rows if row.limit]
    if limited:
        print()
        print("The machine's limit for the same work (plain POSIX, no mprocess; fair.cpp says what each does):")
        table = []
        for row in limited:
            res = results[row.key]
            x, y = ratio(row.kind, res.raw, res.py), ratio(row.kind, res.cpp, res.raw)
            table.append([row.label, spread(row.kind, res.raw), "—" if x is None else f"{x:.3g}x",
                          "—" if y is None else f"{y:.0%}"])
        print_table(["row", "limit: median (min..max)", "limit / Python", "mprocess, of the limit"], table,
                    opts.markdown)
    latency_errors, latency_raw = [], []
    if opts.latency:
        print()
        print("Half a round trip, p50 / p99 (median over the runs of each run's percentile):")
        lat, latency_errors, latency_raw = measure_latency(opts.cpp, opts.runs, opts.verbose)
        print_table(["payload", "ends on", *(name for name, _, _ in LATENCY_SIDES)], lat, opts.markdown)
    print()
    print(f"{opts.runs} interleaved runs a side, each a fresh process; machine: {machine()}; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.")
    print("Command: python3 bench/fair/run.py " + " ".join(sys.argv[1:]))
    for row in rows:
        for e in results[row.key].errors:
            print(f"FAILED {row.key}: {e}")
    for e in latency_errors:
        print(f"FAILED {e}")
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps({
            "machine": machine(), "runs": opts.runs, "load": [load_before[0], load_after[0]],
            "rows": [{"key": r.key, "label": r.label, "kind": r.kind, "cpp": results[r.key].cpp,
                      "py": results[r.key].py, "limit": results[r.key].raw, "errors": results[r.key].errors} for r in rows],
            "latency": latency_raw}, indent=1))
    return 1 if latency_errors or any(results[r.key].errors for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
