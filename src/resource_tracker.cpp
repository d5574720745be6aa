// SPDX-License-Identifier: Apache-2.0
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
// (mremap) whenever it is full, so there is no fixed limit to the names it keeps. The platform
// calls it makes after the fork are async-signal-safe (platform/process.hpp).
#include "resource_tracker.hpp"

#include <cerrno>
#include <cstring>
#include <mutex>

#include <signal.h>

#include "mprocess/error.hpp"
#include "platform/exec.hpp"
#include "platform/posix.hpp"
#include "platform/process.hpp"
#include "platform/shm.hpp"

namespace mprocess::detail {
namespace {

constexpr std::size_t kRecord = 256;       // 1 op byte + a name of up to 254 bytes + NUL
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
        void* p = capacity == 0 ? platform::map_private(want * kRecord)
                                : platform::remap(names, capacity * kRecord, want * kRecord);
        if (p == nullptr) return false;
        names = static_cast<char(*)[kRecord]>(p);
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
    platform::ignore_signal(SIGINT);
    platform::ignore_signal(SIGTERM);
    Names table;
    char rec[kRecord];
    while (platform::read_exact(in, rec, kRecord)) {  // until every writer is gone
        rec[kRecord - 1] = '\0';
        if (rec[0] == 'R')
            table.add(rec + 1);
        else
            table.remove(rec + 1);
    }
    for (std::size_t i = 0; i < table.used; ++i) platform::shm_unlink(table.names[i]);
    platform::_exit(0);
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
    pid_t pid = platform::fork();
    if (pid < 0) platform::throw_errno("fork of the resource tracker");
    if (pid == 0) {
        if (platform::fork() != 0) platform::_exit(0);
        platform::setsid();  // out of the terminal's process group: a Ctrl-C there is not for us
        // Keep only the pipe's read end (as descriptor 3) and /dev/null on the standard ones.
        if (!platform::keep_only_as_3(read_end.get())) platform::_exit(1);
        tracker_main(3);
    }
    read_end.reset();
    platform::reap_status(pid, true);
    t.fd = write_end.release();
    return t.fd;
}

// A tracker that died (killed by someone) makes the write fail with EPIPE, not end this process
// with SIGPIPE. A registration then starts a new tracker and goes to it: what the dead one held is
// beyond saving, but what comes next is tracked again, as Python's tracker is restarted.
bool send(char op, const std::string& name) noexcept {
    char rec[kRecord] = {};
    rec[0] = op;
    name.copy(rec + 1, kRecord - 2);  // at most 254 bytes: the record ends with a NUL
    auto& t = tracker();
    std::lock_guard lock(t.m);
    try {
        for (int attempt = 0; attempt < 2; ++attempt) {
            const int fd = op == 'R' ? tracker_fd_locked(t) : t.fd;
            if (fd < 0) return false;
            const long n = platform::write_some(fd, rec, kRecord);  // EPIPE, never SIGPIPE
            if (n == static_cast<long>(kRecord)) return true;
            if (n >= 0 || errno != EPIPE) return false;
            platform::close(t.fd);  // the tracker is gone
            t.fd = -1;
        }
        return false;
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
    if (t.fd >= 0) platform::close(t.fd);
    t.fd = -1;
}

}  // namespace mprocess::detail
