#include <mprocess/manager.hpp>
#include <mprocess/process.hpp>
#include <mprocess/queue.hpp>
#include <mprocess/subprocess.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <tuple>
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

void serve_registered(std::string address) {
    mp::BaseManager server(address, {.authkey = "secret", .registered_only = true});
    server.register_queue("jobs");
    server.register_value("limit", 10);
    server.serve_forever();
}

void serve_with_jobs(std::string address) {
    mp::BaseManager server(address, {.authkey = "secret"});
    server.register_queue("jobs");
    server.serve_forever();
}

// Connects, waiting for the server to listen.
void connect_when_up(mp::BaseManager& m) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
        try {
            m.connect();
            return;
        } catch (const mp::OSError&) {
            if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(30)) throw;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
}

void use_posted(mp::Queue<mp::QueueProxy<int>> post, mp::Queue<std::string> keys) {
    auto q = post.get();
    q.put(7);
    keys.put(mp::current_process().authkey());
}

void post_proxy(std::string address, mp::Queue<mp::QueueProxy<int>> out) {
    mp::BaseManager m(address, {.authkey = "secret"});
    connect_when_up(m);
    out.put(m.Queue<int>("posted"));
}

using RawRequest = std::tuple<std::string, std::string, std::vector<std::string>>;
using RawReply = std::tuple<std::uint8_t, std::string, std::string, std::vector<std::string>>;

// In a child: a missing key is caught as the manager's KeyError, which names that manager.
void catch_key_error(mp::DictProxy<std::string, int> d, std::string address) {
    try {
        d.get("missing");
    } catch (const mp::RemoteKeyError& e) {
        mp::exit(e.source() == "manager " + address && e.pid() == 0 ? 0 : 2);
    }
    mp::exit(1);
}

}  // namespace

TEST_F(ManagerTest, AServerMayOfferOnlyTheObjectsItRegistered) {
    const std::string address = "@mprocess-registered-" + std::to_string(::getpid());
    mp::Process server(serve_registered, address);
    server.start();
    mp::BaseManager client(address, {.authkey = "secret"});
    connect_when_up(client);
    auto jobs = client.Queue<std::string>("jobs");
    jobs.put("x");
    EXPECT_EQ(jobs.get(), "x");
    EXPECT_EQ(client.Value<int>(0, "limit").value(), 10);  // the server's value, not this initial one
    EXPECT_THROW(client.Queue<int>("other"), mp::RemoteError);
    EXPECT_THROW(client.register_queue("late"), mp::ValueError);
    client.shutdown();
    server.join(30.0);
    EXPECT_EQ(server.exitcode(), 0);
}

TEST_F(ManagerTest, GarbageFromOneClientDoesNotHurtTheServerOrOthers) {
    mp::BaseManager m("127.0.0.1:0", {.authkey = "k"});
    m.start();
    auto d = m.dict<std::string, int>("d");
    d.set("a", 1);
    for (const std::string& junk : {std::string("not a request"), std::string(3, '\0'), std::string(5000, 'x')}) {
        auto raw = mp::Client(m.address(), {.authkey = "k"});
        raw.send_bytes(junk);
        EXPECT_THROW(raw.recv_bytes(), mp::EOFError);  // the server ended that connection
    }
    {
        auto wrong_kind = mp::Client(m.address(), {.authkey = "k"});
        wrong_kind.send(std::string("a string where a request belongs"));
        EXPECT_THROW(wrong_kind.recv_bytes(), mp::EOFError);
    }
    EXPECT_EQ(d.get("a"), 1);
    m.shutdown();
}

TEST_F(ManagerTest, ASilentClientHoldsUpNobodyElse) {
    EXPECT_THROW(mp::BaseManager("127.0.0.1:0"), mp::ValueError);  // TCP needs a key
    mp::BaseManager m("127.0.0.1:0", {.authkey = "k"});
    m.start();
    const unsigned port = static_cast<unsigned>(std::stoul(m.address().substr(m.address().rfind(':') + 1)));
    const int silent = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(silent, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    const auto t0 = std::chrono::steady_clock::now();
    auto d = m.dict<std::string, int>();  // the handshake timeout is 10 s: this must not wait for it
    d.set("x", 1);
    EXPECT_EQ(d.get("x"), 1);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
    ::close(silent);
    m.shutdown();
}

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

TEST_P(ManagerMethods, AnErrorFromTheManagerNamesItAndIsCaughtByItsKind) {
    mp::Manager m({.start_method = GetParam()});
    auto d = m.dict<std::string, int>();
    try {
        d.get("missing");
        FAIL() << "no exception";
    } catch (const mp::RemoteKeyError& e) {
        EXPECT_EQ(e.type_name(), "KeyError");
        EXPECT_EQ(e.source(), "manager " + m.address());
        EXPECT_EQ(e.pid(), 0);
        const std::string what = e.what();
        EXPECT_NE(what.find("(in manager " + m.address() + ")"), std::string::npos) << what;
        EXPECT_EQ(what.find("worker"), std::string::npos) << what;
    }
    auto l = m.list<int>();
    EXPECT_THROW(l.get(5), mp::RemoteIndexError);
    auto q = m.Queue<int>();
    EXPECT_THROW(q.task_done(), mp::RemoteAttributeError);  // a plain Queue is not joinable
    auto jq = m.JoinableQueue<int>();
    EXPECT_THROW(jq.task_done(), mp::RemoteValueError);  // called too many times
    auto ns = m.Namespace();
    EXPECT_THROW(ns.get<int>("nothing"), mp::RemoteAttributeError);
    m.Queue<int>("shared");
    EXPECT_THROW((m.dict<int, int>("shared")), mp::RemoteTypeError);  // a queue of that name exists
    auto p = ctx().Process(catch_key_error, d, m.address());
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
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
    connect_when_up(client);
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

TEST_P(ManagerMethods, AProxyNeverCarriesItsKeyYetEveryChildKnowsIt) {
    mp::BaseManager m("127.0.0.1:0", {.authkey = "a-key-only-we-know", .start_method = GetParam()});
    m.start();
    auto q = m.Queue<int>();
    EXPECT_EQ(mp::encode(q).find("a-key-only-we-know"), std::string::npos);
    mp::Queue<mp::QueueProxy<int>> post;  // a queue item, not an argument of the child's start
    mp::Queue<std::string> keys;
    auto p = ctx().Process(use_posted, post, keys);
    p.start();
    post.put(q);
    EXPECT_EQ(q.get(true, 30.0), 7);
    const auto key = mp::current_process().authkey();
    EXPECT_EQ(key.size(), 32u);
    EXPECT_EQ(keys.get(true, 30.0), key);
    p.join(30.0);
    EXPECT_EQ(p.exitcode(), 0);
    m.shutdown();
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, ManagerMethods, testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });

namespace {

// Two network namespaces joined by a veth pair, made for one test and removed after it.
class TwoHosts {
public:
    TwoHosts() {
        const std::string tag = std::to_string(::getpid());
        a_ = "mp-a-" + tag;
        b_ = "mp-b-" + tag;
        const std::string va = "mpva" + tag, vb = "mpvb" + tag;
        ok_ = sh({"ip", "netns", "add", a_}) && sh({"ip", "netns", "add", b_}) &&
              sh({"ip", "link", "add", va, "type", "veth", "peer", "name", vb}) &&
              sh({"ip", "link", "set", va, "netns", a_}) && sh({"ip", "link", "set", vb, "netns", b_}) &&
              sh({"ip", "-n", a_, "addr", "add", "10.231.0.1/24", "dev", va}) &&
              sh({"ip", "-n", b_, "addr", "add", "10.231.0.2/24", "dev", vb}) &&
              sh({"ip", "-n", a_, "link", "set", va, "up"}) && sh({"ip", "-n", b_, "link", "set", vb, "up"}) &&
              sh({"ip", "-n", a_, "link", "set", "lo", "up"}) && sh({"ip", "-n", b_, "link", "set", "lo", "up"});
    }
    ~TwoHosts() {
        sh({"ip", "netns", "del", a_});  // takes the veth pair with it
        sh({"ip", "netns", "del", b_});
    }
    bool ok() const { return ok_; }
    const std::string& a() const { return a_; }
    const std::string& b() const { return b_; }

    // Moves the calling process into namespace `name`.
    static void enter(const std::string& name) {
        const int fd = ::open(("/var/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) mp::exit(90);
        ::close(fd);
    }

private:
    static bool sh(std::vector<std::string> args) {
        try {
            return mp::subprocess::run(std::move(args), {.capture_output = true, .timeout = 30.0}).returncode == 0;
        } catch (const mp::Error&) {
            return false;
        }
    }
    std::string a_, b_;
    bool ok_ = false;
};

const std::string kRemote = "10.231.0.1:5000";

void serve_in(std::string ns) {
    TwoHosts::enter(ns);
    mp::BaseManager server(kRemote, {.authkey = "two hosts"});
    server.serve_forever();
}

void remote_producer(std::string ns, int from, int n) {
    TwoHosts::enter(ns);
    mp::BaseManager m(kRemote, {.authkey = "two hosts"});
    connect_when_up(m);
    auto q = m.Queue<int>("items");
    for (int i = from; i < from + n; ++i) q.put(i);
}

// Takes items until -1 and hands each to `got`, a queue in this machine's shared memory.
void remote_consumer(std::string ns, mp::Queue<int> got) {
    TwoHosts::enter(ns);
    mp::BaseManager m(kRemote, {.authkey = "two hosts"});
    connect_when_up(m);
    auto q = m.Queue<int>("items");
    for (int v; (v = q.get()) >= 0;) got.put(v);
}

void remote_stopper(std::string ns, int consumers) {
    TwoHosts::enter(ns);
    mp::BaseManager m(kRemote, {.authkey = "two hosts"});
    connect_when_up(m);
    auto q = m.Queue<int>("items");
    for (int i = 0; i < consumers; ++i) q.put(-1);
    m.shutdown();
}

}  // namespace

TEST_F(ManagerTest, ProducersAndConsumersOnAnotherHostGetEveryItemOnce) {
    if (::geteuid() != 0) GTEST_SKIP() << "making network namespaces needs root";
    TwoHosts hosts;
    if (!hosts.ok()) GTEST_SKIP() << "cannot make two network namespaces joined by a veth pair here";
    auto fork = mp::get_context("fork");
    auto server = fork.Process(serve_in, hosts.a());
    server.start();
    mp::Queue<int> got;
    std::vector<mp::Process> procs;
    for (int i = 0; i < 2; ++i) procs.push_back(fork.Process(remote_producer, hosts.b(), i * 1000, 1000));
    for (int i = 0; i < 2; ++i) procs.push_back(fork.Process(remote_consumer, hosts.b(), got));
    for (auto& p : procs) p.start();
    std::vector<int> items;
    for (int i = 0; i < 2000; ++i) items.push_back(got.get(true, 60.0));
    auto stopper = fork.Process(remote_stopper, hosts.b(), 2);
    stopper.start();
    stopper.join(60.0);
    for (auto& p : procs) {
        p.join(60.0);
        EXPECT_EQ(p.exitcode(), 0);
    }
    server.join(60.0);
    EXPECT_EQ(server.exitcode(), 0);
    std::sort(items.begin(), items.end());
    for (int i = 0; i < 2000; ++i) ASSERT_EQ(items[i], i);
    EXPECT_TRUE(got.empty());
}

TEST_F(ManagerTest, AProxyFromAStrangerNeedsItsKeyToBeKnownHere) {
    const std::string address = "@mprocess-stranger-" + std::to_string(::getpid());
    auto fork = mp::get_context("fork");
    auto server = fork.Process(serve_at, address);
    server.start();
    mp::Queue<mp::QueueProxy<int>> posted;
    auto poster = fork.Process(post_proxy, address, posted);
    poster.start();
    auto q = posted.get(true, 30.0);  // made by a process that knew the key; this one does not
    poster.join(30.0);
    try {
        q.put(1);  // no key is guessed: none is tried on whatever listens there
        FAIL() << "a proxy without a known key was used";
    } catch (const mp::AuthenticationError& e) {
        EXPECT_NE(std::string(e.what()).find("knows no key for the manager at " + address), std::string::npos);
    }
    mp::remember_authkey(address, "secret");
    q.put(1);  // the same proxy: its key is looked up at each call
    EXPECT_EQ(q.get(), 1);
    EXPECT_THROW(mp::set_authkey(""), mp::ValueError);
    mp::BaseManager stopper(address, {.authkey = "secret"});
    stopper.connect();
    stopper.shutdown();
    server.join(30.0);
    EXPECT_EQ(server.exitcode(), 0);
}

TEST_F(ManagerTest, OnThisHostATcpManagerHasAKeyedLocalDoor) {
    mp::BaseManager m("127.0.0.1:0", {.authkey = "k"});
    m.start();
    auto raw = mp::Client(m.address(), {.authkey = "k"});
    raw.send(RawRequest{"", "local", {}});
    auto [status, type, message, results] = raw.recv<RawReply>();
    ASSERT_EQ(status, 0) << type << ": " << message;
    ASSERT_EQ(results.size(), 1u);
    ASSERT_EQ(results[0].substr(0, 1), "@");  // an abstract name: this host and namespace only
    EXPECT_THROW(mp::Client(results[0], {.authkey = "wrong"}), mp::AuthenticationError);
    // Nor the TCP key itself: the door has a key derived from it and its name, so a handshake
    // made for one cannot be relayed to the other.
    EXPECT_THROW(mp::Client(results[0], {.authkey = "k"}), mp::AuthenticationError);
    auto d = m.dict<std::string, int>("d");
    d.set("x", 1);
    EXPECT_EQ(d.get("x"), 1);
    m.shutdown();
}

TEST_F(ManagerTest, ANamedObjectCanBeReleasedButNotARegisteredOne) {
    const std::string address = "@mprocess-release-" + std::to_string(::getpid());
    mp::Process server(serve_with_jobs, address);
    server.start();
    mp::BaseManager m(address, {.authkey = "secret"});
    connect_when_up(m);
    auto mine = m.Queue<int>("mine");
    mine.put(1);
    m.release("mine");
    EXPECT_THROW(mine.put(2), mp::RemoteError);  // KeyError: it is gone
    EXPECT_THROW(m.release("mine"), mp::RemoteError);
    EXPECT_THROW(m.release("jobs"), mp::RemoteError);  // the server's own
    auto again = m.Queue<int>("mine");                 // a new one of that name, empty
    EXPECT_TRUE(again.empty());
    // A call waiting on a released object ends (or, released first, it finds no object).
    auto waiting = m.Queue<int>("waiting");
    std::string ended;
    std::thread blocked([&] {
        try {
            waiting.get(true, 60.0);
        } catch (const mp::RemoteError& e) {
            ended = e.type_name();
        }
    });
    m.release("waiting");
    blocked.join();
    EXPECT_EQ(ended, "KeyError");
    m.shutdown();
    server.join(30.0);
    EXPECT_EQ(server.exitcode(), 0);
}
