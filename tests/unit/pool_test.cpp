// SPDX-License-Identifier: Apache-2.0
#include <mprocess/executor.hpp>
#include <mprocess/functional.hpp>
#include <mprocess/pool.hpp>
#include <mprocess/progress.hpp>
#include <mprocess/process.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

#include "helpers/children.hpp"
#include "helpers/files.hpp"
#include "helpers/pool_lifecycle.hpp"
#include "pool/core.hpp"
#include "pool/task.hpp"

using testing_support::ChildrenTest;
using testing_support::files_in;
using testing_support::mark_then_sleep;
using testing_support::scratch_dir;
using testing_support::seconds_since;
using testing_support::wait_for_files;
using testing_support::wait_for_gate;

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
// Throws the exception kind named by `kind`: 0 out_of_range, 1 invalid_argument, 2 the library's ValueError.
int throw_kind(int kind) {
    if (kind == 0) throw std::out_of_range("index 9 of 3");
    if (kind == 1) throw std::invalid_argument("not a number");
    throw mp::ValueError("a closed object");
}
pid_t whoami(int) {
    return ::getpid();
}
std::string worker_name(int) {
    return mp::current_process().name();
}
// Forks a child that keeps this worker's descriptors (its pipe too) open for a minute, leaves the
// child's pid in dir, and returns this worker's pid: once the worker dies, only its process tells.
pid_t fork_holder(std::string dir) {
    const pid_t holder = ::fork();
    if (holder == 0) {
        ::sleep(60);
        ::_exit(0);
    }
    std::ofstream(dir + "/" + std::to_string(holder));
    return ::getpid();
}
// The same, then dies.
int fork_holder_then_die(std::string dir) {
    fork_holder(dir);
    return die(SIGKILL);
}
// Kills the holders whose pids are in dir: reparented when their worker dies, they are ours to
// end, not to reap.
struct KillHolders {
    std::string dir;
    ~KillHolders() {
        for (const auto& f : std::filesystem::directory_iterator(dir))
            ::kill(std::stoi(f.path().filename().string()), SIGKILL);
    }
};
// Leaves its mark in dir, waits for dir/open, then is killed.
int die_at_gate(std::string dir) {
    wait_for_gate(dir);
    return die(SIGKILL);
}
int fail_on_3(int x) {
    return x == 3 ? fail(x) : x;
}
std::string g_greeting;
int g_greeted = 0;
void set_greeting(std::string s) {
    g_greeting = std::move(s);
    ++g_greeted;
}
std::string greeting(int) {
    return g_greeting + ":" + std::to_string(g_greeted);
}
long twice(long x) {
    return 2 * x;
}
bool is_even(long x) {
    return x % 2 == 0;
}
long add(long a, long b) {
    return a + b;
}
long minus(long a, long b) {
    return a - b;
}
std::string concat(std::string a, std::string b) {
    return a + b;
}

// Tasks that return void: they leave a file behind, or throw.
void touch(std::string path) {
    std::ofstream(path).put('x');
}
void touch_in(std::string dir, int name) {
    touch(dir + "/" + std::to_string(name));
}
void fail_void(int x) {
    throw std::runtime_error("bad void item " + std::to_string(x));
}

// One item of a map whose first chunk fails while the others still run: item 0 fails at once;
// each other item marks dir/started, waits (up to a minute) for dir/open, marks dir/done, and the
// last item then fails too, later than the first.
int fail_first_or_wait(std::string dir, int i, int last) {
    std::ofstream(dir + "/started/" + std::to_string(i)).put('x');
    if (i == 0) throw std::runtime_error("the first failure");
    for (int t = 0; t < 60000 && !std::filesystem::exists(dir + "/open"); ++t) slow(1);
    std::ofstream(dir + "/done/" + std::to_string(i)).put('x');
    if (i == last) throw std::runtime_error("a later failure");
    return i;
}
int fail_first_or_wait_item(std::tuple<std::string, int, int> item) {
    return std::apply(fail_first_or_wait, item);
}

}  // namespace

TEST_F(PoolTest, ZeroProcessesIsAnError) {
    EXPECT_THROW(mp::Pool(0u), mp::ValueError);
}

TEST_P(PoolMethods, MapKeepsTheOrderOfItsInput) {
    mp::Pool pool(3, {.start_method = method()});
    EXPECT_EQ(pool.map(square, std::vector<int>{31, 53, 79}), (std::vector<int>{961, 2809, 6241}));
    std::vector<int> in(1000);
    for (int i = 0; i < 1000; ++i) in[i] = i;
    auto out = pool.map(square, in, 7);
    ASSERT_EQ(out.size(), 1000u);
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(out[i], i * i);
    EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
}

TEST_P(PoolMethods, ApplyAsyncTakesAnyArgumentsAndTimesOut) {
    mp::Pool pool(2, {.start_method = method()});
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
    mp::Pool pool(2, {.start_method = method()});
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

TEST_P(PoolMethods, ATaskErrorNamesItsWorkerAndIsCaughtByItsKind) {
    mp::Pool pool(1, {.start_method = method()});
    const pid_t worker = pool.pids().at(0);
    try {
        pool.apply(throw_kind, 0);
        FAIL() << "no exception";
    } catch (const mp::RemoteIndexError& e) {
        EXPECT_EQ(e.type_name(), "std::out_of_range");
        EXPECT_EQ(e.source(), "worker " + std::to_string(worker));
        EXPECT_EQ(e.pid(), worker);
        EXPECT_NE(std::string(e.what()).find("(in worker " + std::to_string(worker) + ")"), std::string::npos)
            << e.what();
    }
    EXPECT_THROW(pool.apply(throw_kind, 1), mp::RemoteValueError);
    EXPECT_THROW(pool.apply(throw_kind, 2), mp::RemoteValueError);
    try {
        pool.apply(fail, 1);  // std::runtime_error: no Python kind, a plain RemoteError
        FAIL() << "no exception";
    } catch (const mp::RemoteValueError&) {
        FAIL() << "a runtime_error taken for a ValueError";
    } catch (const mp::RemoteIndexError&) {
        FAIL() << "a runtime_error taken for an IndexError";
    } catch (const mp::RemoteError& e) {
        EXPECT_EQ(e.type_name(), "std::runtime_error");
    }
}

TEST_P(PoolMethods, AWorkerKilledOrCrashingFailsOnlyItsTaskAndIsReplaced) {
    mp::Pool pool(2, {.start_method = method()});
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
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
        EXPECT_NE(e.exitcode(), 0);  // the sanitizer catches the SIGSEGV and exits instead
#else
        EXPECT_EQ(e.signal(), SIGSEGV);
#endif
    }
    EXPECT_EQ(pool.map(square, std::vector<int>{1, 2, 3}), (std::vector<int>{1, 4, 9}));  // two workers again
    EXPECT_NE(pool.pids(), before);
    EXPECT_EQ(pool.pids().size(), 2u);
}

TEST_P(PoolMethods, CloseThenJoinFinishesTheQueuedTasks) {
    mp::Pool pool(2, {.start_method = method()});
    std::vector<mp::AsyncResult<int>> rs;
    for (int i = 0; i < 20; ++i) rs.push_back(pool.apply_async(square, i));
    pool.close();
    EXPECT_THROW(pool.apply_async(square, 1), mp::ValueError);
    pool.join();
    for (int i = 0; i < 20; ++i) EXPECT_EQ(rs[i].get(0.0), i * i);
}

TEST_P(PoolMethods, TerminateWithTenThousandLongTasksReturnsWithinTwoSeconds) {
    mp::Pool pool(2, {.start_method = method()});
    const std::string dir = scratch_dir();
    std::vector<mp::AsyncResult<int>> rs;
    for (int i = 0; i < 10000; ++i) rs.push_back(pool.apply_async(mark_then_sleep, dir));
    wait_for_files(dir, 2);  // both workers are inside a one-minute task
    const auto t0 = std::chrono::steady_clock::now();
    pool.terminate();
    EXPECT_LT(seconds_since(t0), 2.0);
    for (auto& r : rs) EXPECT_THROW(r.get(0.0), mp::ValueError);
    EXPECT_THROW(pool.apply_async(square, 1), mp::ValueError);
    EXPECT_TRUE(pool.pids().empty());
}

TEST_P(PoolMethods, TheWorkIsSpreadOverTheWorkers) {
    mp::Pool pool(2, {.start_method = method()});
    std::vector<int> in(64, 50);
    auto pids = pool.map(slow, in, 1);  // each task sleeps 50 ms: one worker alone would take 3.2 s
    auto who = pool.map(whoami, std::vector<int>(8, 0), 1);
    std::sort(who.begin(), who.end());
    who.erase(std::unique(who.begin(), who.end()), who.end());
    EXPECT_GE(who.size(), 1u);
    for (pid_t p : who) EXPECT_NE(p, ::getpid());
}

TEST_P(PoolMethods, StarmapUnpacksTuplesAndMaxtasksperchildRenewsWorkers) {
    mp::Pool pool(2, {.start_method = method(), .maxtasksperchild = 3});
    std::vector<std::tuple<std::string, int>> args{{"a", 1}, {"b", 2}, {"c", 0}};
    EXPECT_EQ(pool.starmap(shout, args), (std::vector<std::string>{"a", "bb", ""}));
    std::vector<pid_t> seen;
    for (int i = 0; i < 12; ++i) seen.push_back(pool.apply(whoami, 0));
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    EXPECT_GE(seen.size(), 4u);  // 12 tasks, at most 3 per worker
}

TEST_P(PoolMethods, ImapIsInOrderAndImapUnorderedGivesEveryResult) {
    mp::Pool pool(2, {.start_method = method()});
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

    auto late = pool.imap(slow, std::vector<int>{3000});
    EXPECT_THROW(late.next(0.05), mp::TimeoutError);
    auto late_unordered = pool.imap_unordered(slow, std::vector<int>{3000});
    EXPECT_THROW(late_unordered.next(0.05), mp::TimeoutError);
}

TEST_P(PoolMethods, WorkersAreNamedAsPythonNamesThem) {
    mp::Pool pool(2, {.start_method = method()});
    auto name = pool.apply(worker_name, 0);
    const std::string want = GetParam() == "fork"    ? "ForkPoolWorker-"
                             : GetParam() == "spawn" ? "SpawnPoolWorker-"
                                                     : "ForkServerPoolWorker-";
    EXPECT_EQ(name.rfind(want, 0), 0u) << name;
}

TEST_P(PoolMethods, MapAsyncAndStarmapAsyncGiveOneResultForTheWholeList) {
    mp::Pool pool(2, {.start_method = method()});
    std::vector<int> in(100);
    for (int i = 0; i < 100; ++i) in[i] = i;
    auto all = pool.map_async(square, in, 7);
    std::promise<std::vector<int>> called;
    all.callback([&](const std::vector<int>& r) { called.set_value(r); });
    auto got = all.get(30.0);
    ASSERT_EQ(got.size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(got[i], i * i);
    auto seen = called.get_future();
    ASSERT_EQ(seen.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    EXPECT_EQ(seen.get(), got);

    std::vector<std::tuple<std::string, int>> args{{"x", 2}, {"y", 3}};
    EXPECT_EQ(pool.starmap_async(shout, args).get(30.0), (std::vector<std::string>{"xx", "yyy"}));

    auto none = pool.map_async(square, std::vector<int>{});
    EXPECT_TRUE(none.ready());
    EXPECT_TRUE(none.get(0.0).empty());

    // One failing chunk fails the whole, once every chunk is done (as Python's MapResult).
    auto bad = pool.map_async(fail_on_3, std::vector<int>{1, 2, 3, 4, 5, 6}, 2);
    EXPECT_THROW(bad.get(30.0), mp::RemoteError);
    EXPECT_FALSE(bad.successful());

    auto late = pool.map_async(slow, std::vector<int>{2000});
    EXPECT_THROW(late.get(0.05), mp::TimeoutError);
    EXPECT_FALSE(late.ready());
}

TEST_P(PoolMethods, CallbacksRunOnceWithTheResultOrTheError) {
    mp::Pool pool(2, {.start_method = method()});
    std::promise<int> ok;
    std::promise<std::string> err;
    std::atomic<int> wrong{0};
    pool.apply_async(slow, 50)
        .callback([&](const int& r) { ok.set_value(r); })
        .error_callback([&](const std::exception&) { ++wrong; });
    pool.apply_async(fail, 5).callback([&](const int&) { ++wrong; }).error_callback([&](const std::exception& e) {
        err.set_value(dynamic_cast<const mp::RemoteError*>(&e) ? e.what() : std::string("not a RemoteError"));
    });
    auto okf = ok.get_future();
    auto errf = err.get_future();
    ASSERT_EQ(okf.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    ASSERT_EQ(errf.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    EXPECT_EQ(okf.get(), 50);
    EXPECT_NE(errf.get().find("bad item 5"), std::string::npos);

    // Registered on a finished task: it runs at once, here.
    auto done = pool.apply_async(square, 4);
    ASSERT_EQ(done.get(30.0), 16);
    int here = 0;
    done.callback([&](const int& r) { here = r; });
    EXPECT_EQ(here, 16);
    pool.close();
    pool.join();
    EXPECT_EQ(wrong.load(), 0);
}

TEST_P(PoolMethods, WaitingForAResultInsideACallbackThrowsInsteadOfHanging) {
    mp::Pool pool(2, {.start_method = method()});
    std::promise<std::string> what;
    auto other = pool.apply_async(slow, 3000);
    pool.apply_async(square, 2).callback([&](const int&) {
        try {
            other.get();
            what.set_value("no exception");
        } catch (const mp::ValueError& e) {
            what.set_value(e.what());
        }
    });
    auto f = what.get_future();
    ASSERT_EQ(f.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    EXPECT_NE(f.get().find("callback"), std::string::npos);
}

TEST_P(PoolMethods, TheInitializerRunsOnceInEveryWorkerBeforeItsTasks) {
    mp::Pool pool(2, {.start_method = method(),
                      .maxtasksperchild = 2,
                      .initializer = mp::Initializer(set_greeting, std::string("hi"))});
    for (int i = 0; i < 8; ++i) EXPECT_EQ(pool.apply(greeting, 0), "hi:1");  // renewed workers run it too
}

TEST_P(PoolMethods, AFailingInitializerBreaksThePoolInsteadOfRestartingForever) {
    mp::Pool pool(2, {.start_method = method(), .initializer = mp::Initializer(fail, 9)});
    try {
        pool.apply_async(square, 2).get(30.0);  // the submit, or the task, meets the broken pool
        FAIL() << "no BrokenPool";
    } catch (const mp::BrokenPool& e) {
        EXPECT_NE(std::string(e.what()).find("initializer"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("bad item 9"), std::string::npos) << e.what();
    }
    EXPECT_THROW(pool.apply_async(square, 1), mp::BrokenPool);
}

TEST_P(PoolMethods, TheBrokenPoolPolicyFailsEveryUnfinishedTask) {
    mp::Pool pool(2, {.start_method = method(), .on_worker_lost = mp::OnWorkerLost::break_pool});
    EXPECT_EQ(pool.apply(square, 3), 9);
    const std::string dir = scratch_dir();
    auto busy = pool.apply_async(mark_then_sleep, dir);
    auto killed = pool.apply_async(die_at_gate, dir);
    wait_for_files(dir, 2);  // both workers hold a task
    std::vector<mp::AsyncResult<int>> queued;
    for (int i = 0; i < 5; ++i) queued.push_back(pool.apply_async(slow, 60000));
    std::ofstream(dir + "/open");  // now one worker dies
    const auto t0 = std::chrono::steady_clock::now();
    try {
        killed.get(30.0);
        FAIL() << "no BrokenPool";
    } catch (const mp::BrokenPool& e) {
        EXPECT_NE(std::string(e.what()).find("SIGKILL"), std::string::npos) << e.what();
    }
    EXPECT_THROW(busy.get(30.0), mp::BrokenPool);
    for (auto& q : queued) EXPECT_THROW(q.get(30.0), mp::BrokenPool);
    EXPECT_LT(seconds_since(t0), 5.0);
    EXPECT_THROW(pool.apply_async(square, 1), mp::BrokenPool);
}

TEST_P(PoolMethods, ADeadWorkersTaskFailsWithinOneSecond) {
    mp::Pool pool(2, {.start_method = method()});
    const std::string dir = scratch_dir();
    auto r = pool.apply_async(mark_then_sleep, dir);
    wait_for_files(dir, 1);
    const pid_t pid = std::stoi(std::filesystem::directory_iterator(dir)->path().filename().string());
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    try {
        r.get(30.0);
        FAIL() << "no WorkerLost";
    } catch (const mp::WorkerLost& e) {
        EXPECT_EQ(e.pid(), pid);
        EXPECT_EQ(e.signal(), SIGKILL);
    }
    EXPECT_LT(seconds_since(t0), 1.0);
    EXPECT_EQ(pool.apply(square, 5), 25);
}

TEST_P(PoolMethods, MapReportsProgressFromNoneToAll) {
    mp::Pool pool(2, {.start_method = method()});
    std::vector<std::pair<std::size_t, std::size_t>> calls;
    std::vector<int> in(40, 1);
    auto out = pool.map(slow, in, 4, [&](std::size_t done, std::size_t total) { calls.emplace_back(done, total); });
    EXPECT_EQ(out, in);
    ASSERT_GE(calls.size(), 2u);
    EXPECT_EQ(calls.front(), std::make_pair(std::size_t{0}, std::size_t{40}));
    EXPECT_EQ(calls.back(), std::make_pair(std::size_t{40}, std::size_t{40}));
    for (std::size_t i = 1; i < calls.size(); ++i) {
        EXPECT_GT(calls[i].first, calls[i - 1].first);
        EXPECT_EQ(calls[i].first % 4, 0u);
    }
}

TEST_P(PoolMethods, TheExecutorRunsFuturesAndMapsInOrder) {
    mp::ProcessPoolExecutor ex(2, {.start_method = method()});
    auto f = ex.submit(shout, std::string("ok"), 2);
    EXPECT_EQ(f.result(30.0), "okok");
    EXPECT_TRUE(f.done());
    EXPECT_FALSE(f.cancelled());
    EXPECT_EQ(f.exception(0.0), nullptr);
    auto e = ex.submit(fail, 1);
    ASSERT_NE(e.exception(30.0), nullptr);
    EXPECT_THROW(e.result(), mp::RemoteError);
    std::promise<bool> cb;
    e.add_done_callback([&](const mp::Future<int>& fut) { cb.set_value(fut.done()); });
    EXPECT_TRUE(cb.get_future().get());
    std::vector<int> got;
    for (int r : ex.map(square, std::vector<int>{1, 2, 3, 4})) got.push_back(r);
    EXPECT_EQ(got, (std::vector<int>{1, 4, 9, 16}));
    ex.shutdown();
    EXPECT_THROW(ex.submit(square, 1), mp::Error);
}

TEST_P(PoolMethods, TheExecutorCancelsWhatHasNotStarted) {
    mp::ProcessPoolExecutor ex(1, {.start_method = method()});
    const std::string dir = scratch_dir();
    auto first = ex.submit(wait_for_gate, dir);
    wait_for_files(dir, 1);  // the one worker is busy until the gate opens
    EXPECT_TRUE(first.running());
    std::vector<mp::Future<int>> later;
    for (int i = 0; i < 5; ++i) later.push_back(ex.submit(square, i));
    EXPECT_FALSE(later[0].running());
    EXPECT_TRUE(later[0].cancel());
    EXPECT_TRUE(later[0].cancelled());
    EXPECT_THROW(later[0].result(0.0), mp::CancelledError);
    EXPECT_FALSE(first.cancel());  // it has begun
    ex.shutdown(false, true);
    for (auto& l : later) {
        EXPECT_TRUE(l.cancelled());
        EXPECT_THROW(l.result(0.0), mp::CancelledError);
    }
    std::ofstream(dir + "/open");
    ex.shutdown(true);
    EXPECT_EQ(first.result(0.0), 1);
    EXPECT_FALSE(first.cancelled());
}

TEST_P(PoolMethods, TheExecutorIsBrokenByADeadWorker) {
    mp::ProcessPoolExecutor ex(2, {.start_method = method()});
    auto f = ex.submit(die, SIGKILL);
    EXPECT_THROW(f.result(30.0), mp::BrokenPool);
    EXPECT_THROW(ex.submit(square, 1), mp::BrokenPool);
}

TEST_P(PoolMethods, ParallelMapFilterAndReduceMatchTheSequentialOnes) {
    mp::Pool pool(2, {.start_method = method()});
    std::vector<long> in(10000);
    for (long i = 0; i < 10000; ++i) in[i] = i + 1;
    EXPECT_EQ(mp::parallel_map(pool, twice, in)[9999], 20000);
    auto evens = mp::parallel_filter(pool, is_even, in);
    ASSERT_EQ(evens.size(), 5000u);
    EXPECT_EQ(evens.front(), 2);
    EXPECT_EQ(evens.back(), 10000);
    EXPECT_EQ(mp::parallel_reduce(pool, add, in), 50005000);
    EXPECT_EQ(mp::parallel_reduce(pool, add, in, 10L), 50005010);
    EXPECT_EQ(mp::parallel_reduce(pool, add, std::vector<long>{}, 7L), 7);
    EXPECT_THROW(mp::parallel_reduce(pool, add, std::vector<long>{}), mp::ValueError);

    // Associative but not commutative: the order is kept.
    std::vector<std::string> letters;
    std::string want;
    for (int i = 0; i < 300; ++i) {
        letters.push_back(std::string(1, static_cast<char>('a' + i % 26)));
        want += letters.back();
    }
    EXPECT_EQ(mp::parallel_reduce(pool, concat, letters), want);
    // Not associative: the sequential fold, as functools.reduce.
    EXPECT_EQ(mp::parallel_reduce(pool, minus, std::vector<long>{100, 1, 2, 3}, {.associative = false}), 94);
    EXPECT_EQ(mp::parallel_reduce(pool, minus, std::vector<long>{1, 2}, 100L, {.associative = false}), 97);
}

TEST_P(PoolMethods, CallbacksRunOneAtATimeOnThePoolsOwnThread) {
    mp::Pool pool(2, {.start_method = method()});
    const std::string dir = scratch_dir();
    std::vector<mp::AsyncResult<int>> rs;
    for (int i = 0; i < 20; ++i) rs.push_back(pool.apply_async(wait_for_gate, dir));
    std::mutex m;
    std::set<std::thread::id> threads;
    std::atomic<int> inside{0}, most{0}, calls{0};
    for (auto& r : rs) {
        r.callback([&](const int&) {
            const int now = ++inside;
            most = std::max(most.load(), now);
            {
                std::lock_guard lock(m);
                threads.insert(std::this_thread::get_id());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            --inside;
            ++calls;
        });
    }
    std::ofstream(dir + "/open");                  // only now may any task finish: every callback was registered first
    for (auto& r : rs) EXPECT_EQ(r.get(30.0), 1);  // this thread reads answers too, but runs no callback
    pool.close();
    pool.join();
    EXPECT_EQ(calls.load(), 20);
    EXPECT_EQ(most.load(), 1);
    ASSERT_EQ(threads.size(), 1u);
    EXPECT_NE(*threads.begin(), std::this_thread::get_id());
}

TEST_P(PoolMethods, ACallbackMayTerminateThePool) {
    mp::Pool pool(2, {.start_method = method()});
    const std::string dir = scratch_dir();
    auto r = pool.apply_async(wait_for_gate, dir);
    std::promise<void> called;
    r.callback([&](const int&) {
        pool.terminate();
        called.set_value();
    });
    std::ofstream(dir + "/open");
    EXPECT_EQ(r.get(30.0), 1);
    auto f = called.get_future();
    ASSERT_EQ(f.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    pool.join();
    EXPECT_THROW(pool.apply_async(square, 1), mp::ValueError);
}

TEST_P(PoolMethods, AWorkerIsSeenDeadEvenIfAnotherProcessHoldsItsPipe) {
    mp::Pool pool(1, {.start_method = method()});
    const std::string dir = scratch_dir();
    KillHolders holders{dir};
    auto r = pool.apply_async(fork_holder_then_die, dir);
    const auto t0 = std::chrono::steady_clock::now();
    try {
        r.get(30.0);
        ADD_FAILURE() << "no WorkerLost";
    } catch (const mp::WorkerLost& e) {
        EXPECT_EQ(e.signal(), SIGKILL);
    }
    EXPECT_LT(seconds_since(t0), 5.0);
    EXPECT_EQ(pool.apply(square, 6), 36);
}

namespace {
// Leaves one more byte in dir/name: a task that ran twice leaves two.
int count_run(std::string dir, int name) {
    std::ofstream(dir + "/" + std::to_string(name), std::ios::app).put('x');
    return name;
}

// Kills pid and returns once it has ended (its pidfd is readable), whoever its parent is.
void kill_and_wait_for_death(pid_t pid) {
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    ASSERT_GE(fd, 0) << "pidfd_open: " << std::strerror(errno);
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(&p, 1, 30000);
    ::close(fd);
    ASSERT_EQ(n, 1) << "the worker did not die";
}

// Waits (up to 30 s) until the pool has replaced every worker in `dead`.
void wait_for_replacements(const mp::Pool& pool, const std::set<pid_t>& dead) {
    const auto t0 = std::chrono::steady_clock::now();
    auto replaced = [&] {
        const auto pids = pool.pids();
        return std::none_of(pids.begin(), pids.end(), [&](pid_t p) { return p <= 0 || dead.count(p) != 0; });
    };
    while (!replaced()) {
        ASSERT_LT(seconds_since(t0), 30.0) << "the pool did not replace its dead worker";
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}
}  // namespace

// A task handed to a worker that had died idle never reached it: it goes to another worker and
// runs once; only a task a worker has taken fails with WorkerLost. Each round kills an idle worker
// whose pipe another process holds open, so that the pool learns of the death from the process
// alone, and submits at once: the tasks meet the dead worker before the pool has replaced it.
TEST_P(PoolMethods, ATaskHandedToAWorkerThatDiedIdleRunsElsewhereExactlyOnce) {
    constexpr int kRounds = 20, kTasks = 8;
    mp::Pool pool(2, {.start_method = method()});
    const std::string dir = scratch_dir(), holders = scratch_dir();
    KillHolders kill_holders{holders};
    std::set<pid_t> killed;
    for (int round = 0; round < kRounds; ++round) {
        wait_for_replacements(pool, killed);
        if (HasFatalFailure()) return;
        const pid_t victim = pool.apply(fork_holder, holders);
        killed.insert(victim);
        kill_and_wait_for_death(victim);
        if (HasFatalFailure()) return;
        std::vector<mp::AsyncResult<int>> rs;
        for (int i = 0; i < kTasks; ++i) rs.push_back(pool.apply_async(count_run, dir, round * kTasks + i));
        for (int i = 0; i < kTasks; ++i) {
            try {
                EXPECT_EQ(rs[i].get(30.0), round * kTasks + i);
            } catch (const mp::Error& e) {
                ADD_FAILURE() << "round " << round << ", task " << i << ": " << e.what();
            }
        }
    }
    for (int i = 0; i < kRounds * kTasks; ++i) {
        std::ifstream f(dir + "/" + std::to_string(i));
        const std::string runs((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        EXPECT_EQ(runs.size(), 1u) << "task " << i << " ran " << runs.size() << " times";
    }
}

namespace {
// `run` maps fail_first_or_wait over n items, one chunk each, under `method`: the first chunk fails
// at once while the others wait for a gate this test opens. The map must not end before the gate
// opens, then must throw the first failure, every chunk having run.
void expect_a_map_to_wait_for_every_chunk(mp::StartMethod method,
                                          void (*run)(mp::Pool&,
                                                      const std::vector<std::tuple<std::string, int, int>>&)) {
    constexpr int n = 4;
    mp::Pool pool(n, {.start_method = method});
    const std::string dir = scratch_dir();
    std::filesystem::create_directory(dir + "/started");
    std::filesystem::create_directory(dir + "/done");
    std::vector<std::tuple<std::string, int, int>> items;
    for (int i = 0; i < n; ++i) items.emplace_back(dir, i, n - 1);
    auto map = std::async(std::launch::async, [&] { run(pool, items); });
    // Declared after the map: opened first on the way out, so that a failed assertion cannot hang it.
    struct Gate {
        std::string path;
        void open() const { std::ofstream(path).put('x'); }
        ~Gate() { open(); }
    } gate{dir + "/open"};

    wait_for_files(dir + "/started", n);
    // The failed chunk's worker takes this task only once the failure is in.
    EXPECT_EQ(pool.apply(square, 3), 9);
    // The map cannot end before the gate opens unless it gives up on its other chunks: this wait
    // only bounds how long a map with that defect is given to show it.
    EXPECT_EQ(map.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
        << "the map ended while its other chunks still ran";
    EXPECT_EQ(files_in(dir + "/done"), 0u);
    gate.open();
    try {
        map.get();
        ADD_FAILURE() << "no RemoteError";
    } catch (const mp::RemoteError& e) {
        EXPECT_NE(std::string(e.what()).find("the first failure"), std::string::npos) << e.what();
    }
    EXPECT_EQ(files_in(dir + "/done"), std::size_t{n - 1});
}
}  // namespace

TEST_P(PoolMethods, MapWaitsForEveryChunkThenThrowsTheFirstError) {
    expect_a_map_to_wait_for_every_chunk(
        method(), [](mp::Pool& pool, const auto& items) { pool.map(fail_first_or_wait_item, items, 1); });
}

TEST_P(PoolMethods, StarmapWaitsForEveryChunkThenThrowsTheFirstError) {
    expect_a_map_to_wait_for_every_chunk(
        method(), [](mp::Pool& pool, const auto& items) { pool.starmap(fail_first_or_wait, items, 1); });
}

TEST_P(PoolMethods, MapAsyncWaitsForEveryChunkThenThrowsTheFirstError) {
    expect_a_map_to_wait_for_every_chunk(
        method(), [](mp::Pool& pool, const auto& items) { pool.map_async(fail_first_or_wait_item, items, 1).get(); });
}

TEST_P(PoolMethods, TasksThatReturnVoidRunAndTheirErrorsTravel) {
    mp::Pool pool(2, {.start_method = method()});
    const std::string dir = scratch_dir();
    auto path = [&](int i) { return dir + "/" + std::to_string(i); };
    auto paths = [&](int from, int to) {
        std::vector<std::string> out;
        for (int i = from; i < to; ++i) out.push_back(path(i));
        return out;
    };
    auto all_exist = [](const std::vector<std::string>& ps) {
        return std::all_of(ps.begin(), ps.end(), [](const auto& p) { return std::filesystem::exists(p); });
    };

    static_assert(std::is_void_v<decltype(pool.apply(touch, path(0)))>);
    pool.apply(touch, path(0));
    EXPECT_TRUE(std::filesystem::exists(path(0)));
    mp::AsyncResult<void> a = pool.apply_async(touch, path(1));
    a.get(30.0);
    EXPECT_TRUE(a.successful());
    EXPECT_TRUE(std::filesystem::exists(path(1)));
    EXPECT_THROW(pool.apply(fail_void, 1), mp::RemoteError);

    // Callbacks take no value.
    std::promise<bool> ok;
    std::promise<std::string> err;
    std::atomic<int> wrong{0};
    pool.apply_async(touch, path(2))
        .callback([&] { ok.set_value(std::filesystem::exists(path(2))); })
        .error_callback([&](const std::exception&) { ++wrong; });
    pool.apply_async(fail_void, 5).callback([&] { ++wrong; }).error_callback([&](const std::exception& e) {
        err.set_value(dynamic_cast<const mp::RemoteError*>(&e) ? e.what() : std::string("not a RemoteError"));
    });
    auto okf = ok.get_future();
    auto errf = err.get_future();
    ASSERT_EQ(okf.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    ASSERT_EQ(errf.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    EXPECT_TRUE(okf.get());
    EXPECT_NE(errf.get().find("bad void item 5"), std::string::npos);

    // map and starmap return void, in chunks, with progress, and async.
    const auto mapped = paths(100, 150);
    static_assert(std::is_void_v<decltype(pool.map(touch, mapped, 3))>);
    pool.map(touch, mapped, 3);
    EXPECT_TRUE(all_exist(mapped));
    const auto reported = paths(200, 240);
    std::vector<std::size_t> done;
    pool.map(touch, reported, 4, [&](std::size_t d, std::size_t total) {
        EXPECT_EQ(total, reported.size());
        done.push_back(d);
    });
    EXPECT_TRUE(all_exist(reported));
    ASSERT_FALSE(done.empty());
    EXPECT_EQ(done.front(), 0u);
    EXPECT_EQ(done.back(), reported.size());
    const auto later = paths(300, 320);
    std::promise<void> whole;
    mp::AsyncResult<void> all = pool.map_async(touch, later, 6);
    all.callback([&] { whole.set_value(); });
    all.get(30.0);
    EXPECT_TRUE(all_exist(later));
    ASSERT_EQ(whole.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
    std::vector<std::tuple<std::string, int>> starred;
    for (int i = 400; i < 410; ++i) starred.emplace_back(dir, i);
    pool.starmap(touch_in, starred, 3);
    pool.starmap_async(touch_in, std::vector<std::tuple<std::string, int>>{{dir, 410}}).get(30.0);
    EXPECT_TRUE(all_exist(paths(400, 411)));
    EXPECT_THROW(pool.map(fail_void, std::vector<int>{1, 2, 3}, 2), mp::RemoteError);
    EXPECT_THROW(pool.map_async(fail_void, std::vector<int>{1, 2, 3}).get(30.0), mp::RemoteError);
    pool.map(touch, std::vector<std::string>{});

    // imap and imap_unordered give std::monostate (Python's None) for each item done.
    for (bool ordered : {true, false}) {
        const auto items = ordered ? paths(500, 511) : paths(600, 611);
        auto it = ordered ? pool.imap(touch, items, 3) : pool.imap_unordered(touch, items, 3);
        static_assert(std::is_same_v<decltype(it.next()), std::optional<std::monostate>>);
        std::size_t n = 0;
        for (std::monostate none : it) {
            (void)none;
            ++n;
        }
        EXPECT_EQ(n, items.size());
        EXPECT_TRUE(all_exist(items));
    }
    auto failing = pool.imap(fail_void, std::vector<int>{7, 8}, 1);
    EXPECT_THROW(failing.next(30.0), mp::RemoteError);
    EXPECT_THROW(failing.next(30.0), mp::RemoteError);
    EXPECT_FALSE(failing.next(30.0).has_value());
    pool.close();
    pool.join();
    EXPECT_EQ(wrong.load(), 0);
}

TEST_P(PoolMethods, TheExecutorRunsTasksThatReturnVoid) {
    mp::ProcessPoolExecutor ex(2, {.start_method = method()});
    const std::string dir = scratch_dir();
    mp::Future<void> f = ex.submit(touch, dir + "/a");
    f.result(30.0);
    EXPECT_TRUE(f.done());
    EXPECT_EQ(f.exception(0.0), nullptr);
    EXPECT_TRUE(std::filesystem::exists(dir + "/a"));
    std::promise<bool> cb;
    f.add_done_callback([&](const mp::Future<void>& fut) { cb.set_value(fut.exception(0.0) == nullptr); });
    EXPECT_TRUE(cb.get_future().get());
    mp::Future<void> e = ex.submit(fail_void, 2);
    ASSERT_NE(e.exception(30.0), nullptr);
    EXPECT_THROW(e.result(), mp::RemoteError);
    std::size_t n = 0;
    for (std::monostate none : ex.map(touch, std::vector<std::string>{dir + "/b", dir + "/c"})) {
        (void)none;
        ++n;
    }
    EXPECT_EQ(n, 2u);
    EXPECT_TRUE(std::filesystem::exists(dir + "/b") && std::filesystem::exists(dir + "/c"));
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, PoolMethods, testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });

// The one Pool core's lifecycle suite (helpers/pool_lifecycle.hpp), over the local Pool's workers
// and over the smallest transport there is, threads of this process, which can fail on demand as
// an MPI call can. (mpi_test runs it over MPI ranks.)
namespace {

struct LocalTraits {
    static const char* skip() { return nullptr; }
    static unsigned workers() { return 2; }
    static std::unique_ptr<mp::Pool> make() { return std::make_unique<mp::Pool>(workers()); }
    static std::unique_ptr<mp::Pool> make_breakable() {
        return std::make_unique<mp::Pool>(workers(), mp::PoolOptions{.on_worker_lost = mp::OnWorkerLost::break_pool});
    }
    static void break_it(mp::Pool& pool) { ::kill(pool.pids().at(0), SIGKILL); }
    static const char* unbreakable() { return nullptr; }
};

// Slots served by threads here: a task is a message in the slot's inbox, its answer one in its outbox.
class ThreadCore final : public mp::detail::SlotCore {
public:
    explicit ThreadCore(unsigned n) : SlotCore(n, false), inbox_(n), outbox_(n) {
        for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this, i] { work(i); });
    }
    ~ThreadCore() override {
        terminate();
        {
            std::lock_guard lock(io_);
            quit_ = true;
        }
        io_cv_.notify_all();
        for (auto& t : threads_) t.join();
    }
    using SlotCore::start_manager;
    std::vector<pid_t> pids() const override { return std::vector<pid_t>(threads_.size(), ::getpid()); }
    // The manager's next look at the slots throws, as a failed MPI call does.
    void fail() {
        {
            std::lock_guard lock(io_);
            failing_ = true;
        }
        io_cv_.notify_all();
    }

private:
    bool can_take(std::size_t) override { return true; }
    std::uint64_t reserved(std::size_t) override { return 0; }
    void send(std::size_t i, const mp::detail::Task& task, std::uint64_t) override {
        {
            std::lock_guard lock(io_);
            inbox_[i] = task.message;
        }
        io_cv_.notify_all();
    }
    bool read_answer(std::size_t i) override {
        std::unique_lock reading(io_, std::try_to_lock);
        return reading && take(i, reading);
    }
    bool take(std::size_t i, std::unique_lock<std::mutex>& reading) {
        if (!outbox_[i]) return false;
        std::string answer = std::move(*outbox_[i]);
        outbox_[i].reset();
        answered(i, reading, std::move(answer), ::getpid());
        return true;
    }
    void wait(bool, const mp::Deadline& until) override {
        std::unique_lock lock(io_);
        auto ready = [&] {
            return woken_ || failing_ ||
                   std::any_of(outbox_.begin(), outbox_.end(), [](const auto& a) { return bool(a); });
        };
        if (until)
            io_cv_.wait_until(lock, *until, ready);
        else
            io_cv_.wait(lock, ready);
        woken_ = false;
    }
    void collect() override {
        for (std::size_t i = 0; i < outbox_.size(); ++i) {
            std::unique_lock reading(io_);
            if (failing_) throw std::runtime_error("the transport failed");
            take(i, reading);
        }
    }
    void wake() override {
        {
            std::lock_guard lock(io_);
            woken_ = true;
        }
        io_cv_.notify_all();
    }
    void stop_workers() override {}
    void halt_workers() noexcept override {}                        // a thread ends its task; nobody reads the answer
    bool stop_worker(std::size_t, bool) override { return false; }  // a thread is not stopped
    mp::TaskReport worker_report(std::size_t i) const override {
        return mp::TaskReport{.worker = "thread " + std::to_string(i), .pid = ::getpid()};
    }
    void work(std::size_t i) {
        std::unique_lock lock(io_);
        for (;;) {
            io_cv_.wait(lock, [&] { return quit_ || inbox_[i]; });
            if (quit_) return;
            auto message = std::move(inbox_[i]);
            lock.unlock();
            std::string answer;
            mp::detail::run_task_message(*message, answer);
            lock.lock();
            outbox_[i] = std::move(answer);
            io_cv_.notify_all();
        }
    }

    std::mutex io_;  // the slots' reading lock, and the threads' mailboxes
    std::condition_variable io_cv_;
    std::vector<std::shared_ptr<const std::string>> inbox_;
    std::vector<std::optional<std::string>> outbox_;
    bool woken_ = false, failing_ = false, quit_ = false;
    std::vector<std::thread> threads_;
};

class ThreadPool : public mp::Pool {
public:
    explicit ThreadPool(std::shared_ptr<ThreadCore> core) : Pool(core, 2), core_(std::move(core)) {}
    std::shared_ptr<ThreadCore> core_;
};

struct ThreadTraits {
    static const char* skip() { return nullptr; }
    static unsigned workers() { return 2; }
    static std::unique_ptr<mp::Pool> make() {
        auto core = std::make_shared<ThreadCore>(workers());
        core->start_manager();
        return std::make_unique<ThreadPool>(core);
    }
    static std::unique_ptr<mp::Pool> make_breakable() { return make(); }
    static void break_it(mp::Pool& pool) { static_cast<ThreadPool&>(pool).core_->fail(); }
    static const char* unbreakable() { return nullptr; }
};

}  // namespace

// Where workers cannot be stopped (an MPI rank, a thread here), a task past its timeout fails at
// its deadline all the same; its worker answers in its own time, and its answer is dropped.
TEST(ThreadPool, ATimedOutTaskFailsAtItsDeadlineWhereItsWorkerCannotBeStopped) {
    auto pool = ThreadTraits::make();
    auto late = pool->apply_async(mp::TaskOptions{.timeout = 0.05, .retries = 3}, slow, 1500);
    auto quick = pool->apply_async(square, 3);
    try {
        late.get(30.0);
        FAIL() << "no TaskTimeout";
    } catch (const mp::TaskTimeout& e) {
        EXPECT_EQ(e.report().worker.rfind("thread ", 0), 0u) << e.what();
    }
    EXPECT_FALSE(late.cancel(mp::kill_running));  // done
    EXPECT_EQ(quick.get(30.0), 9);
    EXPECT_EQ(pool->apply(square, 4), 16);
}

namespace pool_lifecycle {
INSTANTIATE_TYPED_TEST_SUITE_P(Local, PoolLifecycle, LocalTraits);
INSTANTIATE_TYPED_TEST_SUITE_P(Threads, PoolLifecycle, ThreadTraits);
}  // namespace pool_lifecycle

namespace {
std::string progress_output(bool live, const std::vector<std::size_t>& steps, std::size_t total) {
    std::FILE* f = std::tmpfile();
    mp::ProgressLine line("work", f, live);
    for (auto s : steps) line(s, total);
    std::rewind(f);
    std::string out;
    for (int c; (c = std::fgetc(f)) != EOF;) out += static_cast<char>(c);
    std::fclose(f);
    return out;
}
}  // namespace

TEST(ProgressLine, OnATerminalItRedrawsOneLineAndEndsIt) {
    const auto out = progress_output(true, {0, 50, 100}, 100);
    EXPECT_EQ(std::count(out.begin(), out.end(), '\r'), 3);
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
    EXPECT_EQ(out.back(), '\n');
    EXPECT_NE(out.find(" 50% 50/100"), std::string::npos) << out;
    EXPECT_NE(out.find("100% 100/100"), std::string::npos) << out;
}

TEST(ProgressLine, ElsewhereItWritesAPlainLineAtEachTenth) {
    std::vector<std::size_t> steps;
    for (std::size_t i = 0; i <= 1000; i += 7) steps.push_back(i);
    steps.push_back(1000);
    const auto out = progress_output(false, steps, 1000);
    EXPECT_EQ(out.find('\r'), std::string::npos);
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 11) << out;  // 0%, 10%, ..., 100%
    EXPECT_NE(out.find("work: 100% (1000/1000)\n"), std::string::npos) << out;
}
