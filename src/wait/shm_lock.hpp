// SPDX-License-Identifier: Apache-2.0
// A mutex that lives in shared memory and survives the death of its owner.
//
// The word holds the owner's thread id (0 when free) and a "waiters" bit. Taking a free lock is
// one compare-and-swap, releasing it one exchange; a futex is touched only when someone waits.
// A waiter spins briefly, then sleeps (wait/wait.hpp, the waiters bit marking its sleep), and
// wakes every 50 ms to ask whether the owner still exists (a dead thread leaves no /proc entry, a
// dead process only a zombie); if not, it takes the lock over and is told so. Cheaper than a
// robust pthread mutex, whose kernel list bookkeeping doubles the cost of an uncontended
// lock/unlock pair. Limit: a thread id recycled by a new thread before anyone looks keeps the lock
// looking held (Linux recycles ids only after the whole pid range has been used).
#pragma once

#include <atomic>
#include <cstdint>

#include "platform/posix.hpp"

namespace mprocess::detail {

class ShmLock {
public:
    enum class Result { timeout, acquired, owner_died };

    // Returns true if the previous owner died holding the lock (the caller now holds it).
    bool lock() { return lock_until(std::nullopt) == Result::owner_died; }
    // Waits up to the deadline (none: forever). A deadline in the past tries once, and still takes
    // over from a dead owner.
    Result lock_until(const platform::Deadline& deadline);
    // Releases the lock whoever holds it; returns the owner's thread id, 0 if it was not held.
    std::uint32_t unlock() noexcept;
    std::uint32_t owner() const noexcept { return word_.load(std::memory_order_relaxed) & ~kWaiters; }

private:
    static constexpr std::uint32_t kWaiters = 1u << 31;
    std::atomic<std::uint32_t> word_{0};
};
static_assert(sizeof(ShmLock) == 4);

class ShmLockGuard {
public:
    explicit ShmLockGuard(ShmLock& l) : l_(l), owner_died(l.lock()) {}
    ~ShmLockGuard() { l_.unlock(); }
    ShmLockGuard(const ShmLockGuard&) = delete;
    ShmLockGuard& operator=(const ShmLockGuard&) = delete;

private:
    ShmLock& l_;

public:
    const bool owner_died;
};

}  // namespace mprocess::detail
