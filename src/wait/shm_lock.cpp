// SPDX-License-Identifier: Apache-2.0
#include "wait/shm_lock.hpp"

#include <chrono>

#include "wait/wait.hpp"

namespace mprocess::detail {
namespace {

// The lock's wait looks at the owner as its recheck: an owner killed holding the lock costs the
// others this long, and each look reads a /proc file.
constexpr Pace kOwnerCheck{.recheck = std::chrono::milliseconds(50)};

}  // namespace

ShmLock::Result ShmLock::lock_until(const platform::Deadline& deadline) {
    const std::uint32_t me = platform::current_tid();
    std::uint32_t cur = 0;
    if (word_.compare_exchange_strong(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
        return Result::acquired;
    bool took_over = false;
    auto take = [&](bool asleep) {
        if (took_over) return true;
        std::uint32_t free = 0;
        if (!asleep)
            return word_.load(std::memory_order_relaxed) == 0 &&
                   word_.compare_exchange_weak(free, me, std::memory_order_acquire, std::memory_order_relaxed);
        // Others may be asleep: keep the waiters bit so that our unlock wakes one.
        return word_.compare_exchange_strong(free, me | kWaiters, std::memory_order_acquire, std::memory_order_relaxed);
    };
    auto look_at_owner = [&] {
        std::uint32_t held = word_.load(std::memory_order_relaxed);
        if (held != 0 && platform::thread_is_dead(held & ~kWaiters))
            took_over = word_.compare_exchange_strong(held, me | kWaiters, std::memory_order_acquire,
                                                      std::memory_order_relaxed);
    };
    // Ask about the owner every 50 ms, and at once for a try that would otherwise fail at once.
    const bool a_try = deadline && *deadline <= platform::Clock::now();
    if (wait_until(take, FutexSleeper::marking(word_, kWaiters), deadline, kOwnerCheck, look_at_owner))
        return took_over ? Result::owner_died : Result::acquired;
    if (a_try) look_at_owner();
    return took_over ? Result::owner_died : Result::timeout;
}

std::uint32_t ShmLock::unlock() noexcept {
    const std::uint32_t old = word_.exchange(0, std::memory_order_release);
    if (old & kWaiters) platform::futex_wake(&word_, 1);
    return old & ~kWaiters;
}

}  // namespace mprocess::detail
