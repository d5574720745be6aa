// SPDX-License-Identifier: Apache-2.0
// Waiting: the one way every wait of the library's waits, across processes or between threads of
// one. Look; spin for a bounded time (spin.hpp); then sleep on a sleeper (sleepers.hpp), looking
// again after every wake-up and at least every recheck period.
#pragma once

#include <algorithm>

#include "wait/sleepers.hpp"
#include "wait/spin.hpp"

namespace mprocess::detail {

struct NoRecheck {
    void operator()() const noexcept {}
};

// Waits until ready() (or ready(asleep), see sees()) holds: true, or false once the deadline has
// passed and a last look did not see it. While asleep it looks again at least every pace.recheck,
// and calls recheck() then, which may make ready() hold (a lock taken over from a dead owner).
// The condition may throw, to end a wait on something closed meanwhile; the sleeper is left
// however the wait ends.
template <class Ready, class Sleeper, class Recheck = NoRecheck>
bool wait_until(Ready&& ready, Sleeper&& sleeper, const platform::Deadline& deadline, const Pace& pace = {},
                Recheck&& recheck = {}) {
    if (sees(ready, false)) return true;
    if (spin_until(ready, deadline, pace)) return true;
    const auto until = deadline.value_or(platform::Clock::time_point::max());
    auto now = platform::Clock::now();
    if (now >= until) return sees(ready, true);

    struct Asleep {
        Sleeper& s;
        explicit Asleep(Sleeper& sleeper) : s(sleeper) { s.announce(); }
        ~Asleep() { s.leave(); }
    } asleep(sleeper);
    auto next_recheck = now + pace.recheck;
    for (;;) {
        // Announced, then the token, then the look: a change made after the look wakes the
        // sleep or makes it return at once (sleepers.hpp).
        const auto token = sleeper.look();
        if (sees(ready, true)) {
            sleeper.pass_on();
            return true;
        }
        now = platform::Clock::now();
        if (now >= next_recheck) {
            recheck();
            next_recheck = now + pace.recheck;
            continue;
        }
        if (now >= until) return false;
        sleeper.sleep(token, std::min(next_recheck, until));
    }
}

}  // namespace mprocess::detail
