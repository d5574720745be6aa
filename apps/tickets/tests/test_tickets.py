#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of the tickets binary: they run the real program and check every answer
against Python's exact integers. The binary is $TICKETS_BIN."""

from __future__ import annotations

import hashlib
import hmac
import os
import platform
import pty
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest
import uuid

BIN = os.environ.get("TICKETS_BIN", "tickets")
ANSWER = re.compile(r"^ticket (\d+)-(\d+): (-?\d+) is (even|odd): x\^(\d) = (-?\d+), x\^(\d) = (-?\d+)$")
SUMMARY = re.compile(r"^summary: (\d+) tickets, (\d+) answered, (\d+) failed")
KEY = "tickets-test-key"


def expected(n: int) -> tuple[int, int]:
    return (2, 4) if n % 2 == 0 else (3, 5)


def check_answers(test: unittest.TestCase, out: str, numbers: list[int], pid: int | None = None) -> None:
    """Every number answered exactly once, correctly, under this controller's tickets."""
    got: dict[int, int] = {}
    tickets = set()
    for line in out.splitlines():
        m = ANSWER.match(line)
        if not m:
            continue
        if pid is not None:
            test.assertEqual(int(m.group(1)), pid, line[:80])
        test.assertNotIn(m.group(2), tickets, "a ticket answered twice")
        tickets.add(m.group(2))
        n = int(m.group(3))
        a, b = expected(n)
        test.assertEqual(m.group(4), "even" if n % 2 == 0 else "odd")
        test.assertEqual((int(m.group(5)), int(m.group(7))), (a, b))
        test.assertEqual(int(m.group(6)), n ** a, f"x^{a} of {n}")
        test.assertEqual(int(m.group(8)), n ** b, f"x^{b} of {n}")
        got[n] = got.get(n, 0) + 1
    want: dict[int, int] = {}
    for n in numbers:
        want[n] = want.get(n, 0) + 1
    test.assertEqual(got, want)


def summary(test: unittest.TestCase, out: str) -> tuple[int, int, int]:
    m = [SUMMARY.match(l) for l in out.splitlines() if SUMMARY.match(l)]
    test.assertEqual(len(m), 1, out[-500:])
    return int(m[0].group(1)), int(m[0].group(2)), int(m[0].group(3))


def children_of(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except FileNotFoundError:
        pass
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


# The system calls a thread sleeps in (nanosleep, clock_nanosleep), by machine.
SLEEP_CALLS = {"x86_64": {35, 230}, "aarch64": {101, 115}}


def stop_inside_a_task(pid: int, timeout: float = 60.0) -> None:
    """Stops a dispatcher's worker (SIGSTOP) at a moment it is inside a ticket's work, that is in
    the --work-delay sleep: then the task it holds cannot finish. A worker found elsewhere (idle,
    or between two tasks) is let go on and stopped again a little later."""
    sleeping = SLEEP_CALLS[platform.machine()]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        os.kill(pid, signal.SIGSTOP)
        state = ""
        while state != "T" and time.monotonic() < end:  # at its next return to user space
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(") ", 1)[1][0]
            if state in "ZX":
                raise AssertionError(f"worker {pid} ended before it was stopped")
        with open(f"/proc/{pid}/syscall") as f:
            call = f.read().split()[0]
        if call.lstrip("-").isdigit() and int(call) in sleeping:
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.002)
    raise AssertionError(f"worker {pid} was never found inside a task")


def hold_abstract_name_as_nobody(name: str) -> int:
    """Forks a process that becomes user nobody, binds the abstract Unix name and keeps it until
    killed. Returns its pid once the name is taken."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.closerange(3, w)  # the test's pipes too: only the readiness pipe is kept
            os.closerange(w + 1, 65536)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind("\0" + name)
            s.listen()
            os.write(w, b"bound")
            while True:
                signal.pause()
        finally:
            os._exit(1)
    os.close(w)
    with os.fdopen(r, "rb") as ready:
        if ready.read(5) != b"bound":
            os.waitpid(pid, 0)
            raise RuntimeError(f"could not bind @{name} as nobody")
    return pid


class Dispatcher:
    """A dispatcher process on an address, stopped and reaped however the test ends. Its stderr
    is read by a thread (it logs a line per ticket: an unread pipe would stall it)."""

    def __init__(self, test: unittest.TestCase, listen: str = "127.0.0.1:0", *extra: str, key: str = KEY,
                 prefix: list[str] | None = None):
        env = dict(os.environ, TICKETS_AUTHKEY=key)
        self.proc = subprocess.Popen((prefix or []) + [BIN, "dispatcher", "--listen", listen, *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        test.addCleanup(self.stop)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()
        r, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if r else ""
        m = re.search(r"serving on (\S+)", line)
        if not m:
            self.stop()
            raise AssertionError("the dispatcher did not start: " + line + self.log())
        self.address = m.group(1)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: any(text in l for l in self.lines), timeout):
                raise AssertionError(f"the dispatcher never logged {text!r}")

    def log(self) -> str:
        with self.cond:
            return "".join(self.lines)

    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=10)
        self.proc.stdout.close()
        return self.proc.returncode


def controller(test: unittest.TestCase, address: str, numbers: list[int] | None = None, *extra: str,
               key: str = KEY, prefix: list[str] | None = None) -> subprocess.Popen:
    """A controller, fed `numbers` at once (stdin then closed), killed and reaped at the end of the
    test whatever happens."""
    env = dict(os.environ, TICKETS_AUTHKEY=key)
    p = subprocess.Popen((prefix or []) + [BIN, "controller", "--connect", address, *extra],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def reap():
        if p.poll() is None:
            p.kill()
        p.communicate()

    test.addCleanup(reap)
    if numbers is not None:
        feed(p, "".join(f"{n}\n" for n in numbers))
    return p


def feed(p: subprocess.Popen, text: str) -> None:
    """All of the input at once, then end of file (the pipe holds it: the controller reads on).
    A controller may end before it reads its input, and rightly so (no dispatcher, a wrong key):
    then the pipe is broken, and what it printed and its exit code tell the test what happened, as
    with communicate()."""
    try:
        p.stdin.write(text)
        p.stdin.flush()
    except BrokenPipeError:
        pass
    try:
        p.stdin.close()
    except BrokenPipeError:  # the flush of what was left; the pipe is closed all the same
        pass
    p.stdin = None  # so that communicate() does not touch it again


def finish(p: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    out, err = p.communicate(timeout=timeout)
    return out, err


def allow_descriptors(n: int) -> bool:
    """Raises this process's descriptor limit to n (the dispatcher it starts inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return True
    if hard != resource.RLIM_INFINITY and hard < n:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    return True


def tcp_endpoint(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def frame(payload: bytes) -> bytes:
    return struct.pack("<Q", len(payload)) + payload


def read_frame(s: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            more = s.recv(n - len(data))
            if not more:
                raise EOFError("the dispatcher closed the connection")
            data += more
        return data
    return exactly(struct.unpack("<Q", exactly(8))[0])


def authenticated(address: str, key: str) -> socket.socket:
    """A connection that passes the mprocess handshake (HMAC-SHA256 challenges both ways) and
    then says nothing: an idle client, as far as the server can tell."""
    s = socket.create_connection(tcp_endpoint(address), timeout=30)
    k = key.encode()
    s.sendall(frame(b"#HELLO#authkey"))
    challenge = read_frame(s)
    s.sendall(frame(hmac.new(k, b"client" + challenge[len(b"#CHALLENGE#sha256:"):], hashlib.sha256).digest()))
    if read_frame(s) != b"#WELCOME#":
        raise AssertionError("the dispatcher did not welcome our key")
    nonce = os.urandom(32)
    s.sendall(frame(b"#CHALLENGE#sha256:" + nonce))
    if not hmac.compare_digest(read_frame(s), hmac.new(k, b"server" + nonce, hashlib.sha256).digest()):
        raise AssertionError("the dispatcher does not know the key")
    s.sendall(frame(b"#WELCOME#"))
    return s


class Sockets:
    """Connections held open until the end of the test."""

    def __init__(self, test: unittest.TestCase):
        self.all: list[socket.socket] = []
        test.addCleanup(self.close)

    def add(self, s: socket.socket) -> None:
        self.all.append(s)

    def close(self) -> None:
        for s in self.all:
            s.close()
        self.all = []


class Local(unittest.TestCase):
    def run_local(self, stdin: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, timeout=120)

    def test_scripted_session(self):
        huge = int("9" * 100 + "1" * 100)  # 200 digits
        numbers = [4, 7, -3, 0, huge, -huge - 1, 1000]
        text = "4\n7\n-3\nhello\n0\n" + str(huge) + "\n2.5\n" + str(-huge - 1) + "\n\n  +1_000  \n0x10\n"
        r = self.run_local(text)
        self.assertEqual(r.returncode, 0, r.stderr)
        check_answers(self, r.stdout, numbers)
        self.assertIn("'hello' is not an integer", r.stdout)
        self.assertIn("'2.5' is not an integer", r.stdout)
        self.assertIn("'0x10' is not an integer", r.stdout)
        self.assertEqual(summary(self, r.stdout), (7, 7, 0))
        self.assertRegex(r.stdout, r"(?m)^summary: .*; [0-9]+ tickets/s$")  # input at once: a rate
        self.assertEqual(len(str(huge ** 5)), 1000)

    def test_numbers_on_the_command_line(self):
        r = subprocess.run([BIN, "12", "-5", "--", "-8"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        check_answers(self, r.stdout, [12, -5, -8])

    def test_bad_usage_is_explained(self):
        r = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0)
        self.assertIn("Usage:", r.stdout)
        for args, what in ((["--frobnicate"], "unknown option"), (["dispatcher"], "needs --listen"),
                           (["--workers", "x"], "needs a whole number")):
            r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2)
            self.assertIn(what, r.stderr)

    def test_too_long_a_number_is_refused_not_computed(self):
        r = self.run_local("1" * 100_001 + "\n5\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("too long", r.stdout)
        check_answers(self, r.stdout, [5])

    def test_a_stranger_holding_the_pids_name_does_not_stop_local_mode(self):
        """Another user binds the abstract name the dispatcher would take if it were made from the
        pid: local mode must not depend on a name anyone can guess."""
        if os.geteuid() != 0:
            self.skipTest("only root can act as another user: run the tests as root to check this")
        # tickets runs in this shell's process once it is told to go, so its pid is known before.
        p = subprocess.Popen(["sh", "-c", 'read go && exec "$@" </dev/null', "sh", BIN, "12", "-5"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        squatter = hold_abstract_name_as_nobody(f"tickets-{p.pid}")
        try:
            out, err = p.communicate("go\n", timeout=120)
        finally:
            p.kill()
            p.wait()
            os.kill(squatter, signal.SIGKILL)
            os.waitpid(squatter, 0)
        self.assertEqual(p.returncode, 0, err)
        check_answers(self, out, [12, -5])


class Network(unittest.TestCase):
    def test_four_controllers_each_get_their_own_answers(self):
        d = Dispatcher(self, "127.0.0.1:0", "--quiet")
        inputs = [list(range(i * 1000 - 2000, i * 1000 - 1000)) for i in range(4)]
        inputs[3][500] = 10 ** 60 + 1  # and a big one among them
        procs = [controller(self, d.address, ns) for ns in inputs]  # all four at once
        for p, ns in zip(procs, inputs):
            out, err = finish(p)
            self.assertEqual(p.returncode, 0, err)
            check_answers(self, out, ns, pid=p.pid)
            self.assertEqual(summary(self, out), (1000, 1000, 0))
        self.assertEqual(d.stop(), 0, d.log())

    def test_a_worker_killed_mid_run_loses_no_ticket(self):
        d = Dispatcher(self, "127.0.0.1:0", "--workers", "2", "--work-delay", "20")
        workers = children_of(d.pid())
        self.assertEqual(len(workers), 2)
        numbers = list(range(1, 101))
        c = controller(self, d.address, numbers)
        # Killed inside a task (20 ms each, ~190 more to come once a ticket is answered), not
        # while idle: a busy dispatcher (a slow machine, a sanitizer) may leave a worker waiting.
        d.wait_for_log("answered")
        stop_inside_a_task(workers[0])
        os.kill(workers[0], signal.SIGKILL)
        out, err = finish(c)
        self.assertEqual(c.returncode, 0, err)
        check_answers(self, out, numbers, pid=c.pid)
        self.assertEqual(summary(self, out), (100, 100, 0))
        self.assertEqual(len(children_of(d.pid())), 2)  # replaced
        self.assertEqual(d.stop(), 0)
        self.assertIn("tried again", d.log())
        self.assertFalse(any(alive(w) for w in workers))

    def test_stopping_the_dispatcher_answers_or_fails_every_ticket(self):
        d = Dispatcher(self, "127.0.0.1:0", "--workers", "1", "--work-delay", "100")
        workers = children_of(d.pid())
        numbers = list(range(100))  # more than the dispatcher takes into its pool at once
        c = controller(self, d.address, numbers)
        d.wait_for_log("answered")
        self.assertEqual(d.stop(), 0)  # Ctrl-C
        out, err = finish(c)
        total, answered, failed = summary(self, out)
        self.assertEqual((total, answered + failed), (100, 100))
        self.assertGreater(failed, 0)
        self.assertEqual(c.returncode, 1)
        self.assertEqual(len(re.findall(r"failed: ", out)), failed)
        self.assertFalse(any(alive(w) for w in workers))

    def test_a_wrong_key_or_no_dispatcher_is_a_clear_error(self):
        d = Dispatcher(self, "127.0.0.1:0")
        nobody = f"@tickets-test-nobody-{uuid.uuid4().hex}"
        for address, key, why in ((d.address, "not-the-key", "refused our key"),
                                  (nobody, KEY, "cannot reach the dispatcher")):
            # Such a controller ends without reading its input, maybe before the test writes it:
            # here always before (the race's worst case, made certain), and the input is not lost
            # silently: the test still sees the error and the exit code.
            c = controller(self, address, key=key)
            c.wait(60)
            feed(c, "4\n" * 100_000)  # more than a pipe holds
            out, err = finish(c, 60)
            self.assertEqual(c.returncode, 2, err)
            self.assertIn(why, err)
            self.assertEqual(out, "")

    def test_strangers_that_never_authenticate_lock_no_controller_out(self):
        if not allow_descriptors(4096):
            self.skipTest("needs a descriptor limit of 4096")
        d = Dispatcher(self, "127.0.0.1:0", "--quiet")
        strangers = Sockets(self)
        for _ in range(1300):  # more than the dispatcher serves, and more than its backlog on top
            strangers.add(socket.create_connection(tcp_endpoint(d.address), timeout=30))
        c = controller(self, d.address, [4, 7])
        out, err = finish(c, 120)
        self.assertEqual(c.returncode, 0, err)
        check_answers(self, out, [4, 7], pid=c.pid)

    def test_a_dispatcher_serving_all_it_can_says_it_is_busy(self):
        if not allow_descriptors(4096):
            self.skipTest("needs a descriptor limit of 4096")
        d = Dispatcher(self, "127.0.0.1:0", "--quiet")
        clients = Sockets(self)
        for _ in range(1024):
            clients.add(authenticated(d.address, KEY))
        c = controller(self, d.address, [4])
        out, err = finish(c, 120)
        self.assertEqual(c.returncode, 2, err)
        self.assertIn("server busy (1024 connections)", err)
        self.assertNotIn("refused our key", err)
        clients.close()  # room again, once the dispatcher has seen them go
        end = time.monotonic() + 60
        while True:
            c = controller(self, d.address, [4])
            out, err = finish(c, 120)
            if c.returncode != 2 or "server busy" not in err or time.monotonic() > end:
                break
            time.sleep(0.1)
        self.assertEqual(c.returncode, 0, err)
        check_answers(self, out, [4], pid=c.pid)

    def test_without_a_key_on_tcp_only_if_insecure_and_then_loudly(self):
        env = dict(os.environ, TICKETS_AUTHKEY="")
        r = subprocess.run([BIN, "dispatcher", "--listen", "127.0.0.1:0"], capture_output=True, text=True,
                           timeout=60, env=env)
        self.assertEqual(r.returncode, 2, r.stdout)
        self.assertIn("--insecure", r.stderr)
        self.assertNotIn("serving on", r.stdout)
        d = Dispatcher(self, "127.0.0.1:0", "--insecure", "--quiet", key="")
        d.wait_for_log("has no authkey: anyone who can reach " + d.address + " can use it")
        c = controller(self, d.address, [6], key="")  # nor does a controller go there unless told to
        out, err = finish(c, 60)
        self.assertEqual(c.returncode, 2, out)
        self.assertIn("--insecure", err)
        c = controller(self, d.address, [6], "--insecure", key="")
        out, err = finish(c, 60)
        self.assertEqual(c.returncode, 0, err)
        check_answers(self, out, [6], pid=c.pid)

    def test_on_a_unix_address_no_key_is_needed(self):
        d = Dispatcher(self, "@tickets-test-" + uuid.uuid4().hex, "--quiet", key="")
        # Garbage lines are refused by the controller itself; the number after them is answered.
        c = controller(self, d.address, key="")
        feed(c, "x\n" * 5 + "5\n")
        out, err = finish(c, 60)
        self.assertEqual(c.returncode, 0, err)
        check_answers(self, out, [5])


class Terminal(unittest.TestCase):
    """Types into the interactive prompt through a pseudo-terminal and reads the screen."""

    def setUp(self):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execv(BIN, [BIN])
            finally:
                os._exit(127)  # never run the rest of the suite in the child
        self.screen = ""

    def tearDown(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self.fd)

    def read_until(self, pattern: str, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while not re.search(pattern, self.screen):
            left = end - time.monotonic()
            if left <= 0:
                self.fail(f"no {pattern!r} on the screen:\n{self.screen[-800:]}")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    self.screen += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    self.fail(f"the program ended before {pattern!r}:\n{self.screen[-800:]}")

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def test_prompt_answers_invalid_input_and_eof(self):
        self.read_until(r"number> ")
        self.type("6\n")
        self.read_until(r"6 is even: x\^2 = 36, x\^4 = 1296")
        self.type("abc\n")
        self.read_until(r"'abc' is not an integer")
        self.type("-9\n")
        self.read_until(r"-9 is odd: x\^3 = -729, x\^5 = -59049")
        self.type("\x04")  # Ctrl-D: end of input
        self.read_until(r"summary: 2 tickets, 2 answered, 0 failed.*\n")
        # A rate over the time someone took to type would say nothing: none at a terminal.
        self.assertNotIn("tickets/s", self.screen)
        _, status = os.waitpid(self.pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)

    def test_invalid_input_draws_the_prompt_once(self):
        self.read_until(r"number> ")
        # Both at once: the line is answered before the end of input is read, so nothing typed
        # later can fall between the prompts drawn after the message.
        self.type("abc\n\x04")
        self.read_until(r"summary: 0 tickets.*\n")
        after = re.search(r"'abc' is not an integer[^\n]*\n(.*)summary:", self.screen, re.S)
        self.assertIsNotNone(after, self.screen)
        self.assertEqual(after.group(1).count("number> "), 1, repr(self.screen))

    def test_ctrl_c_ends_the_session_cleanly(self):
        self.read_until(r"number> ")
        self.type("5\n")
        self.read_until(r"x\^5 = 3125")
        kids = children_of(self.pid)
        self.assertGreaterEqual(len(kids), 1)  # the dispatcher
        workers = [w for k in kids for w in children_of(k)]
        self.type("\x03")  # Ctrl-C, to the whole foreground group
        self.read_until(r"summary: 1 tickets, 1 answered, 0 failed")
        _, status = os.waitpid(self.pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertFalse(any(alive(p) for p in kids + workers))


class TwoHosts(unittest.TestCase):
    """The dispatcher in one network namespace, the controller in another, joined by veth."""

    def setUp(self):
        if os.geteuid() != 0 or not shutil.which("ip"):
            self.skipTest("making network namespaces needs root and iproute2")
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"tka{tag}", f"tkb{tag}"
        cmds = [
            ["ip", "netns", "add", self.a], ["ip", "netns", "add", self.b],
            ["ip", "link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}"],
            ["ip", "link", "set", f"va{tag}", "netns", self.a], ["ip", "link", "set", f"vb{tag}", "netns", self.b],
            ["ip", "-n", self.a, "addr", "add", "10.77.0.1/24", "dev", f"va{tag}"],
            ["ip", "-n", self.b, "addr", "add", "10.77.0.2/24", "dev", f"vb{tag}"],
            ["ip", "-n", self.a, "link", "set", f"va{tag}", "up"], ["ip", "-n", self.b, "link", "set", f"vb{tag}", "up"],
            ["ip", "-n", self.a, "link", "set", "lo", "up"], ["ip", "-n", self.b, "link", "set", "lo", "up"],
        ]
        for c in cmds:
            if subprocess.run(c, capture_output=True).returncode != 0:
                self.tearDown()
                self.skipTest("cannot make two network namespaces joined by a veth pair here")

    def tearDown(self):
        tag = getattr(self, "a", "tka")[3:]
        subprocess.run(["ip", "link", "del", f"va{tag}"], capture_output=True)  # if it never left
        for ns in (getattr(self, "a", None), getattr(self, "b", None)):
            if ns:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def test_a_controller_in_another_namespace(self):
        d = Dispatcher(self, "10.77.0.1:0", prefix=["ip", "netns", "exec", self.a])
        numbers = list(range(-50, 50)) + [3 ** 200]
        c = controller(self, d.address, numbers, prefix=["ip", "netns", "exec", self.b])
        out, err = finish(c, 120)
        self.assertEqual(c.returncode, 0, err)
        check_answers(self, out, numbers)
        self.assertEqual(summary(self, out), (101, 101, 0))
        self.assertEqual(d.stop(), 0, d.log())


if __name__ == "__main__":
    unittest.main()
