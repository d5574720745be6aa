// SPDX-License-Identifier: Apache-2.0
/// @file
/// Time as mprocess spells it everywhere: a Timeout (how long, as Python's seconds or None), and the
/// Deadline it makes (until when). Options, waits and the manager's wire all take a Timeout.
#pragma once

#include <chrono>
#include <optional>

namespace mprocess {

/// When a wait ends: a point of the steady clock, or nullopt for never.
using Deadline = std::optional<std::chrono::steady_clock::time_point>;

/// How long a wait may last: Python's `timeout` argument, as seconds, a std::chrono duration, or
/// None (mp::forever). It converts implicitly from each, so `q.get(true, 0.5)`,
/// `q.get(true, 500ms)` and `q.get(true, mp::forever)` all read as Python's.
class Timeout {
public:
    /// The clock every deadline is on: steady, so a change of the wall clock moves no wait.
    using clock = std::chrono::steady_clock;

    /// Python's None: block until the event happens.
    constexpr Timeout(std::nullopt_t) noexcept {}
    /// Seconds, as in Python; negative (or not a number) means zero, and longer than kLongestSeconds
    /// (infinity included) means forever.
    constexpr Timeout(double seconds) noexcept {
        if (!(seconds > 0))
            ns_ = std::chrono::nanoseconds(0);
        else if (seconds < kLongestSeconds)
            ns_ = std::chrono::nanoseconds(static_cast<long long>(seconds * 1e9));
    }
    /// A std::chrono duration; negative means zero, and longer than kLongestSeconds means forever.
    template <class Rep, class Period>
    constexpr Timeout(std::chrono::duration<Rep, Period> d) noexcept {
        if (!(d.count() > 0))
            ns_ = std::chrono::nanoseconds(0);
        else if (d < std::chrono::duration<double>(kLongestSeconds))
            ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(d);
    }

    /// The longest finite timeout, about 31 years: any longer is forever, so that a deadline on
    /// the clock can always be counted (nanoseconds since boot, 64 bits, last 292 years).
    static constexpr double kLongestSeconds = 1e9;

    /// No timeout at all (Python's None); the same as mp::forever.
    static constexpr Timeout never() noexcept { return Timeout(std::nullopt); }

    /// True for Python's None: the wait has no end.
    bool infinite() const noexcept { return !ns_.has_value(); }
    /// How long, never negative; the largest duration there is for an infinite one.
    std::chrono::nanoseconds duration() const noexcept { return ns_.value_or(std::chrono::nanoseconds::max()); }

    /// The absolute deadline from now, or nullopt for none.
    /// No clock read for forever: a blocking call's fast path pays nothing for its deadline.
    Deadline deadline() const noexcept {
        if (!ns_) return std::nullopt;
        return clock::now() + *ns_;
    }
    /// The absolute deadline counted from `start` instead of from now, or nullopt for none.
    Deadline deadline_from(clock::time_point start) const noexcept {
        if (!ns_) return std::nullopt;
        return start + *ns_;
    }

private:
    std::optional<std::chrono::nanoseconds> ns_;
};

/// Python's `timeout=None`: wait until the event happens, however long that takes.
inline constexpr Timeout forever = Timeout::never();

}  // namespace mprocess
