// SPDX-License-Identifier: Apache-2.0
// POSIX/Linux primitives used by the core: descriptors, socket pairs, memfd and mappings,
// eventfd, futex, poll, pidfd, random bytes. Every system call of the library is in src/platform/:
// here, and in exec.hpp (starting programs, reaping children, pipes), socket.hpp (sockets),
// process.hpp (forks without exec, our identity, signals) and shm.hpp (named shared memory).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mprocess/timeout.hpp"

#include <poll.h>
#include <sys/types.h>

namespace mprocess::platform {

using Clock = std::chrono::steady_clock;
using Deadline = mprocess::Deadline;

[[noreturn]] void throw_os_error(int err, const std::string& what);
[[noreturn]] void throw_errno(const std::string& what);

// An owned file descriptor, closed on destruction.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }

    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept;

private:
    int fd_ = -1;
};

// A descriptor that becomes readable when the process exits (Linux >= 5.3).
Fd pidfd_open(pid_t pid);
// Sends `sig` through a pidfd; false if the process has already exited.
bool pidfd_signal(int pidfd, int sig);

// poll() that retries on EINTR and honours an absolute deadline. Returns the number of ready fds.
int poll_until(pollfd* fds, std::size_t n, const Deadline& deadline);
// One poll(), as the system call makes it (timeout_ms -1: no limit): the number of ready fds, 0 on
// timeout, or -1 with errno set, EINTR included.
int poll(pollfd* fds, std::size_t n, int timeout_ms) noexcept;
// True if fd is readable now, or hung up, or in error; false also if poll() fails. Never waits.
bool readable_now(int fd) noexcept;

// Anonymous shared memory: freed by the kernel when the last mapping and descriptor go away,
// whatever way the processes holding it end.
Fd make_memfd(const char* name, std::size_t size);
void* map_shared(int fd, std::size_t size);
// Private anonymous memory of this process alone, and a mapping grown or moved (mremap); nullptr if
// there is no memory for it. Async-signal-safe: the resource tracker keeps its table in it.
void* map_private(std::size_t size) noexcept;
void* remap(void* addr, std::size_t old_size, std::size_t new_size) noexcept;
// A mapping of a large, mostly unused (sparse) area: no swap reserved; nullptr if the address
// space is short (a tight RLIMIT_AS), so the caller can ask for less.
void* try_map_sparse(int fd, std::size_t size) noexcept;
// Gives the pages of [offset, offset + length) back to the system; they read as zeros again.
void punch_hole(int fd, std::uint64_t offset, std::uint64_t length) noexcept;
// The file's size, and the bytes of memory its pages take.
std::uint64_t file_size(int fd);
// Makes the file `size` bytes long (ftruncate), or throws OSError "ftruncate of <what>".
void set_file_size(int fd, std::uint64_t size, const std::string& what);
std::uint64_t allocated_bytes(int fd);
// The user who owns the file; this process's effective user; a user's name for messages
// ("nobody (uid 65534)", or the number alone if the user has no name).
uid_t file_owner(int fd);
uid_t effective_uid() noexcept;
uid_t real_uid() noexcept;
std::string describe_user(uid_t uid);
void unmap(void* addr, std::size_t size) noexcept;

// n bytes from the kernel's random source (getrandom), for keys and unguessable names.
std::string random_bytes(std::size_t n);

// A connected, non-blocking, close-on-exec stream socket pair.
std::pair<Fd, Fd> make_socketpair();

// A close-on-exec duplicate.
Fd dup_fd(const Fd& fd);

// Non-blocking, close-on-exec eventfd used as a doorbell: signal adds one, drain resets to zero.
Fd make_eventfd();
void signal_efd(const Fd& fd) noexcept;
void drain_efd(const Fd& fd) noexcept;

// The calling thread's id, cached (and refreshed in a forked child).
std::uint32_t current_tid() noexcept;
// True if no thread with this id exists any more, or its process is a zombie.
bool thread_is_dead(std::uint32_t tid) noexcept;

// Points fd at /dev/null, dropping what it referred to while keeping the number valid.
void retire_fd(int fd) noexcept;

// Futex on a word in (possibly shared) memory. futex_wait returns false on timeout.
bool futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept;
void futex_wake(std::atomic<std::uint32_t>* word, int n) noexcept;

// A pause instruction for spin loops.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// A full fence where a locked read-modify-write (such as a lock's release by exchange) came just
// before: on x86 that instruction already was one, so only the compiler needs holding back.
inline void fence_after_locked_op() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    std::atomic_signal_fence(std::memory_order_seq_cst);
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

// Gives the CPU to another runnable thread, if any.
void yield_cpu() noexcept;
// How many CPUs this thread may run on (its affinity: taskset, a cpuset); 1 if it cannot tell.
int allowed_cpus() noexcept;
// The CPUs this thread may run on, by number; empty if it cannot tell.
std::vector<int> allowed_cpu_ids();
// Lets this process run on `cpu` alone (sched_setaffinity); false if it may not.
bool pin_to_cpu(int cpu) noexcept;
// The CPU time per second that this process's cgroup v2 grants (cpu.max of its cgroup and each
// ancestor, the least), or nullopt for no limit. `root` is where cgroup2 is mounted, `self` what
// /proc/self/cgroup says: parameters, so that tests can give their own.
std::optional<double> cgroup_cpu_quota(const std::string& root = "/sys/fs/cgroup",
                                       const std::string& self = "/proc/self/cgroup");
// The resident memory of process `pid` in bytes (/proc/<pid>/statm), or 0 if it cannot be read
// (the process has ended).
std::uint64_t resident_bytes(pid_t pid) noexcept;

// One read() or write(), as the system call makes it: the byte count (0 at end of file), or -1
// with errno set, EINTR included. read_some() and write_some() (exec.hpp) retry on EINTR. These
// three and read_exact() are async-signal-safe, for a child forked from a process with threads.
ssize_t read(int fd, void* data, std::size_t n) noexcept;
ssize_t write(int fd, const void* data, std::size_t n) noexcept;
void close(int fd) noexcept;

// As Python's os.isatty: true if fd is a terminal.
bool isatty(int fd) noexcept;

// Reads exactly n bytes, retrying on EINTR; false on EOF or error.
bool read_exact(int fd, void* data, std::size_t n) noexcept;

// Flushes C and C++ standard streams so that a fork does not duplicate buffered output.
void flush_stdio() noexcept;

}  // namespace mprocess::platform
