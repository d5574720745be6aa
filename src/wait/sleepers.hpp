// SPDX-License-Identifier: Apache-2.0
// Waiting, second part: what a wait sleeps on once its spin is over, and how its wakers wake it.
// Both sleepers are views of state that lives in shared memory (or in one process's memory, for
// threads), and both follow one rule: a sleeper announces itself, then looks at its condition
// again, then sleeps; a waker makes its change, then looks for sleepers, and wakes them only if
// there are any. Each side orders its write before its read, so at least one of them sees the
// other's: either the sleeper sees the change, or the waker sees the sleeper. No wake-up is lost,
// and a waker with nobody asleep makes no system call.
//
// The interface wait_until() uses (wait.hpp):
//   announce(), leave()          counted in as asleep, and out again, once per wait;
//   look() -> token              just before the sleeper's last look at its condition;
//   sleep(token, until)          until woken, `until`, or a wake-up that was for someone else;
//   pass_on()                    the wait is over: hand on a wake-up meant for several.
#pragma once

#include <atomic>
#include <cstdint>

#include "platform/posix.hpp"

namespace mprocess::detail {

// A futex word. Sleepers are announced either by a count beside the word (a queue's, a
// semaphore's) or by a bit in the word itself (a lock's, where whoever clears the word wakes one
// sleeper if the bit was set; the kernel compares the whole word, so the bit and the state
// cannot disagree). The word is the state that sleepers wait to see change (a count, a flag, a
// generation, a lock's owner), or a sequence number wakers move on.
class FutexSleeper {
public:
    FutexSleeper(std::atomic<std::uint32_t>& word, std::atomic<std::uint32_t>& sleepers) noexcept
        : word_(word), sleepers_(&sleepers) {}
    static FutexSleeper marking(std::atomic<std::uint32_t>& word, std::uint32_t bit) noexcept {
        return FutexSleeper(word, bit);
    }

    void announce() noexcept {
        if (sleepers_) sleepers_->fetch_add(1, std::memory_order_seq_cst);
    }
    void leave() noexcept {
        if (sleepers_) sleepers_->fetch_sub(1, std::memory_order_seq_cst);
    }
    // The word as the sleep will expect it. The fence orders the announcement before the look at
    // the condition that follows (the waker's fence orders its change before its look at the
    // count). With a bit, the announcement is this look's own: the bit is set here, on a word
    // that is not free, each time (whoever freed the word in between has cleared it).
    std::uint32_t look() noexcept;
    // Sleeps while the word still reads `expected`, up to `until`.
    void sleep(std::uint32_t expected, platform::Clock::time_point until) noexcept;
    void pass_on() noexcept {}  // each wake-up wakes as many as the waker meant

    // Wakers, counted sleepers only. Each orders the waker's change before its look at the count.
    // The waker changed the word itself (a count, a flag): wakes up to n sleepers, if any.
    void wake(int n) noexcept;
    // The waker changed what sleepers look at elsewhere, by a locked read-modify-write just
    // before (a lock's release, a compare-and-swap): on x86 that instruction already was the
    // fence. Moves the word on, so that a sleeper about to sleep does not, and wakes up to n.
    void ring_after_locked_op(int n) noexcept;

private:
    FutexSleeper(std::atomic<std::uint32_t>& word, std::uint32_t bit) noexcept : word_(word), bit_(bit) {}
    std::atomic<std::uint32_t>& word_;
    std::atomic<std::uint32_t>* sleepers_ = nullptr;
    std::uint32_t bit_ = 0;
};

// An eventfd rung by the other side, with the count of those asleep on it and a flag that a ring
// is pending (`rung`), both in shared memory: the waker rings only when someone sleeps and nobody
// rang since, so the fast path has no system call. Store-then-load is sequentially consistent on
// both sides. A sleep also ends when `watch` (another descriptor, or -1) becomes readable: a
// Pipe's sleepers watch the liveness socket, which does when the peer is gone.
class EventfdSleeper {
public:
    EventfdSleeper(std::atomic<std::uint32_t>& sleepers, std::atomic<std::uint32_t>& rung, const platform::Fd& efd,
                   int watch = -1) noexcept
        : sleepers_(sleepers), rung_(rung), efd_(efd), watch_(watch) {}

    void announce() noexcept { sleepers_.fetch_add(1, std::memory_order_seq_cst); }
    // However the wait ends, `rung` is cleared: a ring it did not sleep through would otherwise
    // stay marked as pending and silence every later one. Clearing only ever adds wake-ups.
    void leave() noexcept {
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
        rung_.store(0, std::memory_order_seq_cst);
    }
    std::uint32_t look() noexcept { return 0; }  // nothing to remember: the eventfd keeps a ring until drained
    void sleep(std::uint32_t, platform::Clock::time_point until);
    // Someone else may sleep on the ring this wait consumed: pass it on.
    void pass_on() noexcept {
        if (sleepers_.load(std::memory_order_seq_cst) > 1) platform::signal_efd(efd_);
    }
    // True once a sleep ended because `watch` became readable (it then stays readable).
    bool watch_readable() const noexcept { return watch_readable_; }

    // The waker, right after its sequentially consistent store.
    void ring() noexcept {
        if (sleepers_.load(std::memory_order_seq_cst) != 0 && rung_.exchange(1) == 0) platform::signal_efd(efd_);
    }

private:
    std::atomic<std::uint32_t>& sleepers_;
    std::atomic<std::uint32_t>& rung_;
    const platform::Fd& efd_;
    int watch_;
    bool watch_readable_ = false;
};

}  // namespace mprocess::detail
