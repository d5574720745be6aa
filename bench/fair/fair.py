#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Python's side of the like-for-like comparison (bench/fair/run.py): the twin of fair.cpp, workload by
workload, with the same counts and sizes (run.py passes them to both), the same start method (fork),
the same span, every result checked. One run of one workload per interpreter.

    fair.py WORKLOAD key=value...      prints {"value": v} on one line, or exits 1 saying what failed

Spans: a workload with children starts the clock once all of them wait on a Barrier (or the child's
first message), and stops it at the last finisher's own time.monotonic() (CLOCK_MONOTONIC, as
fair.cpp's steady_clock). Building inputs counts where fair.cpp's does; checking never counts. No
warm-up round.
"""
import json
import multiprocessing as mp
import os
import sys
import time

STOP = -1


class Failed(Exception):
    pass


def expect(ok, what):
    if not ok:
        raise Failed(what)


# ---- Pipe ------------------------------------------------------------------------------------------

def echo(c, size):
    c.send(0)
    if size == 0:
        while True:
            v = c.recv()
            if v == STOP:
                return
            c.send(v)
    while True:
        b = c.recv_bytes()
        if not b:
            return
        c.send_bytes(b)


def pipe_rtt(a):
    n, size = a["n"], a["size"]
    here, there = mp.Pipe()
    p = mp.Process(target=echo, args=(there, size))
    p.start()
    there.close()
    expect(here.recv() == 0, "the echo's ready message")
    payload = bytearray(b"x" * size)
    t0 = time.monotonic()
    for i in range(n):
        if size == 0:
            here.send(i)
            expect(here.recv() == i, "an echoed number")
        else:
            payload[0] = i % 256
            here.send_bytes(payload)
            expect(here.recv_bytes() == payload, "echoed bytes")
    t1 = time.monotonic()
    if size == 0:
        here.send(STOP)
    else:
        here.send_bytes(b"")
    p.join()
    expect(p.exitcode == 0, "the echo's exit")
    return (t1 - t0) / n


def count_stream(c, n, batch):
    c.send(0)
    expected = count = total = 0
    ordered = True
    while expected < n:
        v = c.recv()
        ordered = ordered and v == expected
        expected = v + 1
        count += 1
        total += v
        if count % batch == 0 or expected == n:
            c.send((count, total, ordered))


def pipe_throughput(a):
    n, batch = a["n"], a["batch"]
    here, there = mp.Pipe()
    p = mp.Process(target=count_stream, args=(there, n, batch))
    p.start()
    there.close()
    expect(here.recv() == 0, "the counter's ready message")
    last = None
    t0 = time.monotonic()
    for i in range(n):
        here.send(i)
        if (i + 1) % batch == 0 or i + 1 == n:
            last = here.recv()
    t1 = time.monotonic()
    p.join()
    expect(last == (n, n * (n - 1) // 2, True), "the consumer's count, sum and order")
    return n / (t1 - t0)


# ---- Queue -----------------------------------------------------------------------------------------

def make_item(i, size):
    return i.to_bytes(8, "little", signed=True) + bytes([ord("a") + i % 26]) * (size - 8)


def item_ok(s, i, size):
    return len(s) == size and s == make_item(i, size)


def produce_numbers(q, go, ident, share, done):
    go.wait()
    for k in range(share):
        q.put(ident * share + k)
    done.put((time.monotonic(), share, 0, True))


def consume_numbers(q, go, share, per_producer, producers, done):
    go.wait()
    total = 0
    last = [-1] * producers
    ordered = True
    for _ in range(share):
        v = q.get()
        total += v
        j = v // per_producer
        ordered = ordered and v > last[j]
        last[j] = v
    done.put((time.monotonic(), share, total, ordered))


def produce_items(q, go, n, size, done):
    items = [make_item(i, size) for i in range(n)]
    go.wait()
    for item in items:
        q.put(item)
    done.put((time.monotonic(), n, 0, True))


def consume_items(q, go, n, size, done):
    kept = []
    go.wait()
    for _ in range(n):
        kept.append(q.get())
    t = time.monotonic()
    ok = all(item_ok(kept[i], i, size) for i in range(n))
    done.put((t, n, 0, ok))


def queue(a):
    n, size, producers, consumers = a["n"], a["size"], a["producers"], a["consumers"]
    expect(n % producers == 0 and n % consumers == 0, "n divisible by the producers and the consumers")
    expect(size == 0 or (producers == 1 and consumers == 1), "byte items with one producer and one consumer")
    go = mp.Barrier(producers + consumers + 1)
    done = mp.Queue()
    q = mp.Queue()
    if size == 0:
        ps = [mp.Process(target=produce_numbers, args=(q, go, i, n // producers, done)) for i in range(producers)]
        ps += [mp.Process(target=consume_numbers, args=(q, go, n // consumers, n // producers, producers, done))
               for _ in range(consumers)]
    else:
        ps = [mp.Process(target=produce_items, args=(q, go, n, size, done)),
              mp.Process(target=consume_items, args=(q, go, n, size, done))]
    for p in ps:
        p.start()
    go.wait()
    t0 = time.monotonic()
    t1 = t0
    total = 0
    ok = True
    for _ in ps:  # producers' and consumers': the last finisher's time
        t, _count, s, good = done.get()
        t1 = max(t1, t)
        ok = ok and good
        total += s
    for p in ps:
        p.join()
        ok = ok and p.exitcode == 0
    expect(ok, "every item, and every child's exit")
    if size == 0:
        expect(total == n * (n - 1) // 2, "the sum of every number put")
    return n / (t1 - t0)


# ---- Lock and Value --------------------------------------------------------------------------------

def lock(a):
    n = a["n"]
    lk = mp.Lock()
    t0 = time.monotonic()
    for _ in range(n):
        lk.acquire()
        lk.release()
    return (time.monotonic() - t0) / n


def increment(v, go, n, done):
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    done.put(time.monotonic())


def counter(a):
    n, procs = a["n"], a["processes"]
    v = mp.Value("q", 0)
    go = mp.Barrier(procs + 1)
    done = mp.Queue()
    ps = [mp.Process(target=increment, args=(v, go, n, done)) for _ in range(procs)]
    for p in ps:
        p.start()
    go.wait()
    t0 = time.monotonic()
    t1 = max(done.get() for _ in ps)
    for p in ps:
        p.join()
    expect(v.value == n * procs, "the counter's final value")
    return n * procs / (t1 - t0)


def value_rw(a):
    n = a["n"]
    v = mp.Value("q", 0)
    t0 = time.monotonic()
    for _ in range(n):
        v.value = v.value + 1
    t1 = time.monotonic()
    expect(v.value == n, "the value after n reads and writes")
    return (t1 - t0) / n


# ---- Pool ------------------------------------------------------------------------------------------

def square(x):
    return x * x


def pool_map(a):
    n = a["n"]
    with mp.Pool(a["processes"]) as pool:
        t0 = time.monotonic()
        items = list(range(n))
        out = pool.map(square, items)
        t1 = time.monotonic()
    expect(len(out) == n, "as many results as items")
    expect(all(out[i] == i * i for i in range(n)), "every square")
    return n / (t1 - t0)


def pool_apply(a):
    n = a["n"]
    with mp.Pool(a["processes"]) as pool:
        t0 = time.monotonic()
        for i in range(n):
            expect(pool.apply_async(square, (i,)).get() == i * i, "a square")
        return (time.monotonic() - t0) / n


def count_primes(r):
    """Primes in [lo, hi) by trial division: the same algorithm as fair.cpp's."""
    lo, hi = r
    count = 0
    for k in range(max(lo, 2), hi):
        d = 2
        prime = True
        while d * d <= k:
            if k % d == 0:
                prime = False
                break
            d += 1
        count += prime
    return count


def pool_cpu(a):
    limit, chunks, expected = a["limit"], a["chunks"], a["primes"]
    ranges = [(limit * i // chunks, limit * (i + 1) // chunks) for i in range(chunks)]
    t0 = time.monotonic()
    serial = sum(count_primes(r) for r in ranges)
    t1 = time.monotonic()
    with mp.Pool(a["processes"]) as pool:
        t2 = time.monotonic()
        parts = pool.map(count_primes, ranges, 1)
        t3 = time.monotonic()
    expect(serial == expected, "the serial count of primes")
    expect(sum(parts) == expected, "the pool's count of primes")
    return (t1 - t0) / (t3 - t2)


# ---- Client and Manager ----------------------------------------------------------------------------

def net_echo(address):
    from multiprocessing.connection import Client
    with Client(address, authkey=b"bench") as c:
        c.send(0)
        while True:
            v = c.recv()
            if v == STOP:
                return
            c.send(v)


def net_rtt(a):
    from multiprocessing.connection import Listener
    n = a["n"]
    with Listener(("127.0.0.1", 0), authkey=b"bench") as listener:
        p = mp.Process(target=net_echo, args=(listener.address,))
        p.start()
        with listener.accept() as conn:
            expect(conn.recv() == 0, "the echo's ready message")
            t0 = time.monotonic()
            for i in range(n):
                conn.send(i)
                expect(conn.recv() == i, "an echoed number")
            t1 = time.monotonic()
            conn.send(STOP)
        p.join()
    expect(p.exitcode == 0, "the echo's exit")
    return (t1 - t0) / n


def consume_batches(items, acks, n, batch):
    acks.put(-1)
    total = 0
    for i in range(n):
        total += items.get()
        if (i + 1) % batch == 0 or i + 1 == n:
            acks.put(total)
            total = 0


def manager_queue(a):
    from multiprocessing.managers import SyncManager
    n, batch = a["n"], a["batch"]
    started = "connect" not in a
    if not started:  # a server that manager-serve started, maybe in another network namespace
        host, port = a["connect"].rsplit(":", 1)
        m = SyncManager(address=(host, int(port)), authkey=b"bench")
        m.connect()
    elif a["tcp"]:
        m = SyncManager(address=("127.0.0.1", 0), authkey=b"bench")
        m.start()
    else:
        m = mp.Manager()
    try:
        items, acks = m.Queue(), m.Queue()
        p = mp.Process(target=consume_batches, args=(items, acks, n, batch))
        p.start()
        expect(acks.get() == -1, "the consumer's ready message")
        t0 = time.monotonic()
        total = 0
        for i in range(n):
            items.put(i)
            total += i
            if (i + 1) % batch == 0 or i + 1 == n:
                expect(acks.get() == total, "the consumer's sum of a batch")
                total = 0
        t1 = time.monotonic()
        p.join()
    finally:
        if started:
            m.shutdown()
    expect(p.exitcode == 0, "the consumer's exit")
    return n / (t1 - t0)


# ---- Latency by payload size -----------------------------------------------------------------------

def latency_echo(c, cpu):
    os.sched_setaffinity(0, {cpu})
    echo(c, 1)


def latency(a):
    """Half round trips of `size` bytes over a Pipe, n of them: the median, and the 99th percentile."""
    n, size = a["n"], a["size"]
    os.sched_setaffinity(0, {0})
    here, there = mp.Pipe()
    p = mp.Process(target=latency_echo, args=(there, 0 if a["cpus"] == "same" else 1))
    p.start()
    there.close()
    expect(here.recv() == 0, "the echo's ready message")
    payload = bytearray(b"x" * size)
    half = []
    for i in range(n):
        payload[0] = i % 256
        t0 = time.monotonic()
        here.send_bytes(payload)
        back = here.recv_bytes()
        half.append((time.monotonic() - t0) / 2)
        expect(back == payload, "echoed bytes")
    here.send_bytes(b"")
    p.join()
    expect(p.exitcode == 0, "the echo's exit")
    half.sort()
    print(json.dumps({"p99": half[n * 99 // 100]}))
    return half[n // 2]


def manager_serve(a):
    """A manager's server on `address` for manager_queue's connect=, until standard input closes."""
    from multiprocessing.managers import SyncManager
    host, port = a["address"].rsplit(":", 1)
    m = SyncManager(address=(host, int(port)), authkey=b"bench")
    m.start()
    print("serving on %s:%d" % m.address, flush=True)
    sys.stdin.read()
    m.shutdown()
    return 0


WORKLOADS = {
    "pipe-rtt": pipe_rtt, "pipe-throughput": pipe_throughput, "queue": queue, "lock": lock,
    "counter": counter, "value-rw": value_rw, "pool-map": pool_map, "pool-apply": pool_apply,
    "pool-cpu": pool_cpu, "net-rtt": net_rtt, "manager-queue": manager_queue,
    "latency": latency, "manager-serve": manager_serve,
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in WORKLOADS:
        sys.exit("usage: fair.py WORKLOAD key=value...; workloads: " + " ".join(WORKLOADS))
    args = {}
    for kv in sys.argv[2:]:
        k, v = kv.split("=", 1)
        args[k] = int(v) if v.lstrip("-").isdigit() else v
    mp.set_start_method(args.get("method", "fork"), force=True)
    try:
        print(json.dumps({"value": WORKLOADS[sys.argv[1]](args)}))
    except Failed as e:
        sys.exit(f"{sys.argv[1]}: {e}")


if __name__ == "__main__":
    main()
