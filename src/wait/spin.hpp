// SPDX-License-Identifier: Apache-2.0
// Waiting, first part: the tuning every wait shares, and its spin. A wait looks at its condition
// for a bounded time before it sleeps (wait.hpp), because waking a process asleep on another CPU
// costs 20-50 µs on the project's machines while the round trip between two running processes is
// well under 1 µs: an answer already on its way is caught without a wake-up.
#pragma once

#include <algorithm>
#include <chrono>
#include <type_traits>

#include "platform/posix.hpp"

namespace mprocess::detail {

// The tuning of every wait, declared here only.
// How long a wait looks before it sleeps: about one wake-up's cost (the Pipe's round trip
// benchmark chose it; the Client's socket round trip went from 100 to 11 µs with it).
inline constexpr std::chrono::nanoseconds kSpin = std::chrono::microseconds(20);
// After this much of the spin, a peer that has not answered may be waiting for our CPU (more
// runnable processes than CPUs): the spin gives the CPU away each time it reads the clock.
inline constexpr std::chrono::nanoseconds kSpinBeforeYield = std::chrono::microseconds(2);
// A sleeper looks again at least this often even without a wake-up: a process killed between
// its change and its wake-up would otherwise strand every later sleeper.
inline constexpr std::chrono::nanoseconds kRecheck = std::chrono::milliseconds(200);
// The spin reads the clock after this many pauses (or after every look that pauses not at all).
inline constexpr int kPausesPerClockRead = 64;

// A deadline already past, whenever it is read: a non-blocking call's one look.
inline constexpr platform::Deadline kTryOnce{platform::Clock::time_point::min()};

// How one wait spends its time: the shared tuning, unless the wait has a reason of its own, which
// it says where it departs from it.
struct Pace {
    std::chrono::nanoseconds spin = kSpin;
    // How long it spins before it gives the CPU away at each clock read.
    std::chrono::nanoseconds yield_after = kSpinBeforeYield;
    // How often wait_until() looks again, and calls its recheck, while asleep.
    std::chrono::nanoseconds recheck = kRecheck;
    // Pauses between two looks: 1 for a word in memory; more where each look slows the writer
    // down; 0 where a look is a system call, which takes longer than any pause.
    int pauses_per_look = 1;
};

// A wait's condition is ready() or ready(bool asleep): some look harder once the wait is about to
// sleep, where a look may cost more than while spinning.
template <class Ready>
bool sees(Ready& ready, bool asleep) {
    if constexpr (std::is_invocable_r_v<bool, Ready&, bool>)
        return ready(asleep);
    else
        return ready();
}

// Whether spinning can pay here: a thread allowed a single CPU (taskset, a cpuset of one) shares it
// with the peer it waits for, which runs only once the thread stops looking; it sleeps at once
// instead, as a blocking read would. Read once per thread: affinity is set before a program starts
// its work, and a thread inherits its creator's.
inline bool spinning_pays() noexcept {
    thread_local const bool pays = platform::allowed_cpus() > 1;
    return pays;
}

// Looks at ready() for up to pace.spin (never past the deadline), pausing between looks; true as
// soon as it holds. The caller has looked once already.
template <class Ready>
bool spin_until(Ready&& ready, const platform::Deadline& deadline, const Pace& pace = {}) {
    if (!spinning_pays()) return false;
    const auto start = platform::Clock::now();
    const auto end = std::min(start + pace.spin, deadline.value_or(platform::Clock::time_point::max()));
    const int looks = pace.pauses_per_look > 0 ? kPausesPerClockRead / pace.pauses_per_look : 1;
    for (auto now = start; now < end;) {
        for (int i = 0; i < looks; ++i) {
            for (int k = 0; k < pace.pauses_per_look; ++k) platform::cpu_relax();
            if (sees(ready, false)) return true;
        }
        now = platform::Clock::now();
        // If the peer waits for our CPU (more runnable processes than CPUs), let it have it.
        if (now - start > pace.yield_after) platform::yield_cpu();
    }
    return false;
}

}  // namespace mprocess::detail
