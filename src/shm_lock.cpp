#include "shm_lock.hpp"

#include <algorithm>
#include <chrono>

namespace mprocess::detail {

ShmLock::Result ShmLock::lock_until(const platform::Deadline& deadline) {
    const std::uint32_t me = platform::current_tid();
    std::uint32_t cur = 0;
    if (word_.compare_exchange_strong(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
        return Result::acquired;
    for (int i = 0; i < 200; ++i) {
        platform::cpu_relax();
        cur = 0;
        if (word_.load(std::memory_order_relaxed) == 0 &&
            word_.compare_exchange_weak(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
            return Result::acquired;
    }
    constexpr auto kCheck = std::chrono::milliseconds(50);
    // Ask about the owner every 50 ms, and at once for a try that would otherwise fail at once.
    const auto start = platform::Clock::now();
    auto next_check = deadline && *deadline <= start ? start : start + kCheck;
    for (;;) {
        cur = word_.load(std::memory_order_relaxed);
        if (cur == 0) {
            // Others may be asleep: keep the waiters bit so that our unlock wakes one.
            if (word_.compare_exchange_weak(cur, me | kWaiters, std::memory_order_acquire, std::memory_order_relaxed))
                return Result::acquired;
            continue;
        }
        const auto now = platform::Clock::now();
        if (now >= next_check) {
            next_check = now + kCheck;
            const std::uint32_t owner = cur & ~kWaiters;
            if (platform::thread_is_dead(owner)) {
                if (word_.compare_exchange_strong(cur, me | kWaiters, std::memory_order_acquire,
                                                  std::memory_order_relaxed))
                    return Result::owner_died;
                continue;
            }
        }
        if (deadline && now >= *deadline) return Result::timeout;
        if ((cur & kWaiters) == 0) {
            if (!word_.compare_exchange_weak(cur, cur | kWaiters, std::memory_order_relaxed)) continue;
            cur |= kWaiters;
        }
        auto until = next_check;
        if (deadline) until = std::min(until, *deadline);
        platform::futex_wait(&word_, cur, std::chrono::duration_cast<std::chrono::nanoseconds>(until - now));
    }
}

std::uint32_t ShmLock::unlock() noexcept {
    const std::uint32_t old = word_.exchange(0, std::memory_order_release);
    if (old & kWaiters) platform::futex_wake(&word_, 1);
    return old & ~kWaiters;
}

}  // namespace mprocess::detail
