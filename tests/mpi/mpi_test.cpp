// SPDX-License-Identifier: Apache-2.0
// mpi::Pool under mpirun: rank 0 runs the tests, every other rank serves their tasks.
//     mpirun --allow-run-as-root --oversubscribe -np 3 mpi_test
#include <mprocess/mpi.hpp>

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "helpers/pool_lifecycle.hpp"

namespace mp = mprocess;

namespace {

long square(long x) {
    return x * x;
}

int pid_after(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return static_cast<int>(::getpid());
}

int unlucky(int x) {
    if (x == 13) throw std::invalid_argument("13 is unlucky");
    return x;
}

std::string join(std::string a, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += a;
    return out;
}

// 64 MiB in: its checksum out.
std::uint64_t checksum(std::vector<std::uint8_t> bytes) {
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) sum += bytes[i] * (i % 7 + 1);
    return sum;
}

// 64 MiB out.
std::vector<std::uint8_t> pattern(std::size_t n) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 31 + 7);
    return v;
}

unsigned workers() {
    return static_cast<unsigned>(mp::mpi::size() - 1);
}

// The MpiPool tests run under mpirun; MpiSingleton in a program run alone.
class MpiPool : public testing::Test {
protected:
    void SetUp() override {
        if (mp::mpi::size() < 2) GTEST_SKIP() << "run under mpirun -np 3 (or more)";
    }
};

}  // namespace

TEST(MpiSingleton, APoolOfAProgramRunAloneSpawnsItsWorkers) {
    if (mp::mpi::size() != 1) GTEST_SKIP() << "for a program run without mpirun";
    {
        mp::mpi::Pool pool(2);
        EXPECT_EQ(pool.processes(), 2u);
        auto pids = pool.pids();
        EXPECT_EQ(std::set<pid_t>(pids.begin(), pids.end()).size(), 2u);
        std::vector<long> xs(1000);
        std::iota(xs.begin(), xs.end(), 0);
        auto r = pool.map(square, xs, 10);
        for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(r[i], xs[i] * xs[i]);
        EXPECT_THROW(pool.apply(unlucky, 13), mp::RemoteError);
    }
    mp::mpi::Pool again(2);  // the same two, spawned once
    EXPECT_EQ(again.apply(square, 5L), 25);
}

TEST_F(MpiPool, RunsOnRankZeroWithTheOtherRanksAsWorkers) {
    EXPECT_EQ(mp::mpi::rank(), 0);
    mp::mpi::Pool pool;
    EXPECT_EQ(pool.processes(), workers());
    auto pids = pool.pids();
    EXPECT_EQ(std::set<pid_t>(pids.begin(), pids.end()).size(), workers());
    EXPECT_EQ(std::count(pids.begin(), pids.end(), ::getpid()), 0);
}

TEST_F(MpiPool, MapKeepsTheOrder) {
    mp::mpi::Pool pool;
    std::vector<long> xs(1000);
    std::iota(xs.begin(), xs.end(), -500);
    auto r = pool.map(square, xs);
    ASSERT_EQ(r.size(), xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(r[i], xs[i] * xs[i]);
    auto in_chunks_of_7 = pool.map(square, xs, 7);
    EXPECT_EQ(in_chunks_of_7, r);
    EXPECT_TRUE(pool.map(square, std::vector<long>{}).empty());
}

TEST_F(MpiPool, EveryRankTakesWork) {
    mp::mpi::Pool pool;
    // The first tasks go one to each idle rank; each holds its rank for 20 ms.
    auto pids = pool.map(pid_after, std::vector<int>(4 * workers(), 20), 1);
    EXPECT_EQ(std::set<int>(pids.begin(), pids.end()).size(), workers());
}

TEST_F(MpiPool, ImapInOrderAndImapUnorderedComplete) {
    mp::mpi::Pool pool;
    std::vector<long> xs(500);
    std::iota(xs.begin(), xs.end(), 0);
    std::vector<long> ordered;
    for (long v : pool.imap(square, xs, 3)) ordered.push_back(v);
    std::vector<long> unordered;
    for (long v : pool.imap_unordered(square, xs)) unordered.push_back(v);
    std::sort(unordered.begin(), unordered.end());
    ASSERT_EQ(ordered.size(), xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) EXPECT_EQ(ordered[i], xs[i] * xs[i]);
    EXPECT_EQ(unordered, ordered);
}

TEST_F(MpiPool, StarmapApplyAsyncAndCallbacks) {
    mp::mpi::Pool pool;
    auto r = pool.starmap(join, std::vector<std::tuple<std::string, int>>{{"ab", 3}, {"x", 0}, {"-", 2}});
    EXPECT_EQ(r, (std::vector<std::string>{"ababab", "", "--"}));
    std::atomic<long> seen{0};
    auto a = pool.apply_async(square, 12L);
    a.callback([&](const long& v) { seen = v; });
    EXPECT_EQ(a.get(30.0), 144);
    pool.close();
    pool.join();  // callbacks have run once join returns
    EXPECT_EQ(seen.load(), 144);
    EXPECT_THROW(pool.apply_async(square, 1L), mp::ValueError);
}

TEST_F(MpiPool, ATaskExceptionComesBackAsRemoteErrorAndTheRankServesOn) {
    mp::mpi::Pool pool;
    try {
        pool.apply(unlucky, 13);
        FAIL() << "no exception";
    } catch (const mp::RemoteError& e) {
        EXPECT_NE(e.type_name().find("invalid_argument"), std::string::npos) << e.type_name();
        EXPECT_EQ(e.message(), "13 is unlucky");
        EXPECT_NE(e.pid(), ::getpid());
    }
    std::vector<int> xs(100);
    std::iota(xs.begin(), xs.end(), 0);
    EXPECT_THROW(pool.map(unlucky, xs), mp::RemoteError);
    xs[13] = 12;
    EXPECT_EQ(pool.map(unlucky, xs).at(13), 12);
}

TEST_F(MpiPool, LargeArgumentsAndResultsOf64MiB) {
    mp::mpi::Pool pool;
    constexpr std::size_t n = std::size_t{64} << 20;
    auto big = pattern(n);
    EXPECT_EQ(pool.apply(checksum, big), checksum(big));
    EXPECT_EQ(pool.apply(pattern, n), big);
}

TEST_F(MpiPool, AHundredThousandSmallTasks) {
    mp::mpi::Pool pool;
    std::vector<long> xs(100'000);
    std::iota(xs.begin(), xs.end(), 0);
    auto r = pool.map(square, xs, 1);  // one task each
    ASSERT_EQ(r.size(), xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(r[i], xs[i] * xs[i]);
}

TEST_F(MpiPool, OnePoolAtATimeAndNoMoreWorkersThanRanks) {
    {
        mp::mpi::Pool pool;
        EXPECT_THROW(mp::mpi::Pool second, mp::ValueError);
    }
    EXPECT_THROW(mp::mpi::Pool too_many(workers() + 1), mp::ValueError);
    mp::mpi::Pool one(1);
    EXPECT_EQ(one.processes(), 1u);
    EXPECT_EQ(one.apply(square, 9L), 81);
}

TEST_F(MpiPool, TerminateFailsWhatIsLeftAndTheRanksServeTheNextPool) {
    {
        mp::mpi::Pool pool;
        std::vector<mp::AsyncResult<int>> rs;
        for (int i = 0; i < 20; ++i) rs.push_back(pool.apply_async(pid_after, 50));
        pool.terminate();
        EXPECT_THROW(rs.back().get(5.0), mp::ValueError);
    }
    mp::mpi::Pool next;
    EXPECT_EQ(next.apply(square, 7L), 49);
}

// A rank cannot be stopped: a task past its timeout fails at its deadline, naming the rank; the
// rank answers in its own time (the answer is dropped) and serves on.
TEST_F(MpiPool, ATaskPastItsTimeoutFailsAtItsDeadlineAndItsRankServesOn) {
    mp::mpi::Pool pool;
    auto late = pool.apply_async(mp::TaskOptions{.timeout = 0.1}, pid_after, 1500);
    try {
        late.get(30.0);
        FAIL() << "no TaskTimeout";
    } catch (const mp::TaskTimeout& e) {
        EXPECT_EQ(e.report().worker.rfind("rank ", 0), 0u) << e.what();
    }
    auto running = pool.map_async(pid_after, std::vector<int>{300}, 1);
    auto started = [&] {
        for (const auto& w : pool.workers())
            if (w.task == "item 0 of map") return true;
        return false;
    };
    while (!started()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_FALSE(running.cancel(mp::kill_running));  // a rank cannot be stopped: it runs on
    EXPECT_EQ(running.get(30.0).size(), 1u);
    std::vector<long> xs(10);
    std::iota(xs.begin(), xs.end(), 0);
    EXPECT_EQ(pool.map(square, xs).at(9), 81);
}

TEST_F(MpiPool, ImapReadsAnInputRangeAsResultsAreTaken) {
    mp::mpi::Pool pool;
    auto it = pool.imap(square, std::views::iota(0L, 1'000'000'000L), {.chunksize = 4, .buffersize = 2});
    for (long i = 0; i < 50; ++i) EXPECT_EQ(it.next(30.0), i * i);
}

int main(int argc, char** argv) {
    mp::mpi::freeze_support(argc, argv);  // the worker ranks serve here
    testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}

// The one Pool core's lifecycle suite (helpers/pool_lifecycle.hpp), over MPI ranks.
namespace {
struct MpiTraits {
    static const char* skip() { return mp::mpi::size() < 2 ? "run under mpirun -np 3 (or more)" : nullptr; }
    static unsigned workers() { return static_cast<unsigned>(mp::mpi::size() - 1); }
    static std::unique_ptr<mp::Pool> make() { return std::make_unique<mp::mpi::Pool>(); }
    static std::unique_ptr<mp::Pool> make_breakable() { return nullptr; }
    static void break_it(mp::Pool&) {}
    static const char* unbreakable() {
        return "an MPI Pool breaks when MPI fails, which also ends the job (mpi.hpp); pool_test breaks the same core "
               "through a transport that fails on demand";
    }
};
}  // namespace

namespace pool_lifecycle {
INSTANTIATE_TYPED_TEST_SUITE_P(Mpi, PoolLifecycle, MpiTraits);
}  // namespace pool_lifecycle
