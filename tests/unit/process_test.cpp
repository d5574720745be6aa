// SPDX-License-Identifier: Apache-2.0
#include <mprocess/process.hpp>

#include <dirent.h>
#include <signal.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "helpers/children.hpp"
#include "platform/posix.hpp"
#include "start/code_symbol.hpp"
#include "start/popen.hpp"

using namespace std::chrono_literals;
using testing_support::ChildrenTest;

namespace {

class ProcessTest : public ChildrenTest {};
class ProcessMethods : public testing_support::MethodTest {};

void sleep_forever() {
    std::this_thread::sleep_for(1h);
}

// What a fork-method Pool worker does first with a task: find the code it names.
void look_up_code() {
    const auto symbol = mp::detail::code_symbol(reinterpret_cast<const void*>(&sleep_forever));
    if (mp::detail::function_address(symbol) != reinterpret_cast<void*>(&sleep_forever)) mp::exit(3);
}

// Waits for any process (not necessarily our child) to end, through a pidfd opened while it lives.
class ExitWatch {
public:
    explicit ExitWatch(pid_t pid) : fd_(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))) {}
    ~ExitWatch() {
        if (fd_ >= 0) ::close(fd_);
    }
    bool wait(mp::Timeout timeout) const { return fd_ >= 0 && !mp::wait({fd_}, timeout).empty(); }

private:
    int fd_;
};

class Countdown : public mp::Process {
public:
    Countdown(int n, mp::Connection out, mp::ProcessOptions options = {})
        : mp::Process(std::move(options)), n_(n), out_(std::move(out)) {}
    void run() override {
        for (int i = n_; i > 0; --i) out_.send(i);
        out_.send(name());
    }

private:
    int n_;
    mp::Connection out_;
};

}  // namespace

TEST_P(ProcessMethods, AReturningTargetExitsWithZero) {
    auto p = ctx().Process([] {});
    EXPECT_EQ(p.pid(), 0);
    EXPECT_FALSE(p.exitcode().has_value());
    EXPECT_FALSE(p.is_alive());
    p.start();
    EXPECT_GT(p.pid(), 0);
    EXPECT_NE(p.pid(), ::getpid());
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_FALSE(p.is_alive());
}

TEST_P(ProcessMethods, ArgumentsReachTheTarget) {
    auto [r, w] = mp::Pipe(false);
    auto p = ctx().Process([](mp::Connection c, std::string s, int n) { c.send(s + std::to_string(n)); }, w,
                           std::string("bob"), 7);
    p.start();
    w.close();  // keep only our end, so a dead child means EOF, not a hang
    EXPECT_EQ(r.recv<std::string>(), "bob7");
    p.join();
}

// Looking up code walks the loaded objects under the dynamic linker's lock. A fork while another
// thread walks must not leave that lock held in the child, whose own first lookup would then wait
// forever (a fork-method Pool worker replaced while the caller encoded its next task hung so).
TEST_F(ProcessTest, AForkDuringAnotherThreadsCodeLookupLeavesTheChildFreeToLookUpCode) {
    std::atomic<bool> stop{false};
    std::thread walker([&] {
        while (!stop.load(std::memory_order_relaxed))
            (void)mp::detail::code_symbol(reinterpret_cast<const void*>(&look_up_code));
    });
    int hung = 0;
    for (int i = 0; i < 200 && hung == 0; ++i) {
        mp::Process p(look_up_code, mp::ProcessOptions{.start_method = mp::StartMethod::fork});
        p.start();
        if (!p.join(20.0)) {  // a healthy child ends in milliseconds, even on a loaded machine
            ++hung;
            p.kill();
            p.join();
        } else {
            EXPECT_EQ(p.exitcode(), 0);
        }
    }
    stop = true;
    walker.join();
    EXPECT_EQ(hung, 0) << "a child forked amid another thread's code lookup never finished its own";
}

TEST_F(ProcessTest, MoveOnlyArgumentsAreAccepted) {
    auto [r, w] = mp::Pipe(false);
    mp::Process p([](std::unique_ptr<int>& v, mp::Connection c) { c.send(*v); }, std::make_unique<int>(5), w);
    p.start();
    w.close();  // keep only our end, so a dead child means EOF, not a hang
    EXPECT_EQ(r.recv<int>(), 5);
    p.join();
}

// A forkserver child writes to the server's stderr, as in Python: a server started before the
// capture would write past it. So these tests start their own server inside the capture.
class StderrCapture {
public:
    StderrCapture() {
        mp::detail::forkserver_stop();
        testing::internal::CaptureStderr();
    }
    std::string text() {
        std::string t = testing::internal::GetCapturedStderr();
        mp::detail::forkserver_stop();  // its stderr is the capture's file: no later test's
        return t;
    }
};

TEST_P(ProcessMethods, AThrowingTargetExitsWithOneAndReportsTheException) {
    StderrCapture capture;
    auto p = ctx().Process([] { throw std::invalid_argument("bad input 42"); }, {.name = "thrower"});
    p.start();
    p.join();
    std::string err = capture.text();
    EXPECT_EQ(p.exitcode(), 1);
    EXPECT_NE(err.find("Process thrower:"), std::string::npos) << err;
    EXPECT_NE(err.find("std::invalid_argument: bad input 42"), std::string::npos) << err;
}

TEST_P(ProcessMethods, ANonStandardExceptionAlsoExitsWithOne) {
    StderrCapture capture;
    auto p = ctx().Process([] { throw 42; });
    p.start();
    p.join();
    std::string err = capture.text();
    EXPECT_EQ(p.exitcode(), 1);
    EXPECT_NE(err.find("int"), std::string::npos) << err;
}

TEST_P(ProcessMethods, ExitSetsTheExitCodeAfterUnwinding) {
    auto [r, w] = mp::Pipe(false);
    auto p = ctx().Process(
        [](mp::Connection c) {
            struct Sentry {
                mp::Connection c;
                ~Sentry() { c.send(std::string("unwound")); }
            } sentry{c};
            try {
                mp::exit(7);
            } catch (const std::exception&) {
                c.send(std::string("SystemExit must not be a std::exception"));
            }
        },
        w);
    p.start();
    w.close();
    EXPECT_EQ(r.recv<std::string>(), "unwound");
    p.join();
    EXPECT_EQ(p.exitcode(), 7);
}

TEST_P(ProcessMethods, KilledBySignalGivesMinusTheSignal) {
    auto t = ctx().Process(sleep_forever);
    auto k = ctx().Process(sleep_forever);
    auto i = ctx().Process(sleep_forever);
    t.start();
    k.start();
    i.start();
    EXPECT_TRUE(t.is_alive());
    t.terminate();
    k.kill();
    i.interrupt();
    t.join();
    k.join();
    i.join();
    EXPECT_EQ(t.exitcode(), -SIGTERM);
    EXPECT_EQ(k.exitcode(), -SIGKILL);
    EXPECT_EQ(i.exitcode(), -SIGINT);
    EXPECT_FALSE(t.is_alive());
    t.terminate();  // on a finished process: nothing happens
    i.interrupt();
}

TEST_P(ProcessMethods, JoinWithTimeoutReturnsFalseWhileTheChildRuns) {
    auto p = ctx().Process(sleep_forever);
    p.start();
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(p.join(0.1));
    auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(waited, 95ms);
    EXPECT_LT(waited, 5s);
    EXPECT_FALSE(p.exitcode().has_value());
    EXPECT_TRUE(p.is_alive());
    p.terminate();
    EXPECT_TRUE(p.join(mp::forever));
    EXPECT_EQ(p.exitcode(), -SIGTERM);
}

TEST_F(ProcessTest, DefaultNamesCountUpAndCustomNamesStick) {
    mp::Process a([] {});
    mp::Process b([] {});
    mp::Process c([] {}, {.name = "custom"});
    EXPECT_EQ(a.name().rfind("Process-", 0), 0u) << a.name();
    int na = std::stoi(a.name().substr(8));
    EXPECT_EQ(b.name(), "Process-" + std::to_string(na + 1));
    EXPECT_EQ(c.name(), "custom");
    c.set_name("renamed");
    EXPECT_EQ(c.name(), "renamed");
}

TEST_F(ProcessTest, ASubclassRunsItsOwnRunAndIsNamedAfterItsClass) {
    auto [r, w] = mp::Pipe(false);
    Countdown p(3, w);
    EXPECT_EQ(p.name().rfind("Countdown-", 0), 0u) << p.name();
    p.start();
    w.close();
    EXPECT_EQ(r.recv<int>(), 3);
    EXPECT_EQ(r.recv<int>(), 2);
    EXPECT_EQ(r.recv<int>(), 1);
    EXPECT_EQ(r.recv<std::string>(), p.name());
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(ProcessMethods, MisuseThrowsWithAMessage) {
    auto p = ctx().Process([] {});
    EXPECT_THROW(p.join(), mp::ProcessError);
    EXPECT_THROW(p.terminate(), mp::ProcessError);
    p.start();
    EXPECT_THROW(p.start(), mp::ProcessError);
    EXPECT_THROW(p.set_daemon(true), mp::ProcessError);
    p.join();
    p.close();
    EXPECT_THROW(p.join(), mp::ValueError);
    EXPECT_THROW(p.start(), mp::ValueError);
    EXPECT_THROW((void)p.name(), mp::ValueError);
    p.close();  // closing twice is harmless
}

TEST_P(ProcessMethods, CloseWhileRunningThrows) {
    auto p = ctx().Process(sleep_forever);
    p.start();
    EXPECT_THROW(p.close(), mp::ValueError);
    p.kill();
    p.join();
    EXPECT_NO_THROW(p.close());
}

TEST_P(ProcessMethods, CurrentAndParentProcessDescribeTheRightProcesses) {
    EXPECT_EQ(mp::current_process().name(), "MainProcess");
    EXPECT_EQ(mp::current_process().pid(), ::getpid());
    EXPECT_FALSE(mp::parent_process().has_value());
    auto [r, w] = mp::Pipe(false);
    auto p = ctx().Process(
        [](mp::Connection c) {
            auto parent = mp::parent_process();
            c.send(mp::current_process().name());
            c.send(mp::current_process().pid());
            c.send(parent ? parent->pid() : -1);
            c.send(parent ? parent->name() : std::string());
            c.send(parent && parent->is_alive());
        },
        {.name = "kid"}, w);
    p.start();
    w.close();  // keep only our end, so a dead child means EOF, not a hang
    EXPECT_EQ(r.recv<std::string>(), "kid");
    EXPECT_EQ(r.recv<pid_t>(), p.pid());
    EXPECT_EQ(r.recv<pid_t>(), ::getpid());
    EXPECT_EQ(r.recv<std::string>(), "MainProcess");
    EXPECT_TRUE(r.recv<bool>());
    p.join();
}

TEST_P(ProcessMethods, GrandchildrenAreNamedAfterTheirLineage) {
    auto [r, w] = mp::Pipe(false);
    auto p = ctx().Process(
        [](mp::Connection c) {
            mp::Process g([](mp::Connection c2) { c2.send(mp::current_process().name()); }, c);
            g.start();
            g.join();
        },
        w);
    p.start();
    w.close();  // keep only our end, so a dead child means EOF, not a hang
    EXPECT_EQ(r.recv<std::string>(), p.name() + ":1");
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(ProcessMethods, ActiveChildrenListsRunningChildrenOnly) {
    auto done = ctx().Process([] {});
    done.start();
    done.join();
    auto running = ctx().Process(sleep_forever);
    running.start();
    auto kids = mp::active_children();
    ASSERT_EQ(kids.size(), 1u);
    EXPECT_EQ(kids[0].pid(), running.pid());
    kids[0].terminate();
    running.join();
    EXPECT_TRUE(mp::active_children().empty());
}

TEST_P(ProcessMethods, ADestroyedProcessObjectLeavesItsChildTracked) {
    pid_t pid = 0;
    {
        auto p = ctx().Process(sleep_forever);
        p.start();
        pid = p.pid();
    }
    auto kids = mp::active_children();
    ASSERT_EQ(kids.size(), 1u);
    EXPECT_EQ(kids[0].pid(), pid);
    kids[0].kill();
    kids[0].join();
    EXPECT_EQ(kids[0].exitcode(), -SIGKILL);
}

TEST_P(ProcessMethods, DaemonicProcessesCannotHaveChildren) {
    auto [r, w] = mp::Pipe(false);
    auto p = ctx().Process(
        [](mp::Connection c) {
            try {
                mp::Process g([] {});
                g.start();
                c.send(std::string("started"));
            } catch (const mp::ProcessError& e) {
                c.send(std::string(e.what()));
            }
        },
        {.daemon = true}, w);
    EXPECT_TRUE(p.daemon());
    p.start();
    w.close();  // keep only our end, so a dead child means EOF, not a hang
    EXPECT_NE(r.recv<std::string>().find("daemonic"), std::string::npos);
    p.join();
}

namespace {
struct RunResult {
    int status;
    std::string output;
    std::chrono::steady_clock::duration took;
};

// Runs a helper program to completion, collecting its standard output.
RunResult run_helper(const char* path, const char* arg = nullptr) {
    auto t0 = std::chrono::steady_clock::now();
    int out[2];
    if (::pipe(out) != 0) return {-1, "pipe failed", {}};
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::close(out[0]);
        ::execl(path, path, arg, static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(out[1]);
    std::string text;
    char buf[256];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return {status, text, std::chrono::steady_clock::now() - t0};
}
}  // namespace

TEST_F(ProcessTest, AtExitDaemonsAreTerminatedAndOthersJoined) {
    // The helper program returns from main while both its children run.
    auto r = run_helper(MPROCESS_TEST_EXIT_HELPER);
    EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.output;
    EXPECT_NE(r.output.find("worker done"), std::string::npos) << r.output;
    int daemon_pid = 0;
    ASSERT_EQ(std::sscanf(r.output.c_str(), "daemon %d", &daemon_pid), 1) << r.output;
    // The helper reaped its daemon before exiting, so it no longer exists.
    EXPECT_TRUE(::kill(daemon_pid, 0) != 0 && errno == ESRCH);
}

TEST_F(ProcessTest, SpawnWithoutTheEntryGuardFailsFastNamingTheFix) {
    for (const char* mode : {"start", "idle"}) {
        auto r = run_helper(MPROCESS_TEST_UNGUARDED_HELPER, mode);
        EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << mode << ": " << r.output;
        EXPECT_NE(r.output.find("freeze_support(argc, argv)"), std::string::npos) << r.output;
        EXPECT_LT(r.took, std::chrono::seconds(20)) << mode;
    }
}

namespace {
// True if any open descriptor of this process is the memfd with this name.
bool sees_memfd(const std::string& name) {
    DIR* d = ::opendir("/proc/self/fd");
    bool found = false;
    while (dirent* e = d ? ::readdir(d) : nullptr) {
        char target[256] = {};
        std::string link = std::string("/proc/self/fd/") + e->d_name;
        if (::readlink(link.c_str(), target, sizeof target - 1) > 0 &&
            std::string(target).find(name) != std::string::npos)
            found = true;
    }
    if (d) ::closedir(d);
    return found;
}
}  // namespace

TEST_F(ProcessTest, ASpawnedChildInheritsOnlyTheDescriptorsItIsGiven) {
    int extra = ::memfd_create("mprocess-test-leak", 0);  // inheritable: no close-on-exec
    ASSERT_GE(extra, 0);
    ASSERT_TRUE(sees_memfd("mprocess-test-leak"));
    auto [r, w] = mp::Pipe(false);
    auto p = mp::get_context("spawn").Process([](mp::Connection c) { c.send(sees_memfd("mprocess-test-leak")); }, w);
    p.start();
    w.close();
    EXPECT_FALSE(r.recv<bool>()) << "the spawned child holds the parent's descriptor";
    p.join();
    ::close(extra);
}

TEST_F(ProcessTest, SpawnRefusesTargetsItCannotRebuildWithAClearError) {
    int local = 0;
    auto ctx = mp::get_context("spawn");
    auto capturing = ctx.Process([&local] { ++local; });
    auto move_only = ctx.Process([](std::unique_ptr<int>&) {}, std::make_unique<int>(1));
    auto [r, w] = mp::Pipe(false);
    Countdown subclass(1, w, {.start_method = mp::StartMethod::spawn});
    try {
        capturing.start();
        FAIL() << "a capturing lambda was spawned";
    } catch (const mp::ProcessError& e) {
        EXPECT_NE(std::string(e.what()).find("lambda without captures"), std::string::npos) << e.what();
    }
    EXPECT_THROW(move_only.start(), mp::ProcessError);
    EXPECT_THROW(subclass.start(), mp::ProcessError);
    mp::Process plain([] {}, {.start_method = mp::StartMethod::spawn});
    EXPECT_NO_THROW(plain.start());
    plain.join();
    EXPECT_EQ(plain.exitcode(), 0);
}

TEST_P(ProcessMethods, AChildCanBeMadeToDieWithItsParent) {
    auto [r, w] = mp::Pipe(false);
    auto parent = ctx().Process(
        [](mp::Connection c) {
            // The child's own method (its parent's), except forkserver, which refuses die_with_parent.
            const auto method = mp::get_start_method() == "forkserver" ? mp::StartMethod::fork
                                                                       : mp::parse_start_method(mp::get_start_method());
            mp::Process orphan(sleep_forever, {.die_with_parent = true, .start_method = method});
            orphan.start();
            c.send(orphan.pid());
            sleep_forever();
        },
        w);
    parent.start();
    w.close();
    ExitWatch orphan(r.recv<pid_t>());
    parent.kill();
    parent.join();
    EXPECT_TRUE(orphan.wait(10.0)) << "the child outlived its killed parent";
}

TEST_P(ProcessMethods, SentinelBecomesReadableWhenTheChildEnds) {
    auto p = ctx().Process(sleep_forever);
    p.start();
    int fd = p.sentinel();
    EXPECT_GE(fd, 0);
    EXPECT_TRUE(mp::wait({fd}, 0.0).empty());
    p.kill();
    auto ready = mp::wait({fd}, 10.0);
    ASSERT_EQ(ready.size(), 1u);
    EXPECT_EQ(ready[0].fd(), fd);
    p.join();
}

TEST(ProcessInfoTest, CpuCountMatchesTheSystem) {
    EXPECT_GE(mp::cpu_count(), 1);
    EXPECT_EQ(mp::cpu_count(), static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)));
}

TEST(ProcessInfoTest, ProcessCpuCountIsWhatTheCallerMayRunOnAndTheEnvironmentOverridesBoth) {
    EXPECT_GE(mp::process_cpu_count(), 1);
    EXPECT_LE(mp::process_cpu_count(), mp::cpu_count());
    int pinned = 0;
    std::thread([&] {  // affinity is a thread's: this one may run on one CPU
        ASSERT_TRUE(mp::platform::pin_to_cpu(mp::platform::allowed_cpu_ids().at(0)));
        pinned = mp::process_cpu_count();
    })
        .join();
    EXPECT_EQ(pinned, 1);
    ASSERT_EQ(::setenv("MPROCESS_CPU_COUNT", "3", 1), 0);
    EXPECT_EQ(mp::cpu_count(), 3);
    EXPECT_EQ(mp::process_cpu_count(), 3);
    ASSERT_EQ(::setenv("MPROCESS_CPU_COUNT", "three", 1), 0);  // not a number: no override
    EXPECT_EQ(mp::cpu_count(), static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)));
    ASSERT_EQ(::unsetenv("MPROCESS_CPU_COUNT"), 0);
}

TEST(ProcessInfoTest, TheCgroupCpuQuotaIsTheLeastAlongTheGroupsPath) {
    char tmpl[] = "/tmp/mprocess-cgroup-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string root = tmpl;
    std::filesystem::create_directories(root + "/a/b");
    std::ofstream(root + "/cpu.max") << "max 100000\n";
    std::ofstream(root + "/a/cpu.max") << "150000 100000\n";
    std::ofstream(root + "/a/b/cpu.max") << "max 100000\n";
    std::ofstream(root + "/self") << "1:cpu:/ignored\n0::/a/b\n";
    std::ofstream(root + "/top") << "0::/\n";
    std::ofstream(root + "/v1") << "1:cpu:/a\n";
    EXPECT_EQ(mp::platform::cgroup_cpu_quota(root, root + "/self"), 1.5);
    EXPECT_EQ(mp::platform::cgroup_cpu_quota(root, root + "/top"), std::nullopt);  // "max": no limit
    EXPECT_EQ(mp::platform::cgroup_cpu_quota(root, root + "/v1"), std::nullopt);   // no cgroup v2 line
    std::ofstream(root + "/a/b/cpu.max") << "50000 100000\n";                      // a tighter child
    EXPECT_EQ(mp::platform::cgroup_cpu_quota(root, root + "/self"), 0.5);
    std::filesystem::remove_all(root);
}

namespace {
int open_fds() {
    int n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (::readdir(d)) ++n;
        ::closedir(d);
    }
    return n;
}
}  // namespace

TEST_P(ProcessMethods, ManyProcessesStartAndEndWithoutLeakingDescriptors) {
    auto warm_up = ctx().Process([] {});  // a forkserver keeps one socket to its server
    warm_up.start();
    warm_up.join();
    const int before = open_fds();
    for (int round = 0; round < 2; ++round) {
        std::vector<mp::Process> ps;
        for (int i = 0; i < 50; ++i) ps.push_back(ctx().Process(round == 0 ? +[] {} : sleep_forever));
        for (auto& p : ps) p.start();
        if (round == 1)
            for (auto& p : ps) p.terminate();
        for (auto& p : ps) p.join();
        for (auto& p : ps) EXPECT_EQ(p.exitcode(), round == 0 ? 0 : -SIGTERM);
    }
    for (int i = 0; i < 50; ++i) {
        auto [a, b] = mp::Pipe();
        a.send(i);
        EXPECT_EQ(b.recv<int>(), i);
    }
    EXPECT_EQ(open_fds(), before);
}

TEST_F(ProcessTest, TheParentLetsGoOfTheTargetAndArgumentsAfterStart) {
    auto token = std::make_shared<int>(1);
    mp::Process p([](std::shared_ptr<int>) {}, token);
    EXPECT_EQ(token.use_count(), 2);
    p.start();
    EXPECT_EQ(token.use_count(), 1);
    p.join();
}

TEST_P(ProcessMethods, ExitCodesAreTheLowEightBitsAsOnPosix) {
    for (int code : {0, 1, 8, 255, 256 + 3}) {
        auto p = ctx().Process([](int c) { mp::exit(c); }, code);
        p.start();
        p.join();
        EXPECT_EQ(p.exitcode(), code & 0xff) << code;
    }
}

// The lecture's dispatcher keeps a map of its controllers' queues: handles inside standard
// containers and inside user types travel as handles, under every start method.
struct Routes {
    std::map<int, mp::Queue<std::string>> by_id;
    mp::Connection done;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(by_id, done);
    }
};

void answer_every_queue(std::vector<mp::Queue<int>> queues, Routes routes) {
    for (std::size_t i = 0; i < queues.size(); ++i) queues[i].put(static_cast<int>(i) * 10);
    for (auto& [id, q] : routes.by_id) q.put("to " + std::to_string(id));
    routes.done.send(std::string("done"));
}

TEST_P(ProcessMethods, ContainersOfQueuesAndUserTypesHoldingHandlesTravelAsHandles) {
    std::vector<mp::Queue<int>> queues(3);
    Routes routes;
    routes.by_id.emplace(7, mp::Queue<std::string>());
    routes.by_id.emplace(9, mp::Queue<std::string>());
    auto [r, w] = mp::Pipe(false);
    routes.done = w;
    auto p = ctx().Process(answer_every_queue, queues, routes);
    p.start();
    EXPECT_EQ(r.recv<std::string>(), "done");
    for (int i = 0; i < 3; ++i) EXPECT_EQ(queues[static_cast<std::size_t>(i)].get(true, 30.0), i * 10);
    EXPECT_EQ(routes.by_id.at(7).get(true, 30.0), "to 7");
    EXPECT_EQ(routes.by_id.at(9).get(true, 30.0), "to 9");
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

void greet(std::string name, mp::Connection out) {
    out.send("hello " + name);
}

TEST_P(ProcessMethods, AStringLiteralArgumentBecomesTheTargetsStdString) {
    auto [r, w] = mp::Pipe(false);
    auto p = ctx().Process(greet, "bob", w);
    p.start();
    EXPECT_EQ(r.recv<std::string>(), "hello bob");
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

void echo_view(std::string_view s, mp::Connection out) {
    out.send(std::string(s));
}

// A view parameter does not make the Process keep a view: the temporary string below is gone by
// start(), its copy in the Process is not.
TEST_P(ProcessMethods, AViewParameterKeepsTheArgumentsOwnString) {
    auto [r, w] = mp::Pipe(false);
    auto p = ctx().Process(echo_view, std::string(100, 'k'), w);
    p.start();
    EXPECT_EQ(r.recv<std::string>(), std::string(100, 'k'));
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

void takes_an_address(int* where, int value) {
    *where = value;
}

TEST_P(ProcessMethods, AnArgumentThatCannotTravelIsNamedByPositionAndType) {
    int x = 0;
    auto p = ctx().Process(takes_an_address, &x, 5);
    if (GetParam() == "fork") {  // the child's copy of x: fine under fork
        p.start();
        p.join();
        EXPECT_EQ(p.exitcode(), 0);
        return;
    }
    try {
        p.start();
        ADD_FAILURE() << "an address reached a fresh program image";
    } catch (const mp::ProcessError& e) {
        const std::string what = e.what();
        // g++ spells the type "int*", clang "int *".
        EXPECT_NE(what.find("argument 1 (int"), std::string::npos) << what;
        EXPECT_NE(what.find("*) is neither serializable"), std::string::npos) << what;
    }
}

std::string my_start_method() {
    return mp::get_start_method();
}

void use_what_a_context_made(mp::Queue<int> q, mp::JoinableQueue<int> jq, mp::SimpleQueue<int> sq, mp::Value<int> v,
                             mp::Array<int> a, mp::Lock lock, mp::Event ev, mp::Semaphore sem, mp::Barrier bar,
                             mp::Connection out) {
    q.put(1);
    jq.put(2);
    sq.put(3);
    {
        std::lock_guard g(lock);
        v.set_value(v.value() + 1);
        a[2] = 30;
    }
    ev.set();
    sem.release();
    bar.wait(60.0);
    out.send(mp::get_start_method());
}

// Python's ctx.Queue(), ctx.Pool(), ctx.Manager(), ...: a context has every factory, and its
// method reaches the processes that the Pool, the executor and the Manager start.
TEST_P(ProcessMethods, AContextMakesEveryObjectAndItsMethodReachesPoolsAndManagers) {
    const auto c = ctx();
    auto q = c.Queue<int>();
    auto jq = c.JoinableQueue<int>();
    auto sq = c.SimpleQueue<int>();
    auto v = c.Value<int>(5);
    auto a = c.Array<int>({1, 2, 3});
    auto lock = c.Lock();
    auto ev = c.Event();
    auto sem = c.Semaphore(0);
    auto bar = c.Barrier(2);
    auto [r, w] = c.Pipe(false);
    auto p = c.Process(use_what_a_context_made, q, jq, sq, v, a, lock, ev, sem, bar, w);
    p.start();
    bar.wait(60.0);
    EXPECT_EQ(r.recv<std::string>(), GetParam());
    EXPECT_EQ(q.get(true, 30.0), 1);
    EXPECT_EQ(jq.get(true, 30.0), 2);
    jq.task_done();
    EXPECT_EQ(sq.get(), 3);
    EXPECT_TRUE(ev.wait(30.0));
    EXPECT_TRUE(sem.acquire(true, 30.0));
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_EQ(v.value(), 6);
    EXPECT_EQ(a[2], 30);
    auto rl = c.RLock();
    auto cond = c.Condition(rl);
    auto bs = c.BoundedSemaphore(1);
    EXPECT_THROW(bs.release(), mp::ValueError);  // a BoundedSemaphore, not a plain one

    auto pool = c.Pool(1);
    EXPECT_EQ(pool.apply(my_start_method), GetParam());
    pool.close();
    pool.join();
    auto executor = c.ProcessPoolExecutor(1);
    EXPECT_EQ(executor.submit(my_start_method).result(), GetParam());
    executor.shutdown();
    auto manager = c.Manager();
    auto shared = manager.Queue<int>();
    shared.put(4);
    EXPECT_EQ(shared.get(), 4);
    manager.shutdown();
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, ProcessMethods, ::testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });

// Set by the test before it starts children: a forked child sees it, a fresh image does not.
int g_set_in_the_test = 0;

// Reports (its start method, whether it was forked from the test's image), then does the same
// through a grandchild started with the default method, as CPython's check_context does.
void report_start_method(mp::Connection out, int depth) {
    out.send(std::pair<std::string, int>{mp::get_start_method(), g_set_in_the_test});
    if (depth == 0) return;
    mp::Process p(report_start_method, out, depth - 1);
    p.start();
    p.join();
}

void expect_children_keep(const std::string& method, const std::function<mp::Process(mp::Connection)>& make) {
    g_set_in_the_test = 42;
    auto [r, w] = mp::Pipe(false);
    auto p = make(w);
    p.start();
    const int fresh = method == "fork" ? 42 : 0;
    for (const char* who : {"child", "grandchild"}) {
        auto [m, marker] = r.recv<std::pair<std::string, int>>();
        EXPECT_EQ(m, method) << who;
        EXPECT_EQ(marker, fresh) << who << (fresh ? " is not a fork" : " is not a fresh image");
    }
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    g_set_in_the_test = 0;
}

TEST_P(ProcessMethods, ChildrenAndGrandchildrenKeepTheirContextsStartMethod) {
    expect_children_keep(GetParam(), [&](mp::Connection w) { return ctx().Process(report_start_method, w, 1); });
}

TEST_P(ProcessMethods, ChildrenAndGrandchildrenKeepTheSetStartMethod) {
    mp::set_start_method(GetParam(), true);
    expect_children_keep(GetParam(), [](mp::Connection w) { return mp::Process(report_start_method, w, 1); });
    mp::set_start_method("", true);
}

TEST(ContextTest, TheStartMethodIsSetOnceUnlessForced) {
    EXPECT_EQ(mp::get_start_method(), "fork");
    EXPECT_EQ(mp::get_all_start_methods(), (std::vector<std::string>{"fork", "spawn", "forkserver"}));
    mp::set_start_method("spawn");
    EXPECT_EQ(mp::get_start_method(), "spawn");
    EXPECT_EQ(mp::get_context().get_start_method(), "spawn");
    EXPECT_THROW(mp::set_start_method("fork"), mp::ProcessError);
    mp::set_start_method("forkserver", true);
    EXPECT_EQ(mp::get_start_method(), "forkserver");
    mp::set_start_method("", true);  // back to the default, as Python's set_start_method(None, force=True)
    EXPECT_EQ(mp::get_start_method(), "fork");
    EXPECT_THROW(mp::get_context("threads"), mp::ValueError);
    EXPECT_THROW(mp::set_start_method("bogus", true), mp::ValueError);
    EXPECT_EQ(mp::get_context("spawn").get_start_method(), "spawn");
}

TEST_F(ProcessTest, AKilledForkserverIsReplacedOnTheNextStart) {
    auto ctx = mp::get_context("forkserver");
    auto first = ctx.Process([] {});
    first.start();
    first.join();
    const pid_t server = mp::detail::forkserver_pid();
    ASSERT_GT(server, 0);
    ExitWatch dead(server);
    ASSERT_EQ(::kill(server, SIGKILL), 0);
    ASSERT_TRUE(dead.wait(10.0));  // a server that dies while it starts a child is an error instead
    auto second = ctx.Process([](int code) { mp::exit(code); }, 5);
    second.start();
    second.join();
    EXPECT_EQ(second.exitcode(), 5);
    EXPECT_GT(mp::detail::forkserver_pid(), 0);
    EXPECT_NE(mp::detail::forkserver_pid(), server);
}

TEST_F(ProcessTest, ForkserverRefusesDieWithParent) {
    auto p = mp::get_context("forkserver").Process([] {}, {.die_with_parent = true});
    EXPECT_THROW(p.start(), mp::ProcessError);
}

TEST_F(ProcessTest, ASentinelStaysValidAfterTheChildIsReaped) {
    mp::Process first([] {});
    first.start();
    first.join();
    const int s1 = first.sentinel();
    mp::Process second(sleep_forever);
    second.start();  // reaps finished children on the way; must not close or reuse s1
    auto ready = mp::wait({s1, second.sentinel()}, 10.0);
    ASSERT_EQ(ready.size(), 1u);
    EXPECT_EQ(ready[0].fd(), s1);
    second.kill();
    second.join();
}

TEST_P(ProcessMethods, ChildrenReapedBySomeoneElseDoNotBreakTheRegistry) {
    ::signal(SIGCHLD, SIG_IGN);  // the kernel reaps children itself: waitpid() says ECHILD
    auto p = ctx().Process([] {});
    p.start();
    EXPECT_TRUE(p.join(30.0));
    EXPECT_TRUE(p.exitcode().has_value());
    EXPECT_TRUE(mp::active_children().empty());
    auto q = ctx().Process([] {});
    EXPECT_NO_THROW(q.start());
    EXPECT_TRUE(q.join(30.0));
    ::signal(SIGCHLD, SIG_DFL);
}

namespace {
void noexcept_target(mp::Connection c, int v) noexcept {
    c.send(v * 2);
}
}  // namespace

TEST_P(ProcessMethods, NoexceptFunctionsAreTargetsToo) {
    auto [r, w] = mp::Pipe(false);
    auto p = ctx().Process(noexcept_target, w, 21);
    p.start();
    w.close();
    EXPECT_EQ(r.recv<int>(), 42);
    p.join();
}

// Who may make a program start as a child. A fresh image takes its payload from the descriptor
// its environment names, so the environment must not be enough: the descriptor must be a socket
// made by the real parent, of the same user, and the payload may enter only registered code.
namespace {

std::string helper_output(const std::vector<std::string>& args) {
    int out[2];
    if (::pipe(out) != 0) return {};
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::close(out[0]);
        std::vector<char*> argv{const_cast<char*>(MPROCESS_TEST_START_CHANNEL_HELPER)};
        for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(out[1]);
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    ::close(out[0]);
    ::waitpid(pid, nullptr, 0);
    return text;
}

// A payload that would run the helper's pwned(): "fn" through a registered entry point, "entry"
// as the entry point itself.
std::string forged_payload(const char* kind) {
    return helper_output({"payload", kind});
}

enum class Channel {
    stdin_file,   // the variable names stdin, a file holding the payload
    from_parent,  // a socket pair this process made, and this process starts the helper
    from_other,   // a socket pair this process made, but a child of ours starts the helper
};

struct Outcome {
    int status = -1;
    std::string output;  // stdout and stderr
    std::string answer;  // what the helper wrote back on the channel
};

// Starts `program` with `var`=<channel> in its environment, the payload waiting on the channel.
// `as_nobody`: the program runs with user and group nobody (it must then be readable by them).
Outcome run_with_channel(const std::string& program, const char* var, Channel how, const std::string& payload,
                         bool as_nobody = false) {
    Outcome o;
    int out[2], sv[2] = {-1, -1};
    if (::pipe(out) != 0) return o;
    int channel_fd = -1;
    if (how == Channel::stdin_file) {
        channel_fd = ::memfd_create("forged-payload", 0);
        if (::write(channel_fd, payload.data(), payload.size()) != static_cast<ssize_t>(payload.size())) return o;
        ::lseek(channel_fd, 0, SEEK_SET);
    } else {
        if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return o;
        if (::write(sv[0], payload.data(), payload.size()) != static_cast<ssize_t>(payload.size())) return o;
        channel_fd = sv[1];
    }
    const std::string assignment =
        std::string(var) + "=" + (how == Channel::stdin_file ? "0" : std::to_string(channel_fd));
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::dup2(out[1], 2);
        if (how == Channel::stdin_file) ::dup2(channel_fd, 0);
        if (as_nobody && (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
                          ::setresuid(65534, 65534, 65534) != 0))
            ::_exit(126);
        ::setenv(var, assignment.substr(std::strlen(var) + 1).c_str(), 1);
        const char* argv[] = {program.c_str(), nullptr};
        if (how == Channel::from_other) {
            pid_t grandchild = ::fork();
            if (grandchild == 0) {
                ::execv(argv[0], const_cast<char**>(argv));
                ::_exit(127);
            }
            int st = 0;
            ::waitpid(grandchild, &st, 0);
            ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        }
        ::execv(argv[0], const_cast<char**>(argv));
        ::_exit(127);
    }
    ::close(out[1]);
    ::close(channel_fd);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0) o.output.append(buf, static_cast<std::size_t>(n));
    ::close(out[0]);
    ::waitpid(pid, &o.status, 0);
    if (sv[0] >= 0) {
        ::fcntl(sv[0], F_SETFL, O_NONBLOCK);
        while ((n = ::read(sv[0], buf, sizeof buf)) > 0) o.answer.append(buf, static_cast<std::size_t>(n));
        ::close(sv[0]);
    }
    return o;
}

int exit_code(int status) {
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_F(ProcessTest, AWellFormedPayloadFromTheRealParentRuns) {
    // The control for the tests below: the forged payload is good enough to run pwned() when it
    // comes the way a parent sends it.
    const std::string payload = forged_payload("fn");
    ASSERT_FALSE(payload.empty());
    auto o = run_with_channel(MPROCESS_TEST_START_CHANNEL_HELPER, "MPROCESS_SPAWN_FD", Channel::from_parent, payload);
    EXPECT_NE(o.output.find("PWNED"), std::string::npos) << o.output;
    EXPECT_EQ(o.answer, "R");
}

TEST_F(ProcessTest, AStartChannelNamedByTheEnvironmentAloneRunsNoCode) {
    const std::string payload = forged_payload("fn");
    for (const char* var : {"MPROCESS_SPAWN_FD", "MPROCESS_FORKSERVER_FD"}) {
        for (Channel how : {Channel::stdin_file, Channel::from_other}) {
            auto o = run_with_channel(MPROCESS_TEST_START_CHANNEL_HELPER, var, how, payload);
            EXPECT_EQ(o.output.find("PWNED"), std::string::npos) << var << ": " << o.output;
            EXPECT_EQ(o.output.find("main ran"), std::string::npos) << var << ": " << o.output;
            EXPECT_EQ(exit_code(o.status), 1) << var << ": " << o.output;
            EXPECT_NE(o.output.find(std::string(var) + "="), std::string::npos) << o.output;
            EXPECT_NE(o.output.find(how == Channel::stdin_file ? "not a socket" : "not our parent process"),
                      std::string::npos)
                << o.output;
            EXPECT_TRUE(o.answer.empty()) << o.answer;
        }
    }
}

TEST_F(ProcessTest, EvenTheRealParentCanEnterOnlyRegisteredEntryPoints) {
    const std::string payload = forged_payload("entry");
    ASSERT_FALSE(payload.empty());
    auto o = run_with_channel(MPROCESS_TEST_START_CHANNEL_HELPER, "MPROCESS_SPAWN_FD", Channel::from_parent, payload);
    EXPECT_EQ(o.output.find("PWNED"), std::string::npos) << o.output;
    EXPECT_EQ(exit_code(o.status), 1) << o.output;
    EXPECT_EQ(o.answer.substr(0, 1), "E");
    EXPECT_NE(o.answer.find("not an entry point"), std::string::npos) << o.answer;
}

TEST_F(ProcessTest, ASetuidProgramIgnoresTheStartChannel) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root, to make a setuid-root copy of a program and run it as nobody";
    // A setuid-root copy that nobody may run: in secure-execution mode the environment belongs
    // to the caller, so the program runs as itself.
    char dir[] = "/tmp/mprocess-setuid-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string copy = std::string(dir) + "/start_channel";
    {
        std::ifstream in(MPROCESS_TEST_START_CHANNEL_HELPER, std::ios::binary);
        std::ofstream out(copy, std::ios::binary);
        out << in.rdbuf();
    }
    ASSERT_EQ(::chmod(dir, 0755), 0);
    ASSERT_EQ(::chmod(copy.c_str(), 04755), 0);
    const std::string payload = forged_payload("fn");
    auto o = run_with_channel(copy, "MPROCESS_SPAWN_FD", Channel::from_parent, payload, true);
    ::unlink(copy.c_str());
    ::rmdir(dir);
    if (exit_code(o.status) == 126) GTEST_SKIP() << "cannot become nobody here";
    EXPECT_EQ(o.output.find("PWNED"), std::string::npos) << o.output;
    EXPECT_NE(o.output.find("main ran"), std::string::npos) << o.output;
    EXPECT_EQ(exit_code(o.status), 0) << o.output;
}
