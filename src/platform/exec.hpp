// SPDX-License-Identifier: Apache-2.0
// Starting and ending children: the one launcher (fork + exec, for mprocess::subprocess and for the
// spawn and forkserver start methods), the one reap (waitpid), and the pipes and non-blocking I/O
// on a child's stdio.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "platform/posix.hpp"

namespace mprocess::platform {

// A pipe, {read end, write end}, both close-on-exec and numbered above 2, so that installing one
// end as a child's stdio can never overwrite another descriptor the child still needs.
std::pair<Fd, Fd> make_pipe();

// A close-on-exec duplicate of any open descriptor (the caller's stdin included), numbered above 2.
Fd dup_above_stdio(int fd);
// Makes `target` (0, 1 or 2, say) a duplicate of `fd`, as dup2(); false if it could not.
bool install_as(int fd, int target) noexcept;

// open() with O_CLOEXEC; the result is numbered above 2.
Fd open_above_stdio(const std::string& path, int flags);

// As Python's os.set_blocking: clears or sets O_NONBLOCK on the open file `fd` refers to.
void set_blocking(const Fd& fd, bool blocking);

// One read()/write() retried on EINTR: the byte count, 0 at end of file, or -1 with errno set
// (EAGAIN when a non-blocking descriptor is not ready). write_some() never raises SIGPIPE: a
// reader that has gone away gives -1 with errno EPIPE, whatever the process's SIGPIPE disposition.
long read_some(int fd, char* buf, std::size_t n) noexcept;
long write_some(int fd, const char* buf, std::size_t n) noexcept;

// Blocks until fd is ready for `events` (POLLIN or POLLOUT), or the deadline passes (false).
bool wait_ready(int fd, short events, const Deadline& deadline);

// What the child does between fork and exec.
struct ExecPlan {
    std::vector<std::string> argv;
    // Files to try with execve(), in order (one, or one per PATH entry).
    std::vector<std::string> candidates;
    // The complete environment as "NAME=value"; nullopt inherits ours.
    std::optional<std::vector<std::string>> env;
    std::optional<std::string> cwd;
    // Descriptors (above 2) to install as the child's 0, 1 and 2; -1 leaves the inherited one.
    int stdio[3] = {-1, -1, -1};
    bool stderr_to_stdout = false;
    // Descriptors the new program inherits besides its stdio; every other one is closed at exec.
    std::vector<int> keep_fds;
    // The child is sent SIGKILL when its parent ends (PR_SET_PDEATHSIG).
    bool die_with_parent = false;
};

// The step of the child's setup that failed, and its errno.
struct ExecFailure {
    enum Step : int { redirect, chdir, exec } step;
    int error;
};

// The files to try for `program`: itself if it names a path (has a '/') or if search is off,
// otherwise one per entry of `path_var` (the PATH value; nullopt means the system default).
std::vector<std::string> exec_candidates(const std::string& program, bool search,
                                         const std::optional<std::string>& path_var);

// Our environment as "NAME=value", without the variables whose names start with `prefix`.
std::vector<std::string> environment_without(std::string_view prefix);

// Forks a child that sets itself up as the plan says, marks every descriptor above 2 but the kept
// ones close-on-exec and executes the program. Returns once the program runs (its pid and a pidfd)
// or the child has failed (the failure; that child is already reaped). Signals are blocked from
// before the fork until the exec, which restores our mask for the new program: no handler of ours
// runs in the child. Between fork and exec the child makes only async-signal-safe calls, so this
// is safe in a multithreaded process.
struct ExecResult {
    pid_t pid = 0;
    Fd pidfd;
    std::optional<ExecFailure> failure;
};
ExecResult fork_exec(const ExecPlan& plan);

// A child that has ended, as waitpid() tells it.
struct Reaped {
    pid_t pid;
    int status;                 // the raw wait status
    std::uint64_t max_rss = 0;  // its peak resident memory in bytes (wait4's rusage); 0 if unknown
};

// The one reap: wait4() for `pid` (or, with -1, for any child), retried on EINTR. Gives the child
// that has ended; nullopt while it runs (only when !block), or with -1 when no child has ended or
// is left. A given child that someone else reaped (a SIGCHLD handler, SIGCHLD ignored) ended with a
// status nobody can know: it counts as exited 0, as in Python.
std::optional<Reaped> reap_status(pid_t pid, bool block) noexcept;

// As Python's os.waitstatus_to_exitcode: the exit status, or -N after signal N.
int waitstatus_to_exitcode(int status) noexcept;

// reap_status() of one child as a Python-style return code.
std::optional<int> reap(pid_t pid, bool block) noexcept;

// Kills a child we no longer want (SIGKILL) and reaps it.
void discard_child(pid_t pid) noexcept;

// A descriptor that is readable at once and reads as the given wait status (an int): stands in
// for an ended child whose real status is out of reach.
Fd status_fd_of(int status);

}  // namespace mprocess::platform
