// SPDX-License-Identifier: Apache-2.0
#include "platform/exec.hpp"

#include "mprocess/error.hpp"
#include "platform/process.hpp"

#include <cerrno>
#include <climits>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern "C" char** environ;

namespace mprocess::platform {

namespace {

Fd above_stdio(Fd fd) {
    if (fd.get() > 2) return fd;
    int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
    if (moved < 0) throw_errno("fcntl(F_DUPFD_CLOEXEC)");
    return Fd(moved);
}

// Pointer arrays for execve(), built before fork: the child must not allocate.
class CStrings {
public:
    explicit CStrings(const std::vector<std::string>& strings) {
        ptrs_.reserve(strings.size() + 1);
        for (const auto& s : strings) ptrs_.push_back(const_cast<char*>(s.c_str()));
        ptrs_.push_back(nullptr);
    }
    char* const* get() const noexcept { return ptrs_.data(); }

private:
    std::vector<char*> ptrs_;
};

// Everything the child needs, resolved to plain values before fork.
struct ChildSetup {
    char* const* argv;
    char* const* envp;
    char* const* candidates;
    const char* cwd;
    int stdio[3];
    bool stderr_to_stdout;
    const int* keep_fds;
    std::size_t keep_count;
    bool die_with_parent;
    int max_fd;
    int report_fd;
    sigset_t mask;  // the parent's signal mask, for the new program
};

// Async-signal-safe from here to the end of exec_child().

[[noreturn]] void fail(const ChildSetup& s, ExecFailure::Step step, int err) noexcept {
    const ExecFailure failure{step, err};
    const char* p = reinterpret_cast<const char*>(&failure);
    std::size_t left = sizeof failure;
    while (left > 0) {
        ssize_t r = ::write(s.report_fd, p, left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        p += r;
        left -= static_cast<std::size_t>(r);
    }
    ::_exit(255);
}

// The new program must inherit only its stdio and the kept descriptors. close_range() (Linux 5.11)
// does it in one call; marking instead of closing keeps report_fd open until the exec succeeds.
// Without it every number up to the descriptor limit, read before the fork, is marked.
void cloexec_all_but_kept(const ChildSetup& s) noexcept {
    if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
        for (int fd = 3; fd < s.max_fd; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    for (std::size_t i = 0; i < s.keep_count; ++i) ::fcntl(s.keep_fds[i], F_SETFD, 0);
}

// As execvp(): these errors mean "not in this directory", so the search goes on.
bool try_next_candidate(int err) noexcept {
    return err == ENOENT || err == ENOTDIR || err == EACCES || err == ESTALE || err == ENODEV || err == ETIMEDOUT;
}

[[noreturn]] void exec_child(const ChildSetup& s) noexcept {
    if (s.die_with_parent) die_with_parent();
    for (int target = 0; target < 3; ++target) {
        if (s.stdio[target] >= 0 && ::dup2(s.stdio[target], target) < 0) fail(s, ExecFailure::redirect, errno);
    }
    if (s.stderr_to_stdout && ::dup2(1, 2) < 0) fail(s, ExecFailure::redirect, errno);
    cloexec_all_but_kept(s);
    if (s.cwd && ::chdir(s.cwd) != 0) fail(s, ExecFailure::chdir, errno);
    ::pthread_sigmask(SIG_SETMASK, &s.mask, nullptr);

    int err = ENOENT;
    bool denied = false;
    for (char* const* file = s.candidates; *file; ++file) {
        ::execve(*file, s.argv, s.envp);
        err = errno;
        if (!try_next_candidate(err)) break;
        denied = denied || err == EACCES;
    }
    // As execvp(): a file found but not executable explains more than a later "not found".
    if (denied && try_next_candidate(err)) err = EACCES;
    fail(s, ExecFailure::exec, err);
}

// End of the async-signal-safe part.

int open_max() noexcept {
    long n = ::sysconf(_SC_OPEN_MAX);
    return n > 0 && n < INT_MAX ? static_cast<int>(n) : 65536;
}

// What the child reported: nothing (EOF) once the exec succeeded.
std::optional<ExecFailure> read_failure(const Fd& fd) {
    ExecFailure failure{};
    char* p = reinterpret_cast<char*>(&failure);
    std::size_t got = 0;
    while (got < sizeof failure) {
        long r = read_some(fd.get(), p + got, sizeof failure - got);
        if (r < 0) throw_errno("read from a starting child");
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
    }
    if (got == 0) return std::nullopt;
    // A child killed in the middle of its report still did not run the program.
    if (got < sizeof failure) failure = {ExecFailure::exec, EIO};
    return failure;
}

}  // namespace

std::pair<Fd, Fd> make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe");
    Fd r(fds[0]), w(fds[1]);
    return {above_stdio(std::move(r)), above_stdio(std::move(w))};
}

Fd dup_above_stdio(int fd) {
    int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (d < 0) throw_errno("dup of descriptor " + std::to_string(fd));
    return Fd(d);
}

bool install_as(int fd, int target) noexcept {
    int r;
    do r = ::dup2(fd, target);
    while (r < 0 && errno == EINTR);
    return r >= 0;
}

Fd open_above_stdio(const std::string& path, int flags) {
    int fd;
    do fd = ::open(path.c_str(), flags | O_CLOEXEC, 0666);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) throw_errno("open " + path);
    return above_stdio(Fd(fd));
}

void set_blocking(const Fd& fd, bool blocking) {
    int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags >= 0) flags = blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK;
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags) < 0) throw_errno("fcntl(O_NONBLOCK)");
}

long read_some(int fd, char* buf, std::size_t n) noexcept {
    ssize_t r;
    do r = ::read(fd, buf, n);
    while (r < 0 && errno == EINTR);
    return r;
}

long write_some(int fd, const char* buf, std::size_t n) noexcept {
    // SIGPIPE is sent to the writing thread: block it for this write and consume the one the write
    // raises, so that neither the default action (death) nor a user handler sees it.
    sigset_t pipe_only, old;
    ::sigemptyset(&pipe_only);
    ::sigaddset(&pipe_only, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    sigset_t pending;
    ::sigpending(&pending);
    const bool already_pending = ::sigismember(&pending, SIGPIPE) == 1;  // someone else's: leave it

    ssize_t r;
    do r = ::write(fd, buf, n);
    while (r < 0 && errno == EINTR);
    const int err = errno;

    if (r < 0 && err == EPIPE && !already_pending) {
        const timespec zero{};
        while (::sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
        }
    }
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    errno = err;
    return r;
}

bool wait_ready(int fd, short events, const Deadline& deadline) {
    pollfd pfd{fd, events, 0};
    return poll_until(&pfd, 1, deadline) > 0;
}

std::vector<std::string> exec_candidates(const std::string& program, bool search,
                                         const std::optional<std::string>& path_var) {
    if (!search || program.empty() || program.find('/') != std::string::npos) return {program};
    std::string path;
    if (path_var) {
        path = *path_var;
    } else {
        path.resize(::confstr(_CS_PATH, nullptr, 0));
        if (!path.empty()) ::confstr(_CS_PATH, path.data(), path.size());
        path = path.c_str();  // drop the terminating NUL
    }
    std::vector<std::string> files;
    std::size_t start = 0;
    for (;;) {
        const std::size_t end = path.find(':', start);
        std::string dir = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
        // An empty entry is the current directory.
        files.push_back(dir.empty() ? program : dir.append("/").append(program));
        if (end == std::string::npos) break;
        start = end + 1;
    }
    return files;
}

std::vector<std::string> environment_without(std::string_view prefix) {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e)
        if (!std::string_view(*e).starts_with(prefix)) env.emplace_back(*e);
    return env;
}

namespace {

// The descriptor that becomes readable when the child `pid` has ended: its pidfd. With SIGCHLD
// ignored (or a handler that reaps) a quick child may be gone already, reaped by the kernel: then
// a pipe holding status 0 stands in (as waitpid's ECHILD is reported, see reap_status()), and the
// pid, perhaps reused by now, is never signalled.
Fd end_descriptor(pid_t pid) {
    try {
        return pidfd_open(pid);
    } catch (const OSError& e) {
        if (e.code() == std::errc::no_such_process) return status_fd_of(0);
        throw;
    }
}

}  // namespace

ExecResult fork_exec(const ExecPlan& plan) {
    const CStrings argv(plan.argv);
    const CStrings candidates(plan.candidates);
    std::optional<CStrings> env;
    if (plan.env) env.emplace(*plan.env);
    auto [report_r, report_w] = make_pipe();

    ChildSetup setup{};
    setup.argv = argv.get();
    setup.envp = env ? env->get() : environ;
    setup.candidates = candidates.get();
    setup.cwd = plan.cwd ? plan.cwd->c_str() : nullptr;
    for (int i = 0; i < 3; ++i) setup.stdio[i] = plan.stdio[i];
    setup.stderr_to_stdout = plan.stderr_to_stdout;
    setup.keep_fds = plan.keep_fds.data();
    setup.keep_count = plan.keep_fds.size();
    setup.die_with_parent = plan.die_with_parent;
    setup.max_fd = open_max();
    setup.report_fd = report_w.get();

    // With every signal blocked, no handler of ours can run in the child before exec; the new
    // program gets our mask back.
    sigset_t all;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &setup.mask);
    const pid_t pid = ::fork();
    if (pid == 0) exec_child(setup);
    const int fork_errno = errno;
    ::pthread_sigmask(SIG_SETMASK, &setup.mask, nullptr);
    if (pid < 0) throw_os_error(fork_errno, "fork");

    report_w.reset();  // else our own copy would keep the report pipe from ever reaching EOF
    try {
        if (const auto failure = read_failure(report_r)) {
            reap_status(pid, true);
            return {0, Fd(), failure};
        }
        return {pid, end_descriptor(pid), std::nullopt};
    } catch (...) {
        discard_child(pid);
        throw;
    }
}

std::optional<Reaped> reap_status(pid_t pid, bool block) noexcept {
    int status = 0;
    rusage usage{};
    pid_t r;
    do r = ::wait4(pid, &status, block ? 0 : WNOHANG, &usage);
    while (r < 0 && errno == EINTR);
    if (r > 0) return Reaped{r, status, static_cast<std::uint64_t>(usage.ru_maxrss) * 1024};  // ru_maxrss is in KiB
    // ECHILD for a given child: someone else reaped it (a SIGCHLD handler, SIGCHLD ignored). It has
    // ended, with a status we cannot know; report 0, as Python's subprocess does. wait4() has no
    // other failure with valid options.
    if (r < 0 && pid > 0) return Reaped{pid, 0};
    return std::nullopt;
}

int waitstatus_to_exitcode(int status) noexcept {
    return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
}

std::optional<int> reap(pid_t pid, bool block) noexcept {
    const auto reaped = reap_status(pid, block);
    if (!reaped) return std::nullopt;
    return waitstatus_to_exitcode(reaped->status);
}

void discard_child(pid_t pid) noexcept {
    ::kill(pid, SIGKILL);
    reap_status(pid, true);
}

Fd status_fd_of(int status) {
    auto [read_end, write_end] = make_pipe();
    if (::write(write_end.get(), &status, sizeof status) != static_cast<ssize_t>(sizeof status)) throw_errno("write");
    return std::move(read_end);
}

}  // namespace mprocess::platform
