#include <mprocess/pool.hpp>
#include <mprocess/process.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "helpers/children.hpp"

using testing_support::ChildrenTest;

namespace {

class PoolTest : public ChildrenTest {};
class PoolMethods : public testing_support::MethodTest {};

int square(int x) {
    return x * x;
}
std::string shout(std::string s, int times) {
    std::string out;
    for (int i = 0; i < times; ++i) out += s;
    return out;
}
int fail(int x) {
    throw std::runtime_error("bad item " + std::to_string(x));
}
int die(int sig) {
    ::raise(sig);
    return 0;
}
int slow(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
}
pid_t whoami(int) {
    return ::getpid();
}
std::string worker_name(int) {
    return mp::current_process().name();
}

}  // namespace

TEST_F(PoolTest, ZeroProcessesIsAnError) {
    EXPECT_THROW(mp::Pool(0u), mp::ValueError);
}

TEST_P(PoolMethods, MapKeepsTheOrderOfItsInput) {
    mp::Pool pool(3, {.start_method = GetParam()});
    EXPECT_EQ(pool.map(square, std::vector<int>{31, 53, 79}), (std::vector<int>{961, 2809, 6241}));
    std::vector<int> in(1000);
    for (int i = 0; i < 1000; ++i) in[i] = i;
    auto out = pool.map(square, in, 7);
    ASSERT_EQ(out.size(), 1000u);
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(out[i], i * i);
    EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
}

TEST_P(PoolMethods, ApplyAsyncTakesAnyArgumentsAndTimesOut) {
    mp::Pool pool(2, {.start_method = GetParam()});
    auto a = pool.apply_async(shout, std::string("ab"), 3);
    EXPECT_EQ(a.get(30.0), "ababab");
    EXPECT_TRUE(a.ready());
    EXPECT_TRUE(a.successful());
    auto s = pool.apply_async(slow, 1000);
    EXPECT_THROW(s.get(0.05), mp::TimeoutError);
    EXPECT_THROW(s.successful(), mp::ValueError);
    EXPECT_EQ(pool.apply(square, 12), 144);
}

TEST_P(PoolMethods, AnExceptionInATaskComesBackAsRemoteErrorAndThePoolGoesOn) {
    mp::Pool pool(2, {.start_method = GetParam()});
    auto r = pool.apply_async(fail, 7);
    try {
        r.get(30.0);
        FAIL() << "no exception";
    } catch (const mp::RemoteError& e) {
        EXPECT_EQ(e.type_name(), "std::runtime_error");
        EXPECT_EQ(e.message(), "bad item 7");
        auto pids = pool.pids();
        EXPECT_NE(std::find(pids.begin(), pids.end(), e.pid()), pids.end());
    }
    EXPECT_FALSE(r.successful());
    EXPECT_EQ(pool.apply(square, 3), 9);
}

TEST_P(PoolMethods, AWorkerKilledOrCrashingFailsOnlyItsTaskAndIsReplaced) {
    mp::Pool pool(2, {.start_method = GetParam()});
    const auto before = pool.pids();
    auto others = pool.apply_async(slow, 200);
    auto killed = pool.apply_async(die, SIGKILL);
    try {
        killed.get(30.0);
        FAIL() << "no WorkerLost";
    } catch (const mp::WorkerLost& e) {
        EXPECT_EQ(e.signal(), SIGKILL);
    }
    EXPECT_EQ(others.get(30.0), 200);
    auto crashed = pool.apply_async(die, SIGSEGV);
    try {
        crashed.get(30.0);
        FAIL() << "no WorkerLost";
    } catch (const mp::WorkerLost& e) {
#if defined(__SANITIZE_ADDRESS__)
        EXPECT_NE(e.exitcode(), 0);  // AddressSanitizer catches the SIGSEGV and exits instead
#else
        EXPECT_EQ(e.signal(), SIGSEGV);
#endif
    }
    EXPECT_EQ(pool.map(square, std::vector<int>{1, 2, 3}), (std::vector<int>{1, 4, 9}));  // two workers again
    EXPECT_NE(pool.pids(), before);
    EXPECT_EQ(pool.pids().size(), 2u);
}

TEST_P(PoolMethods, CloseThenJoinFinishesTheQueuedTasks) {
    mp::Pool pool(2, {.start_method = GetParam()});
    std::vector<mp::AsyncResult<int>> rs;
    for (int i = 0; i < 20; ++i) rs.push_back(pool.apply_async(square, i));
    pool.close();
    EXPECT_THROW(pool.apply_async(square, 1), mp::ValueError);
    pool.join();
    for (int i = 0; i < 20; ++i) EXPECT_EQ(rs[i].get(0.0), i * i);
}

TEST_P(PoolMethods, TerminateStopsLongTasksAtOnce) {
    auto t0 = std::chrono::steady_clock::now();
    mp::AsyncResult<int> r = [&] {
        mp::Pool pool(2, {.start_method = GetParam()});
        std::vector<mp::AsyncResult<int>> rs;
        for (int i = 0; i < 10000; ++i) rs.push_back(pool.apply_async(slow, 60000));
        pool.terminate();
        return rs.back();
    }();
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0 + 5.0);
    EXPECT_THROW(r.get(0.0), mp::ValueError);
}

TEST_P(PoolMethods, TheWorkIsSpreadOverTheWorkers) {
    mp::Pool pool(2, {.start_method = GetParam()});
    std::vector<int> in(64, 50);
    auto pids = pool.map(slow, in, 1);  // each task sleeps 50 ms: one worker alone would take 3.2 s
    auto who = pool.map(whoami, std::vector<int>(8, 0), 1);
    std::sort(who.begin(), who.end());
    who.erase(std::unique(who.begin(), who.end()), who.end());
    EXPECT_GE(who.size(), 1u);
    for (pid_t p : who) EXPECT_NE(p, ::getpid());
}

TEST_P(PoolMethods, StarmapUnpacksTuplesAndMaxtasksperchildRenewsWorkers) {
    mp::Pool pool(2, {.start_method = GetParam(), .maxtasksperchild = 3});
    std::vector<std::tuple<std::string, int>> args{{"a", 1}, {"b", 2}, {"c", 0}};
    EXPECT_EQ(pool.starmap(shout, args), (std::vector<std::string>{"a", "bb", ""}));
    std::vector<pid_t> seen;
    for (int i = 0; i < 12; ++i) seen.push_back(pool.apply(whoami, 0));
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    EXPECT_GE(seen.size(), 4u);  // 12 tasks, at most 3 per worker
}

TEST_P(PoolMethods, ImapIsInOrderAndImapUnorderedGivesEveryResult) {
    mp::Pool pool(2, {.start_method = GetParam()});
    std::vector<int> in(50);
    for (int i = 0; i < 50; ++i) in[i] = i;
    std::vector<int> ordered;
    for (int r : pool.imap(square, in, 3)) ordered.push_back(r);
    ASSERT_EQ(ordered.size(), 50u);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(ordered[i], i * i);

    // The first item is slow: unordered results do not wait for it.
    std::vector<int> delays{300, 1, 1, 1, 1};
    auto it = pool.imap_unordered(slow, delays);
    EXPECT_EQ(it.next(30.0), 1);
    std::vector<int> rest;
    while (auto r = it.next(30.0)) rest.push_back(*r);
    std::sort(rest.begin(), rest.end());
    EXPECT_EQ(rest, (std::vector<int>{1, 1, 1, 300}));
    EXPECT_FALSE(it.next(0.0).has_value());

    auto failing = pool.imap(fail, std::vector<int>{1, 2});
    EXPECT_THROW(failing.next(30.0), mp::RemoteError);
    EXPECT_THROW(failing.next(30.0), mp::RemoteError);  // the second item's own error
    EXPECT_FALSE(failing.next(30.0).has_value());
    auto empty = pool.imap(square, std::vector<int>{});
    EXPECT_FALSE(empty.next().has_value());
}

TEST_P(PoolMethods, WorkersAreNamedAsPythonNamesThem) {
    mp::Pool pool(2, {.start_method = GetParam()});
    auto name = pool.apply(worker_name, 0);
    const std::string want = GetParam() == "fork"    ? "ForkPoolWorker-"
                             : GetParam() == "spawn" ? "SpawnPoolWorker-"
                                                     : "ForkServerPoolWorker-";
    EXPECT_EQ(name.rfind(want, 0), 0u) << name;
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, PoolMethods, testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });
