// SPDX-License-Identifier: Apache-2.0
// Test support: a piece of a test run as another user of the machine (nobody), to show what a
// stranger can and cannot do to what a program makes. Only root can become another user; the
// tests that need it skip themselves elsewhere, saying why.
#pragma once

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace testing_support {

// Why this process cannot run code as another user, or empty if it can.
inline std::string cannot_become_another_user() {
    if (::geteuid() != 0) return "only root can act as another user: run the tests as root to check this";
    if (::getpwnam("nobody") == nullptr) return "there is no user 'nobody' here";
    return {};
}

// Runs fn() in a forked child as user nobody (its own group, no supplementary groups, umask 022)
// and returns what fn returned (0 to 255) as the child's exit status, or -1 if the child could not
// become nobody or did not exit. The child is always reaped. It is forked from a process that may
// have threads: fn may make system calls, but must not allocate or take locks.
template <class F>
int as_nobody(F fn) {
    const passwd* pw = ::getpwnam("nobody");
    if (pw == nullptr) return -1;
    const uid_t uid = pw->pw_uid;
    const gid_t gid = pw->pw_gid;
    const pid_t pid = ::fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 || ::setresuid(uid, uid, uid) != 0)
            ::_exit(255);
        ::umask(022);
        ::_exit(fn() & 0xff);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) != 255 ? WEXITSTATUS(status) : -1;
}

// Sets the umask for a scope (it is per process: only for tests that start no threads meanwhile).
class Umask {
public:
    explicit Umask(mode_t mask) : old_(::umask(mask)) {}
    ~Umask() { ::umask(old_); }
    Umask(const Umask&) = delete;
    Umask& operator=(const Umask&) = delete;

private:
    mode_t old_;
};

}  // namespace testing_support
