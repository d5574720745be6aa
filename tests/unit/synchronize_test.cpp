// SPDX-License-Identifier: Apache-2.0
#include <mprocess/process.hpp>
#include <mprocess/queue.hpp>
#include <mprocess/shared_value.hpp>
#include <mprocess/synchronize.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "helpers/children.hpp"

using namespace std::chrono_literals;
using testing_support::ChildrenTest;

namespace {

class SyncTest : public ChildrenTest {};
class SyncMethods : public testing_support::MethodTest {};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// A timed wait that gives up must have waited its time, and not much more.
template <class F>
void expect_waits_about(double seconds, F f) {
    const auto t0 = Clock::now();
    EXPECT_FALSE(f());
    const double waited = seconds_since(t0);
    EXPECT_GE(waited, seconds);
    EXPECT_LT(waited, seconds + 2.0);
}

std::atomic<int> barrier_actions{0};
void count_action() {
    ++barrier_actions;
}

}  // namespace

// ---- one process --------------------------------------------------------------------------------

TEST_F(SyncTest, LockFollowsPythonsRules) {
    mp::Lock l;
    EXPECT_THROW(l.release(), mp::ValueError);
    EXPECT_TRUE(l.acquire());
    EXPECT_FALSE(l.acquire(false));
    expect_waits_about(0.1, [&] { return l.acquire(true, 0.1); });
    l.release();
    {
        std::lock_guard g(l);  // Lockable: the standard guards work
        EXPECT_FALSE(l.try_lock());
    }
    EXPECT_TRUE(l.try_lock_for(10ms));
    // Any thread may release a Lock, as in Python.
    std::thread([l]() mutable { l.release(); }).join();
    EXPECT_TRUE(l.acquire(false));
    l.release();
    EXPECT_FALSE(l.owner_died());
}

TEST_F(SyncTest, RLockCountsAndBelongsToItsThread) {
    mp::RLock r;
    EXPECT_THROW(r.release(), mp::AssertionError);
    EXPECT_TRUE(r.acquire());
    EXPECT_TRUE(r.acquire());
    EXPECT_EQ(r.count(), 2u);
    bool other_got_it = true;
    std::thread([r, &other_got_it]() mutable {
        other_got_it = r.acquire(true, 0.05);
        EXPECT_THROW(r.release(), mp::AssertionError);
    }).join();
    EXPECT_FALSE(other_got_it);
    r.release();
    EXPECT_TRUE(r.is_owned());
    r.release();
    EXPECT_FALSE(r.is_owned());
    EXPECT_THROW(r.release(), mp::AssertionError);
}

TEST_F(SyncTest, SemaphoresCountAndTheBoundedOneRefusesToGrow) {
    mp::Semaphore s(2);
    EXPECT_TRUE(s.acquire());
    EXPECT_TRUE(s.acquire(false));
    EXPECT_FALSE(s.acquire(false));
    expect_waits_about(0.1, [&] { return s.acquire(true, 0.1); });
    s.release();
    s.release();
    s.release();  // above the initial value: allowed
    EXPECT_EQ(s.get_value(), 3u);

    mp::BoundedSemaphore b(1);
    EXPECT_THROW(b.release(), mp::ValueError);
    EXPECT_TRUE(b.acquire());
    b.release();
    EXPECT_THROW(b.release(), mp::ValueError);
    EXPECT_EQ(b.get_value(), 1u);
}

TEST_F(SyncTest, EventWaitsUntilSetOrTimeout) {
    mp::Event e;
    EXPECT_FALSE(e.is_set());
    expect_waits_about(0.1, [&] { return e.wait(0.1); });
    std::thread setter([e]() mutable { e.set(); });
    EXPECT_TRUE(e.wait(30.0));
    setter.join();
    EXPECT_TRUE(e.wait(0.0));
    e.clear();
    EXPECT_FALSE(e.wait(0.0));
}

TEST_F(SyncTest, ConditionNeedsItsLockAndTimesOut) {
    mp::Condition c;
    EXPECT_THROW(c.wait(0.01), mp::AssertionError);
    EXPECT_THROW(c.notify(), mp::AssertionError);
    std::lock_guard g(c);
    expect_waits_about(0.1, [&] { return c.wait(0.1); });
    c.notify();  // nobody waits: nothing happens
    EXPECT_FALSE(c.wait_for([] { return false; }, 0.05));
    EXPECT_TRUE(c.wait_for([] { return true; }, 0.0));
}

TEST_F(SyncTest, ConditionWaitReleasesAnRLockHeldSeveralTimes) {
    mp::RLock r;
    mp::Condition c(r);
    mp::Event ready;
    c.acquire();
    c.acquire();
    std::thread notifier([c, ready]() mutable {
        ready.wait();
        std::lock_guard g(c);  // only possible while the waiter has let go of both levels
        c.notify();
    });
    ready.set();
    EXPECT_TRUE(c.wait(30.0));
    EXPECT_EQ(r.count(), 2u);  // restored
    c.release();
    c.release();
    notifier.join();
}

TEST_F(SyncTest, BarrierRunsItsActionOncePerPassInTheLastToArrive) {
    barrier_actions = 0;
    mp::Barrier b(3, count_action);
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t)
        threads.emplace_back([b]() mutable {
            for (int k = 0; k < 50; ++k) b.wait(30.0);
        });
    for (int k = 0; k < 50; ++k) {
        b.wait(30.0);
        EXPECT_GE(barrier_actions, k + 1);  // the pass's action ran before anyone was released
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(barrier_actions, 50);
}

TEST_F(SyncTest, BarrierBreaksOnAbortAndTimeoutAndResets) {
    mp::Barrier b(2);
    EXPECT_EQ(b.parties(), 2u);
    EXPECT_THROW(b.wait(0.1), mp::BrokenBarrierError);  // timed out alone: broken
    EXPECT_TRUE(b.broken());
    EXPECT_THROW(b.wait(1.0), mp::BrokenBarrierError);
    b.reset();
    EXPECT_FALSE(b.broken());
    std::thread other([b]() mutable { b.wait(); });
    unsigned index = b.wait(30.0);
    other.join();
    EXPECT_LT(index, 2u);
    b.abort();
    EXPECT_THROW(b.wait(), mp::BrokenBarrierError);
    EXPECT_THROW(mp::Barrier(0), mp::ValueError);
}

// ---- across processes, under every start method --------------------------------------------------

TEST_P(SyncMethods, ALockHeldByAKilledProcessPassesToTheNextWithOwnerDied) {
    mp::Lock l;
    mp::Event holding;
    auto p = ctx().Process(
        [](mp::Lock l, mp::Event holding) {
            l.acquire();
            holding.set();
            for (;;) ::pause();
        },
        l, holding);
    p.start();
    ASSERT_TRUE(holding.wait(60.0));
    EXPECT_FALSE(l.acquire(false));
    p.kill();
    p.join();
    const auto t0 = Clock::now();
    ASSERT_TRUE(l.acquire(true, 10.0));
    EXPECT_LT(seconds_since(t0), 5.0);  // the owner check runs every 50 ms: far less than this
    EXPECT_TRUE(l.owner_died());
    l.mark_consistent();
    EXPECT_FALSE(l.owner_died());
    l.release();
    EXPECT_TRUE(l.acquire(false));
    l.release();
}

TEST_P(SyncMethods, AnRLockHeldByAKilledProcessPassesToTheNextWithOwnerDied) {
    mp::RLock r;
    mp::Event holding;
    auto p = ctx().Process(
        [](mp::RLock r, mp::Event holding) {
            r.acquire();
            r.acquire();
            holding.set();
            for (;;) ::pause();
        },
        r, holding);
    p.start();
    ASSERT_TRUE(holding.wait(60.0));
    p.kill();
    p.join();
    ASSERT_TRUE(r.acquire(true, 10.0));
    EXPECT_TRUE(r.owner_died());
    EXPECT_EQ(r.count(), 1u);
    r.release();
    EXPECT_FALSE(r.is_owned());
}

TEST_P(SyncMethods, ALockMakesIncrementsFromTenProcessesExact) {
    // The counter lives in the queue's item: each process takes it, adds, puts it back, under
    // the lock; without the lock the get/put pairs would interleave and lose updates.
    mp::Lock l;
    mp::Queue<long> counter;
    counter.put(0);
    std::vector<mp::Process> procs;
    for (int i = 0; i < 10; ++i)
        procs.push_back(ctx().Process(
            [](mp::Lock l, mp::Queue<long> counter) {
                for (int k = 0; k < 1000; ++k) {
                    std::lock_guard g(l);
                    long v = counter.get();
                    counter.put(v + 1);
                }
            },
            l, counter));
    for (auto& p : procs) p.start();
    for (auto& p : procs) p.join();
    EXPECT_EQ(counter.get(), 10'000);
}

TEST_P(SyncMethods, SemaphoreAndEventWorkAcrossProcesses) {
    mp::Semaphore s(0);
    mp::Event go;
    auto p = ctx().Process(
        [](mp::Semaphore s, mp::Event go) {
            go.wait();
            s.release();
            s.release();
        },
        s, go);
    p.start();
    EXPECT_FALSE(s.acquire(true, 0.05));
    go.set();
    EXPECT_TRUE(s.acquire(true, 30.0));
    EXPECT_TRUE(s.acquire(true, 30.0));
    p.join();
    EXPECT_EQ(s.get_value(), 0u);
}

TEST_P(SyncMethods, NotifyWakesExactlyNWaitingProcesses) {
    mp::Condition c;
    mp::Semaphore waiting(0), woken(0);
    std::vector<mp::Process> procs;
    for (int i = 0; i < 4; ++i)
        procs.push_back(ctx().Process(
            [](mp::Condition c, mp::Semaphore waiting, mp::Semaphore woken) {
                std::lock_guard g(c);
                waiting.release();  // while holding the lock: the parent's notify comes after our wait starts
                if (c.wait(60.0)) woken.release();
            },
            c, waiting, woken));
    for (auto& p : procs) p.start();
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(waiting.acquire(true, 60.0));
    {
        std::lock_guard g(c);  // every child is inside wait() once we get the lock
        c.notify(2);
    }
    EXPECT_TRUE(woken.acquire(true, 30.0));
    EXPECT_TRUE(woken.acquire(true, 30.0));
    EXPECT_FALSE(woken.acquire(true, 0.3));  // no third
    {
        std::lock_guard g(c);
        c.notify_all();
    }
    EXPECT_TRUE(woken.acquire(true, 30.0));
    EXPECT_TRUE(woken.acquire(true, 30.0));
    for (auto& p : procs) p.join();
}

TEST_P(SyncMethods, BarrierOfFiveProcessesGivesOneZeroPerPassAndRunsTheActionOnce) {
    constexpr int parties = 5, passes = 100;
    mp::Barrier b(parties);
    mp::Queue<std::vector<int>> report;
    std::vector<mp::Process> procs;
    for (int i = 0; i < parties - 1; ++i)
        procs.push_back(ctx().Process(
            [](mp::Barrier b, mp::Queue<std::vector<int>> report) {
                std::vector<int> idx;
                for (int k = 0; k < 100; ++k) idx.push_back(static_cast<int>(b.wait(60.0)));
                report.put(idx);
            },
            b, report));
    for (auto& p : procs) p.start();
    std::vector<std::vector<int>> all;
    std::vector<int> mine;
    for (int k = 0; k < passes; ++k) mine.push_back(static_cast<int>(b.wait(60.0)));
    all.push_back(mine);
    for (int i = 0; i < parties - 1; ++i) all.push_back(report.get(true, 60.0));
    for (auto& p : procs) p.join();
    for (int k = 0; k < passes; ++k) {
        std::multiset<int> seen;
        for (auto& v : all) seen.insert(v[k]);
        EXPECT_EQ(seen.count(0), 1u) << "pass " << k;
        EXPECT_EQ(seen, (std::multiset<int>{0, 1, 2, 3, 4})) << "pass " << k;
    }
}

// The lecture's Counter: a user type holding a Value and a Lock, which travels to a child under
// every start method once it says how (serialize()), its handles as handles.
class Counter {
public:
    explicit Counter(int initval = 0) : val_(initval) {}
    void increment() {
        std::lock_guard with(lock_);
        val_.set_value(val_.value() + 1);
    }
    int value() {
        std::lock_guard with(lock_);
        return val_.value();
    }
    template <class Archive>
    void serialize(Archive& ar) {
        ar(val_, lock_);
    }

private:
    mp::Value<int> val_;
    mp::Lock lock_;
};

void count_fifty(Counter counter) {
    for (int i = 0; i < 50; ++i) counter.increment();
}

TEST_P(SyncMethods, TheLecturesCounterOfAValueAndALockTravelsToEveryChild) {
    Counter counter(0);
    std::vector<mp::Process> procs;
    for (int i = 0; i < 4; ++i) procs.push_back(ctx().Process(count_fifty, counter));
    for (auto& p : procs) p.start();
    for (auto& p : procs) {
        p.join();
        EXPECT_EQ(p.exitcode(), 0);
    }
    EXPECT_EQ(counter.value(), 200);
}

// A function object with state (a shared Value) as a Barrier's action: it travels as an argument
// does, under every start method.
struct CountPasses {
    mp::Value<int> passes{0};
    void operator()() { passes.set_value(passes.value() + 1); }
    template <class Archive>
    void serialize(Archive& ar) {
        ar(passes);
    }
};

void wait_three_times(mp::Barrier b) {
    for (int i = 0; i < 3; ++i) b.wait(60.0);
}

TEST_P(SyncMethods, ABarrierActionMayBeAFunctionObjectWithStateUnderEveryMethod) {
    CountPasses action;
    mp::Barrier b(3, action);
    std::vector<mp::Process> procs;
    for (int i = 0; i < 2; ++i) procs.push_back(ctx().Process(wait_three_times, b));
    for (auto& p : procs) p.start();
    wait_three_times(b);
    for (auto& p : procs) {
        p.join();
        EXPECT_EQ(p.exitcode(), 0);
    }
    EXPECT_EQ(action.passes.value(), 3);  // once per pass, in whichever process came last
}

TEST_P(SyncMethods, ABarrierActionMayBeAnyCallableUnderForkAndSaysWhyNotElsewhere) {
    mp::Value<int> passes(0);
    int calls_here = 0;
    mp::Barrier b(2, [passes, &calls_here]() mutable {
        passes.set_value(passes.value() + 1);
        ++calls_here;  // a capture by reference: it cannot leave this program image
    });
    auto p = ctx().Process(wait_three_times, b);
    if (GetParam() != "fork") {
        try {
            p.start();
            ADD_FAILURE() << "a capturing lambda reached a fresh program image";
        } catch (const mp::ProcessError& e) {
            EXPECT_NE(std::string(e.what()).find("Barrier's action"), std::string::npos) << e.what();
        }
        return;
    }
    p.start();
    wait_three_times(b);
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_EQ(passes.value(), 3);
    EXPECT_LE(calls_here, 3);  // the child's passes ran on the child's copy of calls_here
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, SyncMethods, testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });
