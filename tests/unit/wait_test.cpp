// SPDX-License-Identifier: Apache-2.0
// The one way to wait (src/wait/): a wait sees a condition already true without sleeping, is
// woken by a waker, gives up at its deadline, and finds a change whose wake-up never came at its
// next recheck. Threads of this process stand in for processes: the words are the same futex
// words and the eventfd the same descriptor.
#include "wait/wait.hpp"

#include <atomic>
#include <stdexcept>
#include <thread>

#include <sched.h>

#include <gtest/gtest.h>

using namespace std::chrono_literals;
namespace detail = mprocess::detail;
namespace platform = mprocess::platform;

namespace {

// A recheck too far away to end any wait of a test: only a wake-up can.
constexpr detail::Pace kNoRecheck{.recheck = std::chrono::hours(1)};
constexpr detail::Pace kQuickRecheck{.recheck = std::chrono::milliseconds(5)};

platform::Deadline in(std::chrono::nanoseconds d) {
    return platform::Clock::now() + d;
}

// Both sleepers over one flag: a futex word with its count, an eventfd with its count and `rung`.
struct Shared {
    std::atomic<std::uint32_t> flag{0};
    std::atomic<std::uint32_t> sleepers{0};
    std::atomic<std::uint32_t> rung{0};
    platform::Fd efd = platform::make_eventfd();

    bool set() const { return flag.load(std::memory_order_seq_cst) != 0; }
    detail::FutexSleeper futex() { return {flag, sleepers}; }
    detail::EventfdSleeper eventfd() { return {sleepers, rung, efd}; }
    // Whether a wait on `sleeper` for ready() saw it, once the waker did `wake` while it slept.
    template <class Ready, class Sleeper, class Wake>
    bool asleep_until(Ready ready, Sleeper sleeper, const detail::Pace& pace, Wake wake) {
        bool seen = false;
        std::thread waiter([&] { seen = detail::wait_until(ready, sleeper, in(60s), pace); });
        while (sleepers.load() == 0) std::this_thread::sleep_for(1ms);
        wake();
        waiter.join();
        return seen;
    }
    template <class Sleeper, class Wake>
    bool asleep_until_set(Sleeper sleeper, const detail::Pace& pace, Wake wake) {
        return asleep_until([this] { return set(); }, sleeper, pace, wake);
    }
};

// A sleeper that counts the waits that went to sleep.
template <class Sleeper>
struct Counting {
    Sleeper inner;
    int announced = 0;
    void announce() {
        ++announced;
        inner.announce();
    }
    void leave() { inner.leave(); }
    auto look() { return inner.look(); }
    void sleep(std::uint32_t token, platform::Clock::time_point until) { inner.sleep(token, until); }
    void pass_on() { inner.pass_on(); }
};

}  // namespace

TEST(Wait, AConditionAlreadyTrueEndsTheWaitWithoutSleeping) {
    Shared s;
    s.flag = 1;
    Counting<detail::FutexSleeper> sleeper{s.futex()};
    EXPECT_TRUE(detail::wait_until([&] { return s.set(); }, sleeper, std::nullopt));
    EXPECT_TRUE(detail::wait_until([&] { return s.set(); }, sleeper, detail::kTryOnce));
    EXPECT_EQ(sleeper.announced, 0);
}

TEST(Wait, ATryLooksWithoutSleeping) {
    Shared s;
    Counting<detail::FutexSleeper> sleeper{s.futex()};
    EXPECT_FALSE(detail::wait_until([&] { return s.set(); }, sleeper, detail::kTryOnce));
    EXPECT_FALSE(detail::wait_until([&] { return s.set(); }, sleeper, platform::Clock::now()));
    EXPECT_EQ(sleeper.announced, 0);
}

TEST(Wait, AFutexSleeperIsWokenByItsWaker) {
    Shared s;
    EXPECT_TRUE(s.asleep_until_set(s.futex(), kNoRecheck, [&] {
        s.flag.store(1, std::memory_order_release);
        s.futex().wake(1);
    }));
    EXPECT_EQ(s.sleepers.load(), 0u);
}

TEST(Wait, AFutexSleeperOnASequenceIsWokenByItsRing) {
    Shared s;  // the flag is a sequence here; what the waiter waits for is `done`
    std::atomic<std::uint32_t> done{0};
    EXPECT_TRUE(s.asleep_until([&] { return done.load() != 0; }, s.futex(), kNoRecheck,
                               [&] {
                                   done.exchange(1);  // a locked read-modify-write, as ring_after_locked_op() expects
                                   s.futex().ring_after_locked_op(1);
                               }));
}

TEST(Wait, AnEventfdSleeperIsWokenByItsRing) {
    Shared s;
    EXPECT_TRUE(s.asleep_until_set(s.eventfd(), kNoRecheck, [&] {
        s.flag.store(1, std::memory_order_seq_cst);
        s.eventfd().ring();
    }));
    EXPECT_EQ(s.sleepers.load(), 0u);
    EXPECT_EQ(s.rung.load(), 0u) << "a ring left pending would silence the next one";
}

TEST(Wait, AWaitGivesUpAtItsDeadline) {
    Shared s;
    for (auto deadline : {in(1ms), in(30ms)}) {
        EXPECT_FALSE(detail::wait_until([&] { return s.set(); }, s.futex(), deadline));
        EXPECT_TRUE(platform::Clock::now() >= *deadline);
        EXPECT_FALSE(detail::wait_until([&] { return s.set(); }, s.eventfd(), deadline));
    }
    EXPECT_EQ(s.sleepers.load(), 0u);
}

// A waker killed between its change and its wake-up: the recheck finds the change.
TEST(Wait, AChangeWhoseWakeUpNeverCameIsFoundAtTheRecheck) {
    Shared futex_side;
    EXPECT_TRUE(futex_side.asleep_until_set(futex_side.futex(), kQuickRecheck, [&] { futex_side.flag.store(1); }));

    // On an eventfd the dead waker also left `rung` set, so that a live one does not ring either.
    Shared efd_side;
    EXPECT_TRUE(efd_side.asleep_until_set(efd_side.eventfd(), kQuickRecheck, [&] {
        efd_side.rung.store(1);
        efd_side.flag.store(1);
        efd_side.eventfd().ring();  // silenced by the pending `rung`
    }));
}

TEST(Wait, TheRecheckRunsWhileAsleepAndMayEndTheWait) {
    Shared s;
    int rechecks = 0;
    auto recheck = [&] {
        if (++rechecks == 3) s.flag = 1;  // as a lock taken over from a dead owner
    };
    EXPECT_TRUE(detail::wait_until([&] { return s.set(); }, s.futex(), in(60s), kQuickRecheck, recheck));
    EXPECT_EQ(rechecks, 3);
}

TEST(Wait, AConditionThatThrowsEndsTheWaitAndLeavesTheSleeper) {
    Shared s;
    auto closed_while_asleep = [&](bool asleep) {
        if (asleep) throw std::runtime_error("closed");
        return false;
    };
    EXPECT_THROW(detail::wait_until(closed_while_asleep, s.futex(), in(60s)), std::runtime_error);
    EXPECT_THROW(detail::wait_until(closed_while_asleep, s.eventfd(), in(60s)), std::runtime_error);
    EXPECT_EQ(s.sleepers.load(), 0u);
}

// A marked word (a lock's): the waiter sets the bit on the held word, so the release wakes it.
TEST(Wait, AMarkedFutexSleeperIsWokenByTheReleaseThatSeesItsBit) {
    constexpr std::uint32_t kHeld = 7, kBit = 1u << 31;
    std::atomic<std::uint32_t> word{kHeld};
    auto take = [&] {
        std::uint32_t free = 0;
        return word.compare_exchange_strong(free, 1);
    };
    bool took = false;
    std::thread waiter(
        [&] { took = detail::wait_until(take, detail::FutexSleeper::marking(word, kBit), in(60s), kNoRecheck); });
    while (word.load() != (kHeld | kBit)) std::this_thread::sleep_for(1ms);
    if (word.exchange(0) & kBit) platform::futex_wake(&word, 1);
    waiter.join();
    EXPECT_TRUE(took);
    EXPECT_EQ(word.load(), 1u);
}

TEST(Wait, TheSpinSeesAChangeOrGivesUp) {
    if (platform::allowed_cpus() < 2) GTEST_SKIP() << "this process may run on one CPU only: waits do not spin there";
    std::atomic<int> looks{0};
    EXPECT_TRUE(detail::spin_until([&] { return ++looks == 10; }, std::nullopt));
    EXPECT_FALSE(detail::spin_until([] { return false; }, std::nullopt));
    EXPECT_FALSE(detail::spin_until([] { return true; }, detail::kTryOnce)) << "a try's one look is the caller's";
}

// A thread allowed one CPU shares it with whatever it waits for: it sleeps at once instead of spinning.
TEST(Wait, AThreadOnOneCpuDoesNotSpin) {
    int looks = -1;
    std::thread pinned([&] {  // a thread of its own: the choice is made once per thread, at its first wait
        cpu_set_t all, one;
        ASSERT_EQ(::sched_getaffinity(0, sizeof all, &all), 0);
        CPU_ZERO(&one);
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
            if (CPU_ISSET(cpu, &all)) {
                CPU_SET(cpu, &one);
                break;
            }
        }
        ASSERT_EQ(::sched_setaffinity(0, sizeof one, &one), 0);
        looks = 0;
        EXPECT_FALSE(detail::spin_until([&] { return ++looks == 10; }, std::nullopt));
    });
    pinned.join();
    EXPECT_EQ(looks, 0) << "the spin looked, on a thread that may run on one CPU only";
}
