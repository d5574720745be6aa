// SPDX-License-Identifier: Apache-2.0
#include "platform/posix.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <iostream>
#include <vector>
#include <pthread.h>
#include <linux/futex.h>

#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mprocess/error.hpp"

namespace mprocess::platform {

void throw_os_error(int err, const std::string& what) {
    throw OSError(err, what + ": " + std::strerror(err));
}

void throw_errno(const std::string& what) {
    throw_os_error(errno, what);
}

void Fd::reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

Fd pidfd_open(pid_t pid) {
    long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) throw_errno(errno == ENOSYS ? "pidfd_open (mprocess needs Linux 5.3 or newer)" : "pidfd_open");
    return Fd(static_cast<int>(fd));
}

bool pidfd_signal(int pidfd, int sig) {
    if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == 0) return true;
    if (errno == ESRCH) return false;
    throw_errno("pidfd_send_signal");
}

int poll_until(pollfd* fds, std::size_t n, const Deadline& deadline) {
    for (;;) {
        int ms = -1;
        if (deadline) {
            // Compared before subtracted: a deadline long past (a try's) must not overflow, and
            // one far away is waited for in steps of at most INT_MAX ms.
            const auto now = Clock::now();
            ms = *deadline <= now
                     ? 0
                     : static_cast<int>(std::min<long long>(
                           std::chrono::ceil<std::chrono::milliseconds>(*deadline - now).count(), INT_MAX));
        }
        int r = ::poll(fds, n, ms);
        if (r >= 0) {
            // poll() rounds to milliseconds; do not report a timeout before the deadline passed.
            if (r == 0 && deadline && Clock::now() < *deadline) continue;
            return r;
        }
        if (errno != EINTR) throw_errno("poll");
    }
}

int poll(pollfd* fds, std::size_t n, int timeout_ms) noexcept {
    return ::poll(fds, n, timeout_ms);
}

bool readable_now(int fd) noexcept {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
}

Fd make_memfd(const char* name, std::size_t size) {
    int fd = ::memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) throw_errno("memfd_create");
    Fd owned(fd);
    set_file_size(fd, size, "shared memory");
    return owned;
}

void* map_shared(int fd, std::size_t size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) throw_errno("mmap of shared memory");
    return p;
}

void* map_private(std::size_t size) noexcept {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

void* remap(void* addr, std::size_t old_size, std::size_t new_size) noexcept {
    void* p = ::mremap(addr, old_size, new_size, MREMAP_MAYMOVE);
    return p == MAP_FAILED ? nullptr : p;
}

void* try_map_sparse(int fd, std::size_t size) noexcept {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    return p == MAP_FAILED ? nullptr : p;
}

void punch_hole(int fd, std::uint64_t offset, std::uint64_t length) noexcept {
    if (length != 0)
        ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(length));
}

std::uint64_t file_size(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno("fstat");
    return static_cast<std::uint64_t>(st.st_size);
}

void set_file_size(int fd, std::uint64_t size, const std::string& what) {
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) throw_errno("ftruncate of " + what);
}

uid_t file_owner(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno("fstat");
    return st.st_uid;
}

uid_t effective_uid() noexcept {
    return ::geteuid();
}

uid_t real_uid() noexcept {
    return ::getuid();
}

std::string describe_user(uid_t uid) {
    std::string number = "uid " + std::to_string(uid);
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return number;
    return "'" + std::string(found->pw_name) + "' (" + number + ")";
}

std::uint64_t allocated_bytes(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno("fstat");
    return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

void unmap(void* addr, std::size_t size) noexcept {
    if (addr) ::munmap(addr, size);
}

std::pair<Fd, Fd> make_socketpair() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) throw_errno("socketpair");
    return {Fd(sv[0]), Fd(sv[1])};
}

Fd dup_fd(const Fd& fd) {
    int d = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0);
    if (d < 0) throw_errno("dup");
    return Fd(d);
}

Fd make_eventfd() {
    int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) throw_errno("eventfd");
    return Fd(fd);
}

void signal_efd(const Fd& fd) noexcept {
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(fd.get(), &one, sizeof one);  // fails only when the count is saturated
}

void drain_efd(const Fd& fd) noexcept {
    std::uint64_t v;
    [[maybe_unused]] auto r = ::read(fd.get(), &v, sizeof v);
}

namespace {
// initial-exec: read on every lock, and the general TLS model costs a call each time.
__attribute__((tls_model("initial-exec"))) thread_local std::uint32_t cached_tid = 0;
// A forked child's only thread has a new id: forget the parent's.
[[maybe_unused]] const int atfork_registered = ::pthread_atfork(nullptr, nullptr, [] { cached_tid = 0; });
}  // namespace

std::uint32_t current_tid() noexcept {
    if (cached_tid == 0) cached_tid = static_cast<std::uint32_t>(::gettid());
    return cached_tid;
}

bool thread_is_dead(std::uint32_t tid) noexcept {
    // Only a definite "no such thread" or a zombie counts: failing to look (no free descriptor,
    // no memory, no /proc) must never hand a live owner's lock to someone else.
    char path[40];
    std::snprintf(path, sizeof path, "/proc/%u/stat", tid);
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT || errno == ESRCH;
    char buf[512];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return n == 0 || errno == ESRCH;
    buf[n] = '\0';
    const char* paren = std::strrchr(buf, ')');
    if (!paren || paren[1] == '\0' || paren[2] == '\0') return false;
    return paren[2] == 'Z' || paren[2] == 'X';
}

// Makes `fd` refer to /dev/null: our reference to what it was is dropped at once, while the
// number stays valid for a poll() that another thread may be about to start on it.
void retire_fd(int fd) noexcept {
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0) return;
    ::dup3(null, fd, O_CLOEXEC);
    ::close(null);
}

bool futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept {
    timespec ts{static_cast<time_t>(timeout.count() / 1000000000), static_cast<long>(timeout.count() % 1000000000)};
    long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
    return !(r != 0 && errno == ETIMEDOUT);
}

void futex_wake(std::atomic<std::uint32_t>* word, int n) noexcept {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, n, nullptr, nullptr, 0);
}

void yield_cpu() noexcept {
    ::sched_yield();
}

int allowed_cpus() noexcept {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    return CPU_COUNT(&set);
}

std::vector<int> allowed_cpu_ids() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> ids;
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return ids;
    for (std::size_t c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) ids.push_back(static_cast<int>(c));
    return ids;
}

bool pin_to_cpu(int cpu) noexcept {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return false;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(static_cast<std::size_t>(cpu), &set);
    return ::sched_setaffinity(0, sizeof set, &set) == 0;
}

std::optional<double> cgroup_cpu_quota(const std::string& root, const std::string& self) {
    // cgroup v2 names the process's group on the line "0::/path".
    std::ifstream in(self);
    std::string line, path;
    while (std::getline(in, line))
        if (line.rfind("0::", 0) == 0) path = line.substr(3);
    if (path.empty() || path[0] != '/') return std::nullopt;
    std::optional<double> least;
    for (std::string dir = path;; dir = dir.substr(0, std::max<std::size_t>(dir.rfind('/'), 1))) {
        std::ifstream f(root + (dir == "/" ? "" : dir) + "/cpu.max");
        std::string quota;
        double period = 0;
        if (f >> quota >> period && quota != "max" && period > 0) {
            try {
                const double q = std::stod(quota) / period;
                if (q > 0 && (!least || q < *least)) least = q;
            } catch (const std::exception&) {
            }
        }
        if (dir == "/") break;
    }
    return least;
}

std::uint64_t resident_bytes(pid_t pid) noexcept {
    char path[48];
    std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[128];
    const auto n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    unsigned long long size = 0, resident = 0;  // in pages: the whole mapping, then what is resident
    if (std::sscanf(buf, "%llu %llu", &size, &resident) != 2) return 0;
    return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

ssize_t read(int fd, void* data, std::size_t n) noexcept {
    return ::read(fd, data, n);
}

ssize_t write(int fd, const void* data, std::size_t n) noexcept {
    return ::write(fd, data, n);
}

void close(int fd) noexcept {
    ::close(fd);
}

bool isatty(int fd) noexcept {
    return ::isatty(fd) == 1;
}

bool read_exact(int fd, void* data, std::size_t n) noexcept {
    auto* p = static_cast<char*>(data);
    while (n > 0) {
        ssize_t r = ::read(fd, p, n);
        if (r > 0) {
            p += r;
            n -= static_cast<std::size_t>(r);
        } else if (r == 0 || errno != EINTR) {
            return false;
        }
    }
    return true;
}

void flush_stdio() noexcept {
    try {
        std::cout.flush();
        std::cerr.flush();
        std::clog.flush();
    } catch (...) {
    }
    std::fflush(nullptr);
}

std::string random_bytes(std::size_t n) {
    std::string out(n, '\0');
    std::size_t got = 0;
    while (got < n) {
        const ssize_t r = ::getrandom(out.data() + got, n - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw_errno("getrandom");
        got += static_cast<std::size_t>(r);
    }
    return out;
}

}  // namespace mprocess::platform
