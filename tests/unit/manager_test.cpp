#include <mprocess/manager.hpp>
#include <mprocess/process.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "helpers/children.hpp"

using testing_support::ChildrenTest;

namespace {

class ManagerTest : public ChildrenTest {};
class ManagerMethods : public testing_support::MethodTest {};

void produce(mp::QueueProxy<int> q, int from, int n) {
    for (int i = from; i < from + n; ++i) q.put(i);
}

void consume(mp::QueueProxy<int> q, mp::ListProxy<int> seen) {
    for (;;) {
        const int v = q.get();
        if (v < 0) return;
        seen.append(v);
    }
}

void fill(mp::DictProxy<std::string, int> d, mp::NamespaceProxy ns, mp::ValueProxy<double> v, mp::EventProxy done) {
    d.set("pid", static_cast<int>(::getpid()));
    d.set("answer", 42);
    ns.set("greeting", std::string("hello"));
    v.set_value(v.value() * 2);
    done.set();
}

void work_through(mp::QueueProxy<int> jobs) {
    for (int i = 0; i < 10; ++i) {
        jobs.get();
        jobs.task_done();
    }
}

void hold_and_die(mp::LockProxy lock, mp::EventProxy held) {
    lock.acquire();
    held.set();
    ::raise(SIGKILL);
}

void serve_at(std::string address) {
    mp::BaseManager server(address, {.authkey = "secret"});
    server.serve_forever();
}

}  // namespace

TEST_P(ManagerMethods, ProxiesTravelToChildrenAndShareTheServersObjects) {
    mp::Manager m({.start_method = GetParam()});
    auto d = m.dict<std::string, int>();
    auto ns = m.Namespace();
    auto v = m.Value<double>(1.5);
    auto done = m.Event();
    auto p = ctx().Process(fill, d, ns, v, done);
    p.start();
    EXPECT_TRUE(done.wait(30.0));
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_EQ(d.get("pid"), p.pid());
    EXPECT_EQ(d.size(), 2u);
    EXPECT_EQ(d.items(), (std::map<std::string, int>{{"answer", 42}, {"pid", p.pid()}}));
    EXPECT_EQ(ns.get<std::string>("greeting"), "hello");
    EXPECT_DOUBLE_EQ(v.value(), 3.0);
    EXPECT_TRUE(done.is_set());
}

TEST_P(ManagerMethods, ProducersAndConsumersShareAQueueAndNothingIsLost) {
    mp::Manager m({.start_method = GetParam()});
    auto q = m.Queue<int>();
    auto seen = m.list<int>();
    std::vector<mp::Process> procs;
    for (int i = 0; i < 2; ++i) procs.push_back(ctx().Process(produce, q, i * 500, 500));
    for (int i = 0; i < 2; ++i) procs.push_back(ctx().Process(consume, q, seen));
    for (auto& p : procs) p.start();
    procs[0].join();
    procs[1].join();
    q.put(-1);
    q.put(-1);
    for (auto& p : procs) {
        p.join();
        EXPECT_EQ(p.exitcode(), 0);
    }
    auto values = seen.values();
    std::sort(values.begin(), values.end());
    ASSERT_EQ(values.size(), 1000u);
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(values[i], i);
    EXPECT_TRUE(q.empty());
}

TEST_F(ManagerTest, ServerSideErrorsComeBackAsExceptions) {
    mp::Manager m;
    auto d = m.dict<std::string, int>();
    try {
        d.get("missing");
        FAIL() << "no exception";
    } catch (const mp::RemoteError& e) {
        EXPECT_EQ(e.type_name(), "KeyError");
    }
    EXPECT_FALSE(d.get("missing", std::nullopt).has_value());
    auto l = m.list<int>();
    l.append(1);
    EXPECT_EQ(l.get(-1), 1);
    EXPECT_THROW(l.get(5), mp::RemoteError);
    auto q = m.Queue<int>("", 1);
    EXPECT_THROW(q.get_nowait(), mp::Empty);
    q.put(1);
    EXPECT_TRUE(q.full());
    EXPECT_THROW(q.put(2, true, 0.1), mp::Full);
    EXPECT_THROW(q.task_done(), mp::RemoteError);  // a plain Queue is not joinable
    auto ns = m.Namespace();
    EXPECT_THROW(ns.get<int>("nothing"), mp::RemoteError);
    // The proxy of the wrong type meets the items' own tags.
    auto named = m.Queue<int>("shared");
    named.put(7);
    auto wrong = m.Queue<std::string>("shared");
    EXPECT_THROW(wrong.get(), mp::TypeMismatch);
    EXPECT_THROW((m.dict<int, int>("shared")), mp::RemoteError);  // a queue of that name exists
}

TEST_P(ManagerMethods, AJoinableQueueIsJoinedWhenEveryTaskIsDone) {
    mp::Manager m({.start_method = GetParam()});
    auto jobs = m.JoinableQueue<int>();
    for (int i = 0; i < 10; ++i) jobs.put(i);
    auto p = ctx().Process(work_through, jobs);
    p.start();
    jobs.join();
    EXPECT_EQ(jobs.qsize(), 0u);
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST_F(ManagerTest, ALockHeldByAProcessThatDiesIsReleased) {
    mp::Manager m;
    auto lock = m.Lock();
    auto held = m.Event();
    mp::Process p(hold_and_die, lock, held);
    p.start();
    ASSERT_TRUE(held.wait(30.0));
    p.join();
    EXPECT_EQ(p.exitcode(), -SIGKILL);
    EXPECT_TRUE(lock.acquire(true, 30.0));
    EXPECT_FALSE(lock.acquire(false));
    lock.release();
}

TEST_F(ManagerTest, ABaseManagerServesNamedObjectsToThoseWhoKnowTheKey) {
    const std::string address = "@mprocess-manager-test-" + std::to_string(::getpid());
    mp::Process server(serve_at, address);
    server.start();
    mp::BaseManager client(address, {.authkey = "secret"});
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {  // until the server listens
        try {
            client.connect();
            break;
        } catch (const mp::OSError&) {
            ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    auto jobs = client.Queue<std::string>("jobs");
    jobs.put("first");
    mp::BaseManager other(address, {.authkey = "secret"});
    other.connect();
    EXPECT_EQ(other.Queue<std::string>("jobs").get(true, 30.0), "first");

    mp::BaseManager intruder(address, {.authkey = "wrong"});
    EXPECT_THROW(intruder.connect(), mp::AuthenticationError);

    client.shutdown();
    server.join(30.0);
    EXPECT_EQ(server.exitcode(), 0);
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, ManagerMethods, testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });
