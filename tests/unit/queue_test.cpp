// SPDX-License-Identifier: Apache-2.0
#include <mprocess/process.hpp>
#include <mprocess/queue.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "helpers/children.hpp"
#include "helpers/messages.hpp"
#include "queue_core.hpp"

using namespace std::chrono_literals;
using testing_support::ChildrenTest;

namespace {

class QueueTest : public ChildrenTest {};
class QueueMethods : public testing_support::MethodTest {};

using Clock = std::chrono::steady_clock;

using testing_support::pattern;
using testing_support::Reading;

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

using Item = std::pair<int, int>;  // (producer, sequence number)

}  // namespace

// ---- one process ----------------------------------------------------------------------------------

TEST_F(QueueTest, ItemsComeOutInOrderWithTheirTypes) {
    mp::Queue<Reading> q;
    EXPECT_TRUE(q.empty());
    q.put({"a", {1.0}});
    EXPECT_FALSE(q.empty());  // exact at once: there is no feeder thread
    EXPECT_EQ(q.qsize(), 1u);
    q.put({"b", {}});
    q.put({"", {2.0, 3.0}});
    EXPECT_EQ(q.qsize(), 3u);
    EXPECT_EQ(q.get(), (Reading{"a", {1.0}}));
    EXPECT_EQ(q.get(), (Reading{"b", {}}));
    EXPECT_EQ(q.get(), (Reading{"", {2.0, 3.0}}));
    EXPECT_TRUE(q.empty());

    mp::Queue<std::int64_t> ints;
    for (std::int64_t i = -5; i < 5; ++i) ints.put(i);
    for (std::int64_t i = -5; i < 5; ++i) EXPECT_EQ(ints.get(), i);
}

TEST_F(QueueTest, GetWithATimeoutWaitsThatLongThenThrowsEmpty) {
    mp::Queue<int> q;
    auto t0 = Clock::now();
    EXPECT_THROW(q.get(true, 0.1), mp::Empty);
    const double waited = seconds_since(t0);
    EXPECT_GE(waited, 0.1);
    EXPECT_LT(waited, 5.0);

    t0 = Clock::now();
    EXPECT_THROW(q.get_nowait(), mp::Empty);
    EXPECT_THROW(q.get(false), mp::Empty);
    EXPECT_THROW(q.get(true, -1.0), mp::Empty);  // a negative timeout is zero, as in Python
    EXPECT_LT(seconds_since(t0), 0.1);
}

TEST_F(QueueTest, ABoundedQueueRaisesFullAndMakesRoomWhenDrained) {
    mp::Queue<int> q(2);
    EXPECT_EQ(q.maxsize(), 2u);
    q.put(1);
    q.put_nowait(2);
    EXPECT_TRUE(q.full());
    EXPECT_THROW(q.put_nowait(3), mp::Full);
    auto t0 = Clock::now();
    EXPECT_THROW(q.put(3, true, 0.1), mp::Full);
    EXPECT_GE(seconds_since(t0), 0.1);
    EXPECT_EQ(q.get(), 1);
    EXPECT_FALSE(q.full());
    q.put(3);
    EXPECT_EQ(q.get(), 2);
    EXPECT_EQ(q.get(), 3);
}

TEST_F(QueueTest, ABlockedPutIsWokenByAGet) {
    mp::Queue<int> q(1);
    q.put(1);
    std::thread producer([q]() mutable { q.put(2); });  // blocks until the get below
    EXPECT_EQ(q.get(), 1);
    producer.join();
    EXPECT_EQ(q.get(), 2);
}

TEST_F(QueueTest, UseAfterCloseThrows) {
    mp::Queue<int> q;
    q.put(1);
    EXPECT_THROW(q.join_thread(), mp::ValueError);  // Python asserts close() came first
    mp::Queue<int> same = q;
    q.close();
    EXPECT_TRUE(same.closed());  // a handle: copies are the same queue
    EXPECT_THROW(q.put(2), mp::ValueError);
    EXPECT_THROW(q.get(), mp::ValueError);
    EXPECT_THROW(same.get_nowait(), mp::ValueError);
    q.join_thread();
    q.cancel_join_thread();
}

TEST_F(QueueTest, CloseWakesAThreadBlockedInGet) {
    mp::Queue<int> q;
    std::thread blocked([q]() mutable { EXPECT_THROW(q.get(), mp::ValueError); });
    q.close();  // whether the thread sleeps already or has not yet called get(), it must not hang
    blocked.join();
}

TEST_F(QueueTest, TaskDoneCalledTooOftenThrowsAndJoinWaitsForEveryTask) {
    mp::JoinableQueue<int> q;
    EXPECT_THROW(q.task_done(), mp::ValueError);
    EXPECT_TRUE(q.join(0.0));  // nothing put: nothing to wait for
    q.put(1);
    q.put(2);
    EXPECT_FALSE(q.join(0.05));
    q.get();
    q.task_done();
    EXPECT_FALSE(q.join(0.0));
    std::thread worker([q]() mutable {
        q.get();
        q.task_done();
    });
    q.join();
    worker.join();
    EXPECT_THROW(q.task_done(), mp::ValueError);
}

TEST_F(QueueTest, SimpleQueuePutsAndGets) {
    mp::SimpleQueue<std::string> q;
    EXPECT_TRUE(q.empty());
    q.put("x");
    q.put("");
    EXPECT_EQ(q.get(), "x");
    EXPECT_EQ(q.get(), "");
    EXPECT_TRUE(q.empty());
    q.close();
    EXPECT_THROW(q.put("y"), mp::ValueError);
}

TEST_F(QueueTest, EverySizeAroundTheRingAndOverflowBoundariesArrivesIntact) {
    mp::Queue<std::string> q({.ring_bytes = 4096});
    std::vector<std::size_t> sizes;
    for (std::size_t n : {0, 1, 7, 8, 9, 100, 1000, 1007, 1008, 1009, 1024, 2000, 4096, 5000, 70000, 1 << 20})
        for (int k = 0; k < 7; ++k) sizes.push_back(n + static_cast<std::size_t>(k) * 3);
    // Interleave puts and gets so that the writer keeps switching between ring and overflow.
    std::size_t next = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        q.put(pattern(sizes[i], static_cast<unsigned>(i)));
        if (i % 3 == 2) {
            ASSERT_EQ(q.get(), pattern(sizes[next], static_cast<unsigned>(next))) << "item " << next;
            ++next;
        }
    }
    for (; next < sizes.size(); ++next)
        ASSERT_EQ(q.get(), pattern(sizes[next], static_cast<unsigned>(next))) << "item " << next;
    EXPECT_TRUE(q.empty());
}

TEST_F(QueueTest, PutNeverWaitsForAConsumerAndADrainedBacklogGivesItsMemoryBack) {
    mp::Queue<std::uint64_t> q;
    auto& core = mp::detail::queue_handle(q).core();
    const std::uint64_t idle = core.resident_bytes();
    constexpr std::uint64_t n = 4'000'000;  // 64 MB of records, far beyond the ring
    for (std::uint64_t i = 0; i < n; ++i) q.put(i);
    EXPECT_EQ(q.qsize(), n);
    EXPECT_GT(core.resident_bytes(), std::uint64_t{60} << 20);
    for (std::uint64_t i = 0; i < n; ++i) ASSERT_EQ(q.get(), i);
    EXPECT_TRUE(q.empty());
    EXPECT_THROW(q.get_nowait(), mp::Empty);  // a consumer that finds the queue drained gives pages back
    EXPECT_LE(core.resident_bytes(), std::max(idle, core.ring_bytes()) + 2 * 4096 + 4096);
}

TEST_F(QueueTest, MediumItemsReuseTheirMemoryWhileFlowingAndGiveItBackWhenDrained) {
    mp::Queue<std::string> q;
    auto& core = mp::detail::queue_handle(q).core();
    const std::uint64_t idle = core.resident_bytes();
    for (int round = 0; round < 20; ++round) {
        q.put(pattern(std::size_t{8} << 20, static_cast<unsigned>(round)));
        q.put(pattern(std::size_t{8} << 20, static_cast<unsigned>(round + 100)));
        ASSERT_TRUE(q.get() == pattern(std::size_t{8} << 20, static_cast<unsigned>(round)));
        ASSERT_TRUE(q.get() == pattern(std::size_t{8} << 20, static_cast<unsigned>(round + 100)));
        // 320 MiB went through; the memory in use stays near what two items need.
        ASSERT_LT(core.resident_bytes(), idle + (std::uint64_t{64} << 20));
    }
    EXPECT_GT(core.resident_bytes(), idle + (std::uint64_t{16} << 20));  // kept for the next ones
    EXPECT_THROW(q.get_nowait(), mp::Empty);                             // drained, and nothing is coming: give it back
    EXPECT_LE(core.resident_bytes(), idle + core.ring_bytes() + 4096);
}

TEST_F(QueueTest, AQueueOfAnotherItemTypeIsRefusedWhenItArrives) {
    mp::Queue<int> q;
    mp::SpawnArgs args;
    const std::string blob = mp::detail::SpawnArg<mp::Queue<int>>::write(args, q);
    EXPECT_THROW((mp::detail::SpawnArg<mp::Queue<double>>::read(args, blob)), mp::TypeMismatch);
    EXPECT_THROW((mp::detail::SpawnArg<mp::JoinableQueue<int>>::read(args, blob)), mp::TypeMismatch);
    auto same = mp::detail::SpawnArg<mp::Queue<int>>::read(args, blob);
    q.put(42);
    EXPECT_EQ(same.get(), 42);
}

// ---- across processes, under every start method ----------------------------------------------------

TEST_P(QueueMethods, ItemsPutBeforeTheChildStartsAndByTheChildAllArriveInOrder) {
    mp::Queue<int> to_child;
    mp::Queue<std::string> from_child;
    for (int i = 0; i < 1000; ++i) to_child.put(i);
    auto p = ctx().Process(
        [](mp::Queue<int> in, mp::Queue<std::string> out) {
            for (int i = 0; i < 1000; ++i)
                if (in.get() != i) out.put("out of order at " + std::to_string(i));
            for (int i = 0; i < 1000; ++i) out.put(std::to_string(i));
        },
        to_child, from_child);
    p.start();
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(from_child.get(), std::to_string(i));
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_TRUE(from_child.empty());
}

TEST_P(QueueMethods, AGetBlockedInOneProcessIsWokenByAPutInAnother) {
    mp::Queue<int> q;
    mp::Queue<int> go;
    auto p = ctx().Process(
        [](mp::Queue<int> q, mp::Queue<int> go) {
            go.get();
            q.put(7);
        },
        q, go);
    p.start();
    go.put(1);
    EXPECT_EQ(q.get(true, 60.0), 7);
    p.join();
}

TEST_P(QueueMethods, ManyProducersAndConsumersDeliverEveryItemExactlyOnceInProducerOrder) {
    constexpr int producers = 4, consumers = 4, per_producer = 100'000;
    mp::Queue<Item> q;
    mp::Queue<std::vector<int>> report;  // per consumer: how many items of each producer, or -1 on disorder
    std::vector<mp::Process> procs;
    for (int c = 0; c < consumers; ++c)
        procs.push_back(ctx().Process(
            [](mp::Queue<Item> q, mp::Queue<std::vector<int>> report) {
                std::vector<int> next(4, 0), count(4, 0);
                bool ordered = true;
                for (;;) {
                    auto [producer, seq] = q.get();
                    if (producer < 0) break;
                    // Each consumer sees a producer's items in increasing order.
                    if (seq < next[producer]) ordered = false;
                    next[producer] = seq + 1;
                    ++count[producer];
                }
                if (!ordered) count.assign(4, -1);
                report.put(count);
            },
            q, report));
    for (int id = 0; id < producers; ++id)
        procs.push_back(ctx().Process(
            [](mp::Queue<Item> q, int id) {
                for (int i = 0; i < 100'000; ++i) q.put({id, i});
            },
            q, id));
    for (auto& p : procs) p.start();
    for (int i = consumers; i < consumers + producers; ++i) procs[i].join();
    for (int c = 0; c < consumers; ++c) q.put({-1, 0});
    std::vector<long> total(producers, 0);
    for (int c = 0; c < consumers; ++c) {
        auto counts = report.get(true, 120.0);
        for (int id = 0; id < producers; ++id) {
            ASSERT_GE(counts[id], 0) << "a consumer saw a producer's items out of order";
            total[id] += counts[id];
        }
    }
    for (int id = 0; id < producers; ++id) EXPECT_EQ(total[id], per_producer) << "producer " << id;
    for (auto& p : procs) p.join();
    EXPECT_TRUE(q.empty());
}

TEST_P(QueueMethods, AProcessThatExitsRightAfterPutLosesNothing) {
    mp::Queue<std::string> q;
    auto p = ctx().Process(
        [](mp::Queue<std::string> q) {
            for (int i = 0; i < 100; ++i) q.put(std::to_string(i));
            q.put(pattern(std::size_t{8} << 20, 3));
            ::_exit(0);  // no atexit, no flush: put() has already done all there is to do
        },
        q);
    p.start();
    p.join();
    EXPECT_EQ(q.qsize(), 101u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(q.get(), std::to_string(i));
    EXPECT_TRUE(q.get() == pattern(std::size_t{8} << 20, 3));
}

TEST_P(QueueMethods, AQuarterGigabyteItemArrivesIntactAndItsMemoryIsGivenBack) {
    mp::Queue<std::string> q;
    auto p = ctx().Process([](mp::Queue<std::string> q) { q.put(pattern(std::size_t{256} << 20, 9)); }, q);
    p.start();
    std::string got = q.get();
    p.join();
    ASSERT_EQ(got.size(), std::size_t{256} << 20);
    EXPECT_TRUE(got == pattern(got.size(), 9));
    auto& core = mp::detail::queue_handle(q).core();
    EXPECT_LT(core.resident_bytes(), std::uint64_t{4} << 20);
}

TEST_P(QueueMethods, AConsumerKilledMidStreamCostsAtMostTheItemItHeld) {
    constexpr int n = 200'000;
    mp::Queue<int> q;
    mp::Queue<int> seen_by_victim;  // what the victim got, sent on after each get
    mp::Queue<std::vector<int>> survivor_report;
    auto victim = ctx().Process(
        [](mp::Queue<int> q, mp::Queue<int> seen) {
            for (;;) seen.put(q.get());
        },
        q, seen_by_victim);
    auto survivor = ctx().Process(
        [](mp::Queue<int> q, mp::Queue<std::vector<int>> report) {
            std::vector<int> got;
            for (;;) {
                int v = q.get();
                if (v < 0) break;
                got.push_back(v);
            }
            report.put(got);
        },
        q, survivor_report);
    // The victim starts alone, so that it surely gets items; the survivor joins once the victim
    // is consuming, and the victim is killed while items keep coming.
    victim.start();
    for (int i = 0; i < n / 2; ++i) q.put(i);
    std::vector<int> victim_got;
    for (int i = 0; i < 100; ++i) victim_got.push_back(seen_by_victim.get(true, 60.0));
    survivor.start();
    victim.kill();
    for (int i = n / 2; i < n; ++i) q.put(i);
    victim.join();
    q.put(-1);
    auto survivor_got = survivor_report.get(true, 120.0);
    survivor.join();
    while (!seen_by_victim.empty()) victim_got.push_back(seen_by_victim.get());

    std::vector<int> times(n, 0);
    for (int v : victim_got) ++times[v];
    for (int v : survivor_got) ++times[v];
    int missing = 0;
    for (int i = 0; i < n; ++i) {
        ASSERT_LE(times[i], 1) << "item " << i << " delivered twice";
        missing += times[i] == 0;
    }
    EXPECT_LE(missing, 1) << "more than the victim's own item was lost";
    EXPECT_GE(survivor_got.size(), std::size_t{n / 2});
}

TEST_P(QueueMethods, ProcessesKilledAtRandomMomentsInsidePutAndGetNeverWedgeTheQueue) {
    mp::Queue<std::string> q({.ring_bytes = 4096});
    std::mt19937 rng(12345);
    for (int round = 0; round < 12; ++round) {
        auto busy = ctx().Process(
            [](mp::Queue<std::string> q) {
                for (unsigned i = 0;; ++i) {
                    q.put(std::string(i % 3 == 0 ? 10000 : 10, 'x'));
                    q.get();
                }
            },
            q);
        busy.start();
        // Let it run for a random while (any moment is a fair moment to die), then kill it.
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
        busy.kill();
        busy.join();
        // The survivors keep working: a put and a get of our own go through.
        q.put("mine");
        std::string got;
        do got = q.get(true, 10.0);
        while (got != "mine");
        EXPECT_TRUE(q.empty());
    }
}

TEST_P(QueueMethods, JoinableQueueJoinWaitsForAConsumerInAnotherProcess) {
    mp::JoinableQueue<int> q;
    mp::Queue<long> sums;
    auto consumer = ctx().Process(
        [](mp::JoinableQueue<int> q, mp::Queue<long> sums) {
            long sum = 0;
            for (;;) {
                sum += q.get();
                sums.put(sum);
                q.task_done();
            }
        },
        mp::ProcessOptions{.daemon = true}, q, sums);
    consumer.start();
    for (int i = 1; i <= 50; ++i) q.put(i);
    q.join();
    // Every task was done, so the consumer has reported all 50 running sums.
    EXPECT_EQ(sums.qsize(), 50u);
    long last = 0;
    while (!sums.empty()) last = sums.get();
    EXPECT_EQ(last, 50 * 51 / 2);
    consumer.terminate();
    consumer.join();
}

TEST_P(QueueMethods, ABoundedPutInOneProcessWaitsForAGetInAnother) {
    mp::Queue<int> q(3);
    auto p = ctx().Process(
        [](mp::Queue<int> q) {
            for (int i = 0; i < 1000; ++i) q.put(i);
        },
        q);
    p.start();
    for (int i = 0; i < 1000; ++i) {
        ASSERT_EQ(q.get(true, 60.0), i);
        EXPECT_LE(q.qsize(), 3u);
    }
    p.join();
}

TEST_P(QueueMethods, TimeoutsFullEmptyAndCloseBehaveTheSameInAChild) {
    mp::Queue<int> q(1);
    mp::Queue<std::string> report;
    auto p = ctx().Process(
        [](mp::Queue<int> q, mp::Queue<std::string> report) {
            auto t0 = std::chrono::steady_clock::now();
            try {
                q.get(true, 0.1);
                report.put("get on an empty queue returned");
            } catch (const mp::Empty&) {
                const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                report.put(waited >= 0.1 ? "empty after the timeout" : "empty too early");
            }
            q.put(1);
            try {
                q.put_nowait(2);
                report.put("put on a full queue returned");
            } catch (const mp::Full&) {
                report.put("full");
            }
            q.close();  // this process is done with it; the parent is not
            try {
                q.get_nowait();
                report.put("get after close returned");
            } catch (const mp::ValueError&) {
                report.put("closed");
            }
        },
        q, report);
    p.start();
    EXPECT_EQ(report.get(true, 60.0), "empty after the timeout");
    EXPECT_EQ(report.get(true, 60.0), "full");
    EXPECT_EQ(report.get(true, 60.0), "closed");
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_TRUE(q.full());
    EXPECT_EQ(q.get_nowait(), 1);
    q.put(3);
    EXPECT_EQ(q.get(), 3);
}

TEST_P(QueueMethods, ABoundedQueueWithManyProducersAndConsumersNeverStalls) {
    // maxsize 1 makes every put and get wait for the other side: a lost wake-up would hang here.
    mp::Queue<int> q(1);
    mp::Queue<long> sums;
    std::vector<mp::Process> procs;
    for (int c = 0; c < 2; ++c)
        procs.push_back(ctx().Process(
            [](mp::Queue<int> q, mp::Queue<long> sums) {
                long sum = 0;
                for (int v; (v = q.get(true, 60.0)) >= 0;) sum += v;
                sums.put(sum);
            },
            q, sums));
    for (int p = 0; p < 2; ++p)
        procs.push_back(ctx().Process(
            [](mp::Queue<int> q) {
                for (int i = 1; i <= 20000; ++i) q.put(i, true, 60.0);
            },
            q));
    for (auto& p : procs) p.start();
    procs[2].join();
    procs[3].join();
    q.put(-1);
    q.put(-1);
    const long total = sums.get(true, 60.0) + sums.get(true, 60.0);
    EXPECT_EQ(total, 2L * 20000 * 20001 / 2);
    for (auto& p : procs) p.join();
}

TEST_P(QueueMethods, SimpleQueueCrossesAProcessBoundary) {
    mp::SimpleQueue<Reading> q;
    auto p = ctx().Process([](mp::SimpleQueue<Reading> q) { q.put({"s", {1.0, 2.0}}); }, q);
    p.start();
    EXPECT_EQ(q.get(), (Reading{"s", {1.0, 2.0}}));
    p.join();
}

// The second hop: a child takes the first item and hands the queue on to a grandchild (with its own
// method, inherited), which takes the rest; nothing is lost or seen twice on the way.
void take_the_rest(mp::Queue<int> q, mp::Queue<int> out) {
    for (int i = 0; i < 2; ++i) out.put(q.get(true, 30.0));
}
void take_one_and_hand_on(mp::Queue<int> q, mp::Queue<int> out) {
    out.put(q.get(true, 30.0));
    mp::Process p(take_the_rest, q, out);
    p.start();
    p.join();
    mp::exit(p.exitcode().value_or(99));
}

TEST_P(QueueMethods, AQueueHandedOnToAGrandchildLosesNothing) {
    mp::Queue<int> q, out;
    for (int i = 1; i <= 3; ++i) q.put(i);
    auto p = ctx().Process(take_one_and_hand_on, q, out);
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    std::vector<int> got;
    for (int i = 0; i < 3; ++i) got.push_back(out.get(true, 30.0));
    EXPECT_EQ(got, (std::vector<int>{1, 2, 3}));
    EXPECT_TRUE(q.empty());
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, QueueMethods, testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });
