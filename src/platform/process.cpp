// SPDX-License-Identifier: Apache-2.0
#include "platform/process.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mprocess::platform {

// Async-signal-safe, all of this file (process.hpp says why).

namespace {

sigset_t only(int sig) noexcept {
    sigset_t set;
    ::sigemptyset(&set);
    ::sigaddset(&set, sig);
    return set;
}

}  // namespace

pid_t fork() noexcept {
    return ::fork();
}

void _exit(int code) noexcept {
    ::_exit(code);
}

pid_t getpid() noexcept {
    return ::getpid();
}

pid_t getppid() noexcept {
    return ::getppid();
}

bool kill(pid_t pid, int sig) noexcept {
    return ::kill(pid, sig) == 0;
}

void setsid() noexcept {
    ::setsid();
}

void die_with_parent() noexcept {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
}

void ignore_signal(int sig) noexcept {
    ::signal(sig, SIG_IGN);
}

void default_signal(int sig) noexcept {
    ::signal(sig, SIG_DFL);
}

sigset_t block_signal(int sig) noexcept {
    const sigset_t one = only(sig);
    sigset_t old;
    ::pthread_sigmask(SIG_BLOCK, &one, &old);
    return old;
}

void set_signal_mask(const sigset_t& mask) noexcept {
    ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
}

Fd signalfd(int sig) noexcept {
    const sigset_t one = only(sig);
    return Fd(::signalfd(-1, &one, SFD_CLOEXEC | SFD_NONBLOCK));
}

void drain_signalfd(int fd) noexcept {
    signalfd_siginfo info;
    while (::read(fd, &info, sizeof info) > 0) {
    }
}

bool keep_only_as_3(int fd) noexcept {
    if (::dup2(fd, 3) < 0) return false;
    if (::syscall(SYS_close_range, 4u, ~0u, 0u) != 0) {
        // A kernel before 5.9: one by one, up to the limit (getrlimit is a plain system call, safe here).
        rlimit limit{};
        rlim_t top =
            ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY ? limit.rlim_cur : 65536;
        for (rlim_t fd = 4; fd < top; ++fd) ::close(static_cast<int>(fd));
    }
    int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
        ::dup2(null, 0);
        ::dup2(null, 1);
        ::dup2(null, 2);
        if (null > 3) ::close(null);
    }
    return true;
}

}  // namespace mprocess::platform
