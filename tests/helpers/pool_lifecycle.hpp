// SPDX-License-Identifier: Apache-2.0
// One lifecycle suite for every Pool core: errors, terminate, close, callbacks, a broken pool. Each
// core's test instantiates it with a traits type:
//     struct Traits {
//         static const char* skip();                       // why this run cannot test it, or null
//         static std::unique_ptr<mp::Pool> make();         // a pool of workers() workers
//         static unsigned workers();
//         // A pool of workers() workers that breaks when break_it() is called while `held`, a task
//         // of it, is unfinished; null if this core cannot be broken on purpose (and why).
//         static std::unique_ptr<mp::Pool> make_breakable();
//         static void break_it(mp::Pool& pool);
//         static const char* unbreakable();
//     };
//     INSTANTIATE_TYPED_TEST_SUITE_P(Local, PoolLifecycle, LocalTraits);
#pragma once

#include <mprocess/pool.hpp>

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace pool_lifecycle {

namespace mp = mprocess;

inline int checked(int x) {
    if (x < 0) throw std::invalid_argument("negative: " + std::to_string(x));
    return x * 2;
}

// Holds its worker until `path` exists (at most a minute, so a failed test cannot leave a worker
// behind for good): the tests decide when a task ends, without timing.
inline int hold(std::string path) {
    for (int i = 0; i < 60000 && !std::filesystem::exists(path); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return 1;
}

inline int gated(std::string path, int x) {
    hold(path);
    return checked(x);
}

// A file whose creation releases the held tasks; made (if it was not) and removed when the test
// ends, so it must outlive the pool whose tasks it holds.
class Release {
public:
    Release()
        : path_((std::filesystem::temp_directory_path() /
                 ("mprocess-lifecycle-" + std::to_string(::getpid()) + "-" + std::to_string(count()++)))
                    .string()) {}
    ~Release() {
        now();
        std::filesystem::remove(path_);
    }
    const std::string& path() const { return path_; }
    void now() const { std::ofstream(path_).put('x'); }

private:
    static std::atomic<int>& count() {
        static std::atomic<int> n{0};
        return n;
    }
    std::string path_;
};

template <class Traits>
class PoolLifecycle : public testing::Test {
protected:
    void SetUp() override {
        if (const char* why = Traits::skip()) GTEST_SKIP() << why;
    }
};

TYPED_TEST_SUITE_P(PoolLifecycle);

TYPED_TEST_P(PoolLifecycle, ATaskErrorIsARemoteErrorAndThePoolGoesOn) {
    auto pool = TypeParam::make();
    try {
        pool->apply(checked, -3);
        ADD_FAILURE() << "no exception";
    } catch (const mp::RemoteError& e) {
        EXPECT_NE(std::string(e.what()).find("negative: -3"), std::string::npos) << e.what();
    }
    EXPECT_EQ(pool->apply(checked, 21), 42);
    std::vector<int> xs{1, 2, 3, 4, 5, 6, 7};
    EXPECT_EQ(pool->map(checked, xs, 2), (std::vector<int>{2, 4, 6, 8, 10, 12, 14}));
}

TYPED_TEST_P(PoolLifecycle, CloseRefusesNewTasksAndJoinFinishesTheQueuedOnes) {
    auto pool = TypeParam::make();
    std::vector<mp::AsyncResult<int>> results;
    for (int i = 0; i < 4 * static_cast<int>(TypeParam::workers()); ++i)
        results.push_back(pool->apply_async(checked, i));
    pool->close();
    EXPECT_THROW(pool->apply_async(checked, 1), mp::ValueError);
    pool->join();
    for (int i = 0; i < static_cast<int>(results.size()); ++i) {
        ASSERT_TRUE(results[i].ready());
        EXPECT_EQ(results[i].get(), 2 * i);
    }
}

TYPED_TEST_P(PoolLifecycle, TerminateFailsEveryUnfinishedTaskAtOnce) {
    Release release;  // outlives the pool: a worker still held when it ends sees the file
    auto pool = TypeParam::make();
    std::vector<mp::AsyncResult<int>> held;
    for (unsigned i = 0; i < TypeParam::workers() + 2; ++i) held.push_back(pool->apply_async(hold, release.path()));
    // terminate() returns once the workers are gone; MPI ranks end their task first, so it runs
    // in a thread of its own, and the tasks are released once they have failed.
    std::thread terminating([&] { pool->terminate(); });
    for (auto& r : held) {
        try {
            r.get();
            ADD_FAILURE() << "a held task succeeded";
        } catch (const mp::ValueError& e) {
            EXPECT_NE(std::string(e.what()).find("terminated"), std::string::npos) << e.what();
        }
    }
    release.now();
    terminating.join();
    EXPECT_THROW(pool->apply_async(checked, 1), mp::ValueError);
}

TYPED_TEST_P(PoolLifecycle, CallbacksRunOneAtATimeOnThePoolsThreadAndMayNotWaitThere) {
    // Every task is held until its callbacks are in place: one done sooner would run them here.
    Release release, gate;
    auto pool = TypeParam::make();
    auto pending = pool->apply_async(hold, release.path());
    std::mutex m;
    std::set<std::thread::id> threads;
    std::atomic<int> inside{0}, most{0}, results{0}, errors{0}, refused{0};
    auto enter = [&] {
        most = std::max(most.load(), ++inside);
        std::lock_guard lock(m);
        threads.insert(std::this_thread::get_id());
    };
    std::vector<mp::AsyncResult<int>> all;
    for (int i = -10; i < 10; ++i) {
        auto r = pool->apply_async(gated, gate.path(), i);
        r.callback([&, i](const int& v) {
             enter();
             if (v == 2 * i) ++results;
             try {
                 pending.get();  // the pool's own thread: this wait could never end
             } catch (const mp::ValueError&) {
                 ++refused;
             }
             --inside;
         }).error_callback([&](const std::exception& e) {
            enter();
            if (dynamic_cast<const mp::RemoteError*>(&e)) ++errors;
            --inside;
        });
        all.push_back(r);
    }
    gate.now();
    for (auto& r : all) r.wait();
    release.now();
    EXPECT_EQ(pending.get(), 1);
    pool->close();
    pool->join();  // the callbacks have run once the manager has ended
    EXPECT_EQ(results.load(), 10);
    EXPECT_EQ(errors.load(), 10);
    EXPECT_EQ(refused.load(), 10);
    EXPECT_EQ(most.load(), 1);
    std::lock_guard lock(m);
    EXPECT_FALSE(threads.count(std::this_thread::get_id())) << "a callback ran in the submitting thread";
}

TYPED_TEST_P(PoolLifecycle, ABrokenPoolFailsEveryUnfinishedTaskAndEveryLaterOneWithBrokenPool) {
    if (const char* why = TypeParam::unbreakable()) GTEST_SKIP() << why;
    Release release;
    auto pool = TypeParam::make_breakable();
    std::vector<mp::AsyncResult<int>> held;
    for (unsigned i = 0; i < TypeParam::workers() + 2; ++i) held.push_back(pool->apply_async(hold, release.path()));
    TypeParam::break_it(*pool);
    for (auto& r : held) EXPECT_THROW(r.get(), mp::BrokenPool);
    EXPECT_THROW(pool->apply_async(checked, 1), mp::BrokenPool);
    release.now();
}

REGISTER_TYPED_TEST_SUITE_P(PoolLifecycle, ATaskErrorIsARemoteErrorAndThePoolGoesOn,
                            CloseRefusesNewTasksAndJoinFinishesTheQueuedOnes, TerminateFailsEveryUnfinishedTaskAtOnce,
                            CallbacksRunOneAtATimeOnThePoolsThreadAndMayNotWaitThere,
                            ABrokenPoolFailsEveryUnfinishedTaskAndEveryLaterOneWithBrokenPool);

}  // namespace pool_lifecycle
