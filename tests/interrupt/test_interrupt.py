# SPDX-License-Identifier: Apache-2.0
"""Ctrl-C in a terminal during a long Pool.map: the program ends, no worker is left running, and the
shared memory it named is gone. Under every start method, in a real pseudo-terminal.

    LONG_MAP=path/to/long_map python3 test_interrupt.py
"""
import os
import pty
import re
import select
import signal
import sys
import time
import unittest

BIN = os.environ.get("LONG_MAP", "")


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has ended; whoever adopted it reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class CtrlC(unittest.TestCase):
    def run_method(self, method: str) -> None:
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execv(BIN, [BIN, method])
            finally:
                os._exit(127)
        screen = ""
        workers: list[int] = []
        try:
            end = time.monotonic() + 60
            while not (m := re.search(r"mapping, workers ([\d ]+), block (\S+)\r?\n", screen)):
                self.assertGreater(end - time.monotonic(), 0, f"the program never began its map:\n{screen}")
                r, _, _ = select.select([fd], [], [], 1.0)
                if r:
                    screen += os.read(fd, 4096).decode(errors="replace")
            workers = [int(w) for w in m.group(1).split()]
            block = "/dev/shm/" + m.group(2).lstrip("/")
            self.assertTrue(os.path.exists(block))
            time.sleep(0.2)  # well inside the map
            t0 = time.monotonic()
            os.write(fd, b"\x03")  # the terminal sends SIGINT to its foreground group
            _, status = os.waitpid(pid, 0)
            elapsed = time.monotonic() - t0
            pid = 0
            self.assertTrue(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT, status)
            # Workers end on their own SIGINT, or with the program (die with the parent).
            end = time.monotonic() + 30
            while any(running(w) for w in workers) and time.monotonic() < end:
                time.sleep(0.01)
            left = [w for w in workers if running(w)]
            gone = time.monotonic() - t0
            self.assertEqual(left, [], "workers left running")
            # The resource tracker, which ignores SIGINT, unlinks what the program named.
            while os.path.exists(block) and time.monotonic() < end:
                time.sleep(0.01)
            self.assertFalse(os.path.exists(block), "the named block is left in /dev/shm")
            print(f"{method}: the program ended {elapsed * 1000:.0f} ms after Ctrl-C, its workers within "
                  f"{gone * 1000:.0f} ms", file=sys.stderr)
        finally:
            if pid:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            for w in workers:
                if running(w):
                    os.kill(w, signal.SIGKILL)
            os.close(fd)

    def test_fork(self):
        self.run_method("fork")

    def test_spawn(self):
        self.run_method("spawn")

    def test_forkserver(self):
        self.run_method("forkserver")


if __name__ == "__main__":
    if not BIN:
        sys.exit("LONG_MAP is not set")
    unittest.main()
