#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the rules of docs/architecture.md's "Layers": a source file includes only files of its own
layer or of the layers below it; public headers include no internal header; and no file outside
src/platform/ makes a system call. Prints every breach and exits 1 if there is one."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Lowest first. A file belongs to the first entry whose folder holds it; "src/" holds only the files
# directly in it (the API's implementations). Layers of one rank are siblings: neither includes the other.
LAYERS = [
    ("platform", 0, "src/platform/"),
    ("wait", 1, "src/wait/"),
    ("channel", 2, "src/channel/"),
    ("start", 3, "src/start/"),
    ("api", 4, "src/"),
    ("pool", 5, "src/pool/"),
    ("manager", 5, "src/manager/"),
]

# System calls (and the libc wrappers that are one), as the code writes them: ::name(.
SYSCALLS = """
fork vfork execve execv execvp execvpe waitpid waitid wait4 kill tgkill pipe pipe2 poll ppoll select pselect
epoll_create1 epoll_ctl epoll_wait socket socketpair bind listen accept accept4 connect send sendto sendmsg recv
recvfrom recvmsg shutdown setsockopt getsockopt getsockname getpeername read write pread pwrite readv writev close
close_range dup dup2 dup3 fcntl ioctl open openat creat mmap munmap mremap mprotect madvise ftruncate fstat stat lstat
fchmod chmod unlink shm_open shm_unlink memfd_create eventfd signalfd sigprocmask pthread_sigmask sigaction signal
prctl setsid getpid getppid gettid getuid geteuid getgid getegid syscall sched_yield isatty _exit chdir fchdir
futex pidfd_open pidfd_send_signal
""".split()
SYSCALL_RE = re.compile(r"(?<![\w:>.])::(" + "|".join(SYSCALLS) + r")\s*\(")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(rel):
    for name, rank, folder in LAYERS:
        if folder == "src/":
            if rel.startswith("src/") and "/" not in rel[len("src/"):]:
                return name, rank
        elif rel.startswith(folder):
            return name, rank
    return None


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def main():
    breaches = []
    sources = sorted(p for p in (ROOT / "src").rglob("*") if p.suffix in (".cpp", ".hpp"))
    for path in sources:
        rel = path.relative_to(ROOT).as_posix()
        own = layer_of(rel)
        if own is None:
            breaches.append(f"{rel}: in no layer (docs/architecture.md lists the folders)")
            continue
        text = path.read_text()
        for inc in INCLUDE_RE.findall(text):
            if inc.startswith("mprocess/"):
                continue  # the public headers: every layer may use them
            target = layer_of("src/" + inc)
            if target is None or not (ROOT / "src" / inc).exists():
                breaches.append(f'{rel}: includes "{inc}", which is no file of src/')
            elif target[1] > own[1] or (target[1] == own[1] and target[0] != own[0]):
                breaches.append(f'{rel} ({own[0]}): includes "{inc}" of the {target[0]} layer, above it or beside it')
        if own[0] != "platform":
            code = strip_comments(text)
            for number, line in enumerate(code.splitlines(), 1):
                for call in SYSCALL_RE.findall(line):
                    breaches.append(f"{rel}:{number}: calls ::{call}(), a system call: src/platform/ makes those")
    for path in sorted((ROOT / "include").rglob("*.hpp")):
        rel = path.relative_to(ROOT).as_posix()
        for inc in INCLUDE_RE.findall(path.read_text()):
            if not inc.startswith("mprocess/"):
                breaches.append(f'{rel}: a public header includes "{inc}", an internal one')
    for b in breaches:
        print(b)
    print(f"{len(breaches)} breach(es) of the layer rules" if breaches else "the layer rules hold")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
