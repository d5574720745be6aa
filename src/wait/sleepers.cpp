// SPDX-License-Identifier: Apache-2.0
#include "wait/sleepers.hpp"

namespace mprocess::detail {

std::uint32_t FutexSleeper::look() noexcept {
    if (bit_ == 0) {
        const std::uint32_t expected = word_.load(std::memory_order_seq_cst);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        return expected;
    }
    std::uint32_t cur = word_.load(std::memory_order_relaxed);
    while (cur != 0 && (cur & bit_) == 0 && !word_.compare_exchange_weak(cur, cur | bit_, std::memory_order_relaxed)) {
    }
    return cur == 0 ? 0 : cur | bit_;
}

void FutexSleeper::sleep(std::uint32_t expected, platform::Clock::time_point until) noexcept {
    // A marked word found free: the look that followed took it or lost it to another taker, and
    // a sleep on the free word could outlast the next release (a release that saw no bit wakes
    // nobody). Look again instead.
    if (bit_ != 0 && expected == 0) return;
    const auto left = until - platform::Clock::now();
    if (left <= platform::Clock::duration::zero()) return;
    platform::futex_wait(&word_, expected, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
}

void FutexSleeper::wake(int n) noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleepers_->load(std::memory_order_relaxed) != 0) platform::futex_wake(&word_, n);
}

void FutexSleeper::ring_after_locked_op(int n) noexcept {
    platform::fence_after_locked_op();
    if (sleepers_->load(std::memory_order_relaxed) == 0) return;
    word_.fetch_add(1, std::memory_order_seq_cst);
    platform::futex_wake(&word_, n);
}

void EventfdSleeper::sleep(std::uint32_t, platform::Clock::time_point until) {
    pollfd fds[2] = {{efd_.get(), POLLIN, 0}, {watch_, POLLIN, 0}};  // poll() passes over a negative fd
    if (platform::poll_until(fds, 2, until) == 0) {
        // Out of time, the recheck: a process killed between setting `rung` and ringing would
        // otherwise leave every later sleeper waiting for a ring that never comes.
        rung_.store(0, std::memory_order_seq_cst);
        return;
    }
    if (fds[1].revents != 0) {
        watch_readable_ = true;
        return;
    }
    // Drain, then clear, then look again (the wait's next look): a ring sent after the clear
    // stays in the eventfd for the next poll; one sent before it is seen by the look.
    platform::drain_efd(efd_);
    rung_.store(0, std::memory_order_seq_cst);
}

}  // namespace mprocess::detail
