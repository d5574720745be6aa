#include "shm_lock.hpp"

#include <chrono>

#include "platform/posix.hpp"

namespace mprocess::detail {

bool ShmLock::lock() {
    const std::uint32_t me = platform::current_tid();
    std::uint32_t cur = 0;
    if (word_.compare_exchange_strong(cur, me, std::memory_order_acquire, std::memory_order_relaxed)) return false;
    for (int i = 0; i < 200; ++i) {
        platform::cpu_relax();
        cur = 0;
        if (word_.load(std::memory_order_relaxed) == 0 &&
            word_.compare_exchange_weak(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
            return false;
    }
    for (;;) {
        cur = word_.load(std::memory_order_relaxed);
        if (cur == 0) {
            // Others may be asleep: keep the waiters bit so that our unlock wakes one.
            if (word_.compare_exchange_weak(cur, me | kWaiters, std::memory_order_acquire, std::memory_order_relaxed))
                return false;
            continue;
        }
        if ((cur & kWaiters) == 0) {
            if (!word_.compare_exchange_weak(cur, cur | kWaiters, std::memory_order_relaxed)) continue;
            cur |= kWaiters;
        }
        if (platform::futex_wait(&word_, cur, std::chrono::milliseconds(50))) continue;
        const std::uint32_t owner = cur & ~kWaiters;
        if (platform::thread_is_dead(owner) &&
            word_.compare_exchange_strong(cur, me | kWaiters, std::memory_order_acquire, std::memory_order_relaxed))
            return true;
    }
}

void ShmLock::unlock() noexcept {
    if (word_.exchange(0, std::memory_order_release) & kWaiters) platform::futex_wake(&word_, 1);
}

}  // namespace mprocess::detail
