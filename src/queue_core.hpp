// SPDX-License-Identifier: Apache-2.0
// The shared-memory queue behind Queue, JoinableQueue and SimpleQueue (see queue.cpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mprocess/queue.hpp"
#include "platform/posix.hpp"
#include "wait/shm_lock.hpp"

namespace mprocess::detail {

using QueueReader = RawQueue::Reader;

class QueueCore {
public:
    static std::shared_ptr<QueueCore> create(std::uint64_t type_tag, const QueueOptions& options, bool joinable);
    static std::shared_ptr<QueueCore> import(const SpawnArgs& args, const std::string& blob, std::uint64_t type_tag,
                                             std::string_view type_name, bool joinable);
    ~QueueCore();
    QueueCore(const QueueCore&) = delete;
    QueueCore& operator=(const QueueCore&) = delete;

    // An item in two parts (a size and the bytes, say), stored as one.
    struct Item {
        std::string_view head, body;
        std::uint64_t size() const noexcept { return head.size() + body.size(); }
    };

    void put(const Item& item, bool block, const Timeout& timeout);
    void get(QueueReader& reader, bool block, const Timeout& timeout);
    std::size_t qsize() const noexcept;
    std::size_t maxsize() const noexcept { return ctl_->maxsize; }
    void task_done();
    bool join(const Timeout& timeout);
    void close() noexcept;
    bool closed() const noexcept { return closed_.load(); }
    std::string export_to(SpawnArgs& args) const;

    // Memory the queue's pages take now (control page, rings, undrained overflow).
    std::uint64_t resident_bytes() const;
    std::uint64_t ring_bytes() const noexcept { return size_[kHot]; }

private:
    enum : int { kHot = 0, kWarm = 1, kCold = 2 };

    struct alignas(64) WaitWord {
        std::atomic<std::uint32_t> seq;
        std::atomic<std::uint32_t> sleepers;
    };

    struct Ctl {
        // Set once, at creation.
        std::uint64_t magic;
        std::uint64_t type_tag;
        std::uint64_t maxsize;
        std::uint64_t hot_size;
        std::uint64_t cold_size;
        std::uint32_t joinable;
        // Producers' line: changed under plock.
        alignas(64) ShmLock plock;
        std::atomic<std::uint32_t> pregion;  // where the last record went
        std::atomic<std::uint64_t> tail[3];
        std::atomic<std::uint64_t> nput;       // items published
        std::atomic<std::uint32_t> warm_used;  // the warm ring has pages to give back
        // Consumers' line: changed under clock.
        alignas(64) ShmLock clock;
        std::atomic<std::uint32_t> cregion;  // where the next record is read
        std::atomic<std::uint64_t> head[3];
        std::atomic<std::uint64_t> nget;               // items taken
        std::atomic<std::uint64_t> punched;            // overflow positions below this are given back
        alignas(64) std::atomic<std::uint64_t> ndone;  // task_done() calls
        WaitWord data;                                 // consumers waiting for an item
        WaitWord space;                                // producers waiting for room
        WaitWord join;                                 // join() callers
    };

    QueueCore(platform::Fd memfd, void* base, std::uint64_t map_size);

    std::atomic_ref<std::uint64_t> slot(int r, std::uint64_t pos) const noexcept {
        return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(area_[r] + (pos & mask_[r])));
    }
    void copy_in(int r, std::uint64_t pos, std::string_view src) noexcept;
    void write_record(int r, std::uint64_t pos, std::uint64_t seq, const Item& item) noexcept;
    void write_jump(int r, std::uint64_t pos, std::uint64_t seq, int to, std::uint64_t target) noexcept;

    bool place(const Item& item);
    std::uint64_t limit(int x, bool fresh);
    std::optional<std::uint64_t> target_in(int x, std::uint64_t rec);
    void repair_producer();

    bool try_take(QueueReader& reader, int patience);
    bool peek(bool before_sleep) const noexcept;
    void punch(std::uint64_t upto) noexcept;
    void release_idle_memory() noexcept;
    void repair_consumer();
    [[noreturn]] void corrupt(std::uint64_t header) const;

    // Waits until ready(before_sleep) (true) or the deadline (false); idle() runs every 200 ms
    // asleep. ready(false) is asked while spinning, ready(true) before sleeping.
    template <class Ready, class Idle>
    bool wait_on(WaitWord& w, Ready ready, const platform::Deadline& deadline, Idle idle);
    static void wake(WaitWord& w, int n) noexcept;
    void check_open(const char* when = "") const;

    platform::Fd memfd_;
    void* base_;
    std::uint64_t map_size_;
    Ctl* ctl_;
    // The areas: hot ring, warm ring, overflow.
    char* area_[3];
    std::uint64_t offset_[3];  // in the memfd
    std::uint64_t size_[3];
    std::uint64_t mask_[3];
    std::atomic<bool> closed_{false};
    // Lower bounds of the consumers' positions, kept by producers (under plock) to leave the
    // consumers' cache line alone while there is room.
    std::uint64_t seen_[3] = {};  // head of the rings, given-back mark of the overflow
    std::uint64_t nget_seen_ = 0;
};

}  // namespace mprocess::detail
