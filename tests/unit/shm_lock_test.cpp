// SPDX-License-Identifier: Apache-2.0
// The internal shared-memory lock behind every Connection: exclusion across processes, and
// recovery when its owner dies holding it.
#include "wait/shm_lock.hpp"

#include <sys/mman.h>
#include <sys/resource.h>

#include <thread>

#include "helpers/children.hpp"

using namespace std::chrono_literals;
using mprocess::detail::ShmLock;
using testing_support::ChildrenTest;

namespace {

struct Shared {
    ShmLock lock;
    long counter;  // deliberately not atomic: only the lock protects it
};

void hold_until_killed(Shared* s, mp::Connection c) {
    s->lock.lock();
    c.send(1);
    std::this_thread::sleep_for(1h);
}

class ShmLockTest : public ChildrenTest {
protected:
    void SetUp() override {
        void* p = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ASSERT_NE(p, MAP_FAILED);
        shared = new (p) Shared{};
    }
    void TearDown() override {
        ChildrenTest::TearDown();
        ::munmap(shared, sizeof(Shared));
    }
    // A child that holds the lock until it is killed; returns once it holds it.
    mp::Process start_holder() {
        auto [r, w] = mp::Pipe(false);
        mp::Process p(hold_until_killed, shared, w);
        p.start();
        w.close();
        EXPECT_EQ(r.recv<int>(), 1);
        return p;
    }
    Shared* shared = nullptr;
};

}  // namespace

TEST_F(ShmLockTest, ProcessesIncrementingUnderTheLockLoseNothing) {
    auto work = [](Shared* s) {
        for (int i = 0; i < 200000; ++i) {
            s->lock.lock();
            s->counter = s->counter + 1;
            s->lock.unlock();
        }
    };
    mp::Process a(work, shared), b(work, shared);
    a.start();
    b.start();
    work(shared);
    a.join();
    b.join();
    EXPECT_EQ(shared->counter, 600000);
}

TEST_F(ShmLockTest, AnOwnerKilledWhileHoldingItIsReportedAndTheLockTakenOver) {
    auto p = start_holder();
    p.kill();
    p.join();  // reaped: its thread no longer exists
    EXPECT_TRUE(shared->lock.lock());
    shared->lock.unlock();
    EXPECT_FALSE(shared->lock.lock());
    shared->lock.unlock();
}

TEST_F(ShmLockTest, AZombieOwnerCountsAsDead) {
    auto p = start_holder();
    p.kill();
    ASSERT_FALSE(mp::wait({p.sentinel()}, 10.0).empty());  // dead, but not reaped yet
    EXPECT_TRUE(shared->lock.lock());
    shared->lock.unlock();
    p.join();
}

TEST_F(ShmLockTest, AWaiterSleepsUntilTheOwnerReleases) {
    auto [r, w] = mp::Pipe();
    mp::Process p(
        [](Shared* s, mp::Connection c) {
            s->lock.lock();
            c.send(1);
            c.recv<int>();  // hold until told
            s->counter = 42;
            s->lock.unlock();
        },
        shared, w);
    p.start();
    ASSERT_EQ(r.recv<int>(), 1);
    std::thread release([&] {
        std::this_thread::sleep_for(100ms);
        r.send(0);
    });
    EXPECT_FALSE(shared->lock.lock());  // blocks until the child unlocks; its owner did not die
    EXPECT_EQ(shared->counter, 42);
    shared->lock.unlock();
    release.join();
    p.join();
}

TEST_F(ShmLockTest, AWaiterThatCannotLookAtTheOwnerDoesNotTakeTheLock) {
    auto [r, w] = mp::Pipe();
    shared->lock.lock();  // held by this (live) process throughout
    mp::Process p(
        [](Shared* s, mp::Connection c) {
            rlimit old{};
            ::getrlimit(RLIMIT_NOFILE, &old);
            rlimit few{3, old.rlim_max};  // no descriptor left to open /proc/<tid>/stat with
            ::setrlimit(RLIMIT_NOFILE, &few);
            bool died = s->lock.lock();
            ::setrlimit(RLIMIT_NOFILE, &old);  // sanitizer runtimes need descriptors too
            c.send(died ? 2 : 1);
            s->lock.unlock();
        },
        shared, w);
    p.start();
    w.close();  // a dead child must mean EOF here, not a hang
    // Several take-over checks (every 50 ms) pass while we still hold the lock.
    EXPECT_FALSE(r.poll(0.4)) << "the waiter took a lock whose owner is alive";
    shared->lock.unlock();
    EXPECT_EQ(r.recv<int>(), 1);
    p.join();
}
