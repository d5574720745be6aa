// The tracker is a detached process (a grandchild, so nobody has to reap it) that reads
// fixed-size records from a pipe: 'R' or 'U' and a name. Every process of the family holds the
// pipe's write end (forked children inherit it; it is close-on-exec), so the tracker reads end of
// file once they have all ended, however they ended, and then unlinks what is still registered.
// It ignores SIGINT and SIGTERM, which a terminal or a parent sends to the whole group, so that it
// outlives the processes it watches. A record is smaller than PIPE_BUF, so records written by
// different processes never mix.
//
// The tracker is forked from a process that may have threads, so it uses no allocator and no
// locks: read(), shm_unlink(), and a table of names in memory it maps itself, which doubles
// (mremap) whenever it is full, so there is no fixed limit to the names it keeps.
#include "resource_tracker.hpp"

#include <cstring>
#include <mutex>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mprocess/error.hpp"
#include "platform/exec.hpp"
#include "platform/posix.hpp"

namespace mprocess::detail {
namespace {

constexpr std::size_t kRecord = 256;  // 1 op byte + a name of up to 254 bytes + NUL
constexpr std::size_t kFirstNames = 4096;  // 1 MiB of address space; pages are touched as names come

// The tracker's table (in the tracker process only): names[0, used), in no order.
struct Names {
    char (*names)[kRecord] = nullptr;
    std::size_t used = 0;
    std::size_t capacity = 0;

    // Room for one more name; false only if the system has no memory left for it.
    bool make_room() noexcept {
        if (used < capacity) return true;
        const std::size_t want = capacity == 0 ? kFirstNames : 2 * capacity;
        void* p = capacity == 0 ? ::mmap(nullptr, want * kRecord, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                                : ::mremap(names, capacity * kRecord, want * kRecord, MREMAP_MAYMOVE);
        if (p == MAP_FAILED) return false;
        names = static_cast<char (*)[kRecord]>(p);
        capacity = want;
        return true;
    }
    // A name registered twice (made again after an unlink the tracker did not hear of) is kept
    // twice, and needs two unregistrations.
    // name: NUL-terminated within kRecord - 1 bytes.
    void add(const char* name) noexcept {
        // Out of memory, the tracker has nobody to tell (it only reads): that one block would
        // outlive a crash of its creator. 256 bytes a name make it unlikely before the creator
        // itself runs out.
        if (!make_room()) return;
        std::memcpy(names[used++], name, kRecord - 1);
    }
    void remove(const char* name) noexcept {
        for (std::size_t i = 0; i < used; ++i)
            if (std::strcmp(names[i], name) == 0) {
                if (i != --used) std::memcpy(names[i], names[used], kRecord);  // the last takes its place
                return;
            }
    }
};

[[noreturn]] void tracker_main(int in) {
    ::signal(SIGINT, SIG_IGN);
    ::signal(SIGTERM, SIG_IGN);
    Names table;
    char rec[kRecord];
    for (;;) {
        std::size_t got = 0;
        while (got < kRecord) {
            ssize_t n = ::read(in, rec + got, kRecord - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            got += static_cast<std::size_t>(n);
        }
        if (got < kRecord) break;  // every writer is gone
        rec[kRecord - 1] = '\0';
        if (rec[0] == 'R')
            table.add(rec + 1);
        else
            table.remove(rec + 1);
    }
    for (std::size_t i = 0; i < table.used; ++i) ::shm_unlink(table.names[i]);
    ::_exit(0);
}

struct Tracker {
    std::mutex m;
    int fd = -1;
    pid_t owner = 0;  // the process that started it or inherited it
};

Tracker& tracker() {
    static Tracker t;
    return t;
}

// Called with the tracker's mutex held.
int tracker_fd_locked(Tracker& t) {
    if (t.fd >= 0) return t.fd;
    auto [read_end, write_end] = platform::make_pipe();
    pid_t pid = ::fork();
    if (pid < 0) platform::throw_errno("fork of the resource tracker");
    if (pid == 0) {
        if (::fork() != 0) ::_exit(0);
        ::setsid();  // out of the terminal's process group: a Ctrl-C there is not for us
        // Keep only the pipe's read end (as descriptor 3) and /dev/null on the standard ones.
        if (::dup2(read_end.get(), 3) < 0) ::_exit(1);
        ::syscall(SYS_close_range, 4u, ~0u, 0u);
        int null = ::open("/dev/null", O_RDWR);
        if (null >= 0) {
            ::dup2(null, 0);
            ::dup2(null, 1);
            ::dup2(null, 2);
            if (null > 3) ::close(null);
        }
        tracker_main(3);
    }
    read_end.reset();
    platform::reap_status(pid, true);
    t.fd = write_end.release();
    return t.fd;
}

bool send(char op, const std::string& name) noexcept {
    char rec[kRecord] = {};
    rec[0] = op;
    std::memcpy(rec + 1, name.data(), std::min(name.size(), kRecord - 2));
    auto& t = tracker();
    std::lock_guard lock(t.m);
    try {
        const int fd = op == 'R' ? tracker_fd_locked(t) : t.fd;
        if (fd < 0) return false;
        ssize_t n;
        do n = ::write(fd, rec, kRecord);
        while (n < 0 && errno == EINTR);
        return n == static_cast<ssize_t>(kRecord);
    } catch (...) {
        return false;
    }
}

}  // namespace

void tracker_register(const std::string& name) {
    if (name.size() > kRecord - 2) throw ValueError("shared memory name too long for the resource tracker");
    if (!send('R', name)) throw OSError(EIO, "cannot register '" + name + "' with the resource tracker");
}

void tracker_unregister(const std::string& name) noexcept {
    send('U', name);
}

void tracker_leave() noexcept {
    // No lock: a thread of the parent may have held it at the fork, and none runs here.
    auto& t = tracker();
    if (t.fd >= 0) ::close(t.fd);
    t.fd = -1;
}

}  // namespace mprocess::detail
