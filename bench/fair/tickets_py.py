#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The tickets app written with Python's multiprocessing, for bench/fair/run.py: the same roles and
messages as apps/tickets (a BaseManager on TCP serving Q1 and one reply queue per controller, a
Pool computing each power as its own task, the answer assembled under the ticket).

    tickets_py.py dispatcher HOST:PORT       prints "serving on HOST:PORT", stops on SIGINT
    tickets_py.py controller HOST:PORT       numbers on stdin, one per line; prints the summary
The key comes from TICKETS_AUTHKEY.
"""

import multiprocessing as mp
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from multiprocessing.managers import BaseManager

_queues = {}
_queues_lock = threading.Lock()


def get_queue(name):
    with _queues_lock:
        return _queues.setdefault(name, queue.Queue())


class TicketManager(BaseManager):
    pass


TicketManager.register("get_queue", callable=get_queue)


def key():
    return os.environ.get("TICKETS_AUTHKEY", "bench").encode()


def split(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def dispatcher(address):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the workers, forked below, inherit this
    m = TicketManager(address=split(address), authkey=key())
    m.start()
    pool = mp.Pool(2)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("serving on %s:%d" % m.address, flush=True)
    q1 = m.get_queue("requests")
    replies, pending, lock = {}, {}, threading.Lock()

    def done(k, slot, value):
        with lock:
            p = pending[k]
            p[2][slot] = value
            p[3] -= 1
            if p[3]:
                return
            del pending[k]
            reply_to, ticket, number, exps = p[0][0], p[0][1], p[0][2], p[1]
            if reply_to not in replies:
                replies[reply_to] = m.get_queue(reply_to)
            q = replies[reply_to]
        q.put((ticket, number, [(exps[0], p[2][0]), (exps[1], p[2][1])], ""))

    while not stop.is_set():
        try:
            r = q1.get(timeout=0.2)
        except queue.Empty:
            continue
        n = int(r[2])
        exps = (2, 4) if n % 2 == 0 else (3, 5)
        k = (r[0], r[1])
        with lock:
            pending[k] = [r, exps, [None, None], 2]
        for slot in (0, 1):
            pool.apply_async(pow, (n, exps[slot]), callback=lambda v, k=k, s=slot: done(k, s, v))
    pool.terminate()
    m.shutdown()


def controller(address):
    m = TicketManager(address=split(address), authkey=key())
    m.connect()
    me = os.getpid()
    q1 = m.get_queue("requests")
    reply_to = "replies/%s/%d/%s" % (socket.gethostname(), me, uuid.uuid4().hex[:12])
    mine = m.get_queue(reply_to)
    sent = {}
    seq = 0
    t0 = time.perf_counter()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        n = int(line)
        seq += 1
        ticket = "%d-%d" % (me, seq)
        sent[ticket] = n
        q1.put((reply_to, ticket, str(n)))
    answered = 0
    while sent:
        ticket, number, powers, error = mine.get()
        n = sent.pop(ticket)
        assert not error and powers[0][1] == n ** powers[0][0] and powers[1][1] == n ** powers[1][0]
        answered += 1
    span = time.perf_counter() - t0
    print("summary: %d tickets, %d answered, 0 failed; %.0f tickets/s" % (seq, answered, seq / span), flush=True)


if __name__ == "__main__":
    {"dispatcher": dispatcher, "controller": controller}[sys.argv[1]](sys.argv[2])
