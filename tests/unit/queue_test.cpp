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
#include "queue_core.hpp"

using namespace std::chrono_literals;
using testing_support::ChildrenTest;

namespace {

class QueueTest : public ChildrenTest {};
class QueueMethods : public testing_support::MethodTest {};

using Clock = std::chrono::steady_clock;

struct Reading {
    std::string sensor;
    std::vector<double> values;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(sensor, values);
    }
    bool operator==(const Reading&) const = default;
};

std::string pattern(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed) & 0xff);
    return s;
}

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

TEST_F(QueueTest, AQueueOfAnotherItemTypeIsRefusedWhenItArrives) {
    mp::Queue<int> q;
    mp::detail::SpawnArgs args;
    const std::string blob = mp::detail::SpawnArg<mp::Queue<int>>::write(args, q);
    EXPECT_THROW((mp::detail::SpawnArg<mp::Queue<double>>::read(args, blob)), mp::TypeMismatch);
    EXPECT_THROW((mp::detail::SpawnArg<mp::JoinableQueue<int>>::read(args, blob)), mp::TypeMismatch);
    auto same = mp::detail::SpawnArg<mp::Queue<int>>::read(args, blob);
    q.put(42);
    EXPECT_EQ(same.get(), 42);
}
