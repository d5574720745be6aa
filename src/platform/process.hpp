// SPDX-License-Identifier: Apache-2.0
// This process and its children without exec: forking, exiting at once, who we and our parent are,
// signals sent and dispositions set, and what a detached child keeps. The fork start method, the
// forkserver and the resource tracker use these between a fork and the end of the child.
//
// Every function here is async-signal-safe: no allocation, no lock, no exception, only the system
// call it is named after (or a few of them). So a child forked from a process with threads may
// call them before it has rebuilt anything: another thread of the parent may have held the
// allocator's or stdio's lock at the fork, and that lock is held for ever in the child.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include "platform/posix.hpp"

namespace mprocess::platform {

// fork(), and nothing else: no stdio flushed (the caller decides, see flush_stdio()), no handler
// run. The child's pid in the parent, 0 in the child, -1 with errno set on failure.
pid_t fork() noexcept;

// As Python's os._exit: ends the process now, without atexit handlers, static destructors or
// flushing stdio.
[[noreturn]] void _exit(int code) noexcept;

pid_t getpid() noexcept;
pid_t getppid() noexcept;

// Sends `sig` to `pid` (kill()); false, errno set, if it could not. Only for a pid that cannot have
// been recycled (a child not yet reaped); pidfd_signal() is for the others.
bool kill(pid_t pid, int sig) noexcept;

// Makes this process the leader of a new session (setsid()), out of its terminal's process group.
void setsid() noexcept;

// The kernel sends this process SIGKILL when the thread that forked it ends (PR_SET_PDEATHSIG). A
// parent that ended before this call is not noticed: compare getppid() with its pid afterwards.
void die_with_parent() noexcept;

// The disposition of `sig`: ignored (SIG_IGN), or the default action (SIG_DFL).
void ignore_signal(int sig) noexcept;
void default_signal(int sig) noexcept;

// Blocks `sig` for the calling thread and returns the mask it had, for set_signal_mask().
sigset_t block_signal(int sig) noexcept;
void set_signal_mask(const sigset_t& mask) noexcept;

// A non-blocking, close-on-exec descriptor that becomes readable when `sig` (blocked by
// block_signal()) is pending; invalid if none can be made. drain_signalfd() consumes what it holds.
Fd signalfd(int sig) noexcept;
void drain_signalfd(int fd) noexcept;

// For a process that lives on alone with one descriptor: installs `fd` as descriptor 3, closes every
// descriptor above 3, and points 0, 1 and 2 at /dev/null (leaves them if it cannot be opened).
// False if `fd` could not be installed.
bool keep_only_as_3(int fd) noexcept;

}  // namespace mprocess::platform
