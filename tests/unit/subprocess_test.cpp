// SPDX-License-Identifier: Apache-2.0
#include <mprocess/subprocess.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "helpers/children.hpp"
#include "platform/exec.hpp"

namespace sp = mprocess::subprocess;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

int open_fd_count() {
    int n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    if (!d) return -1;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
    return n - 1;  // the directory stream's own descriptor
}

std::string slurp(const fs::path& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Bytes that are unlikely to come back right by accident, NULs and newlines included.
std::string random_bytes(std::size_t n, unsigned seed) {
    std::mt19937_64 gen(seed);
    std::string s(n, '\0');
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
        auto v = gen();
        std::memcpy(&s[i], &v, 8);
    }
    return s;
}

// Every test must leave no child unreaped, whatever the path it took; each gets a scratch directory.
class SubprocessTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("mprocess-subprocess-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_);
    }
    void TearDown() override {
        EXPECT_EQ(testing_support::zombie_children(), 0) << "a child was left unreaped";
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    const fs::path& dir() const { return dir_; }

private:
    fs::path dir_;
};

}  // namespace

// With SIGCHLD ignored the kernel reaps every child as it ends, possibly before run() has looked
// at it: that is no error (the status is unknowable, so 0, as Python reports it), and no pid is
// signalled after its process is gone.
TEST_F(SubprocessTest, AQuickProgramWithSIGCHLDIgnoredRunsWithoutError) {
    struct sigaction ignore {
    }, old{};
    ignore.sa_handler = SIG_IGN;
    ASSERT_EQ(::sigaction(SIGCHLD, &ignore, &old), 0);
    int errors = 0;
    std::string first;
    for (int i = 0; i < 300; ++i) {
        try {
            EXPECT_EQ(mp::subprocess::run({"true"}).returncode, 0);
        } catch (const std::exception& e) {
            if (errors++ == 0) first = e.what();
        }
    }
    ::sigaction(SIGCHLD, &old, nullptr);
    EXPECT_EQ(errors, 0) << "the first: " << first;
}

TEST_F(SubprocessTest, EchoOutputIsReadFromAPipe) {
    sp::Popen p({"/bin/echo", "hello", "world"}, {.stdout_ = sp::PIPE});
    EXPECT_GT(p.pid(), 0);
    EXPECT_EQ(p.read(), "hello world\n");
    EXPECT_EQ(p.wait(), 0);
    EXPECT_EQ(p.returncode(), 0);
}

TEST_F(SubprocessTest, ProgramsAreFoundInPath) {
    sp::Popen p({"echo", "found"}, {.stdout_ = sp::PIPE});
    EXPECT_EQ(p.read(), "found\n");
    EXPECT_EQ(p.wait(), 0);
    EXPECT_EQ(p.args(), (std::vector<std::string>{"echo", "found"}));
}

TEST_F(SubprocessTest, StdinGoesThroughCatToStdout) {
    sp::Popen p({"cat"}, {.stdin_ = sp::PIPE, .stdout_ = sp::PIPE});
    p.write("first line\n");
    p.write("second");
    p.close_stdin();
    EXPECT_EQ(p.readline(), "first line\n");
    EXPECT_EQ(p.readline(), "second");
    EXPECT_EQ(p.readline(), "");
    EXPECT_EQ(p.wait(), 0);
}

TEST_F(SubprocessTest, ReadWithACountStopsThereOrAtEndOfFile) {
    sp::Popen p({"/bin/sh", "-c", "printf abcdefgh"}, {.stdout_ = sp::PIPE});
    EXPECT_EQ(p.read(3), "abc");
    EXPECT_EQ(p.read(4), "defg");
    EXPECT_EQ(p.read(10), "h");
    EXPECT_EQ(p.read(10), "");
    EXPECT_EQ(p.wait(), 0);
}

TEST_F(SubprocessTest, StderrIsReadSeparatelyOrMergedIntoStdout) {
    sp::Popen apart({"/bin/sh", "-c", "echo out; echo err >&2"}, {.stdout_ = sp::PIPE, .stderr_ = sp::PIPE});
    EXPECT_EQ(apart.readline_stderr(), "err\n");
    EXPECT_EQ(apart.read_stderr(), "");
    EXPECT_EQ(apart.read(), "out\n");
    EXPECT_EQ(apart.wait(), 0);

    sp::Popen merged({"/bin/sh", "-c", "echo out; echo err >&2"}, {.stdout_ = sp::PIPE, .stderr_ = sp::STDOUT});
    EXPECT_EQ(merged.read(), "out\nerr\n");
    EXPECT_EQ(merged.wait(), 0);
    EXPECT_THROW(merged.read_stderr(), mp::ValueError);
}

TEST_F(SubprocessTest, DevnullGivesEndOfFileAndSwallowsOutput) {
    sp::Popen reader({"cat"}, {.stdin_ = sp::DEVNULL, .stdout_ = sp::PIPE});
    EXPECT_EQ(reader.read(), "");
    EXPECT_EQ(reader.wait(), 0);

    sp::Popen writer({"/bin/sh", "-c", "echo lost; echo lost too >&2"},
                     {.stdout_ = sp::DEVNULL, .stderr_ = sp::DEVNULL});
    EXPECT_EQ(writer.wait(), 0);
    EXPECT_THROW(writer.read(), mp::ValueError);  // not a pipe
}

TEST_F(SubprocessTest, FilesCanBeStdinStdoutAndStderr) {
    const auto in = dir() / "in.txt", out = dir() / "out.txt", err = dir() / "err.txt";
    std::ofstream(in) << "from a file\n";
    std::ofstream(out) << "old content that must be truncated away\n";
    sp::Popen p(
        {"/bin/sh", "-c", "cat; echo oops >&2"},
        {.stdin_ = sp::Redirect::file(in), .stdout_ = sp::Redirect::file(out), .stderr_ = sp::Redirect::file(err)});
    EXPECT_EQ(p.wait(), 0);
    EXPECT_EQ(slurp(out), "from a file\n");
    EXPECT_EQ(slurp(err), "oops\n");

    EXPECT_THROW(sp::Popen({"cat"}, {.stdin_ = sp::Redirect::file(dir() / "missing")}), mp::OSError);
}

TEST_F(SubprocessTest, AnOpenDescriptorCanBeStdout) {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    {
        sp::Popen p({"/bin/echo", "via fd"}, {.stdout_ = sp::Redirect::fd(fds[1])});
        EXPECT_EQ(p.wait(), 0);
    }
    ::close(fds[1]);  // ours stays open until we close it; the child's copy is gone
    char buf[64] = {};
    EXPECT_EQ(::read(fds[0], buf, sizeof buf), 7);
    EXPECT_STREQ(buf, "via fd\n");
    ::close(fds[0]);
}

TEST_F(SubprocessTest, TheChildRunsInCwdWithExactlyTheGivenEnvironment) {
    sp::Popen p({"/bin/sh", "-c", "pwd; echo \"$GREETING\"; echo \"${HOME-unset}\""},
                {.stdout_ = sp::PIPE, .cwd = dir(), .env = sp::Environment{{"GREETING", "hi there"}}});
    EXPECT_EQ(p.read(), fs::canonical(dir()).string() + "\nhi there\nunset\n");
    EXPECT_EQ(p.wait(), 0);
}

TEST_F(SubprocessTest, AMissingCwdThrowsWithTheChildsErrno) {
    try {
        sp::Popen p({"/bin/true"}, {.cwd = dir() / "nowhere"});
        FAIL() << "no error for a missing cwd";
    } catch (const sp::ExecError& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory) << e.what();
        EXPECT_EQ(e.filename(), (dir() / "nowhere").string());
    }
}

TEST_F(SubprocessTest, CommunicateMoves64MiBEachWayThroughCat) {
    const std::string input = random_bytes(64 << 20, 1);
    sp::Popen p({"cat"}, {.stdin_ = sp::PIPE, .stdout_ = sp::PIPE, .stderr_ = sp::PIPE});
    auto [out, err] = p.communicate(input);
    EXPECT_EQ(out.size(), input.size());
    EXPECT_TRUE(out == input) << "the bytes came back different";
    EXPECT_EQ(err, "");
    EXPECT_EQ(p.returncode(), 0);
}

TEST_F(SubprocessTest, CommunicateServesLargeStdoutAndStderrAtOnce) {
    // tee writes everything to stdout and stderr: a reader that drained one pipe at a time would
    // leave the child blocked on the other while we block on writing its stdin.
    const std::string input = random_bytes(8 << 20, 2);
    sp::Popen p({"/bin/sh", "-c", "tee /dev/stderr"}, {.stdin_ = sp::PIPE, .stdout_ = sp::PIPE, .stderr_ = sp::PIPE});
    auto [out, err] = p.communicate(input, 60);
    EXPECT_TRUE(out == input);
    EXPECT_TRUE(err == input);
    EXPECT_EQ(p.returncode(), 0);
}

TEST_F(SubprocessTest, ACommandThatIgnoresItsInputDoesNotBreakCommunicate) {
    sp::Popen p({"/bin/sh", "-c", "exec 0<&-; echo done"}, {.stdin_ = sp::PIPE, .stdout_ = sp::PIPE});
    auto [out, err] = p.communicate(std::string(4 << 20, 'x'));
    EXPECT_EQ(out, "done\n");
    EXPECT_EQ(p.returncode(), 0);
}

TEST_F(SubprocessTest, WritingToAChildThatClosedStdinThrowsBrokenPipeWithoutSigpipe) {
    sp::Popen p({"/bin/true"}, {.stdin_ = sp::PIPE});
    p.wait();
    EXPECT_THROW(p.write(std::string(1 << 20, 'x')), mp::BrokenPipeError);  // we are still alive
}

TEST_F(SubprocessTest, AMissingProgramThrowsEnoent) {
    for (const char* program : {"mprocess-no-such-program", "/nonexistent/dir/program"}) {
        try {
            sp::Popen p({program});
            FAIL() << program << " started";
        } catch (const sp::ExecError& e) {
            EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory) << e.what();
            EXPECT_EQ(e.filename(), program);
            EXPECT_NE(std::string(e.what()).find(program), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(sp::Popen({"mprocess-no-such-program"}), mp::OSError);
}

TEST_F(SubprocessTest, ANonExecutableFileThrowsEacces) {
    const auto script = dir() / "script.sh";
    std::ofstream(script) << "#!/bin/sh\necho should not run\n";
    fs::permissions(script, fs::perms::owner_read | fs::perms::owner_write);
    try {
        sp::Popen p({script.string()});
        FAIL() << "a non-executable file started";
    } catch (const sp::ExecError& e) {
        EXPECT_EQ(e.code(), std::errc::permission_denied) << e.what();
    }
    // Without path search a bare name is relative to the cwd, as execv().
    try {
        sp::Popen p({"script.sh"}, {.cwd = dir(), .path_search = false});
        FAIL() << "a non-executable file started";
    } catch (const sp::ExecError& e) {
        EXPECT_EQ(e.code(), std::errc::permission_denied) << e.what();
    }
}

TEST_F(SubprocessTest, WaitTimesOutThenKillReapsWithMinusNine) {
    sp::Popen p({"sleep", "10"});
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(p.wait(0.2), sp::TimeoutExpired);
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, 200ms);
    EXPECT_LT(took, 5s);
    EXPECT_THROW(p.wait(0.01), mp::TimeoutError);  // the library-wide base, as Python's TimeoutExpired
    EXPECT_EQ(p.poll(), std::nullopt);
    EXPECT_EQ(p.returncode(), std::nullopt);
    p.kill();
    EXPECT_EQ(p.wait(), -9);
    EXPECT_EQ(p.returncode(), -SIGKILL);
    EXPECT_NO_THROW(p.kill());  // the child is reaped: nothing to signal, and no stranger either
}

TEST_F(SubprocessTest, CommunicateTimeoutCarriesThePartialOutputAndCanBeResumed) {
    sp::Popen p({"/bin/sh", "-c", "echo partial; echo warn >&2; exec sleep 10"},
                {.stdout_ = sp::PIPE, .stderr_ = sp::PIPE});
    try {
        p.communicate(std::nullopt, 0.2);
        FAIL() << "communicate did not time out";
    } catch (const sp::TimeoutExpired& e) {
        EXPECT_EQ(e.stdout_(), "partial\n");
        EXPECT_EQ(e.output(), "partial\n");
        EXPECT_EQ(e.stderr_(), "warn\n");
        EXPECT_EQ(e.timeout().duration(), 200ms);
        EXPECT_NE(std::string(e.what()).find("timed out after 0.2 seconds"), std::string::npos) << e.what();
    }
    p.kill();
    auto [out, err] = p.communicate();
    EXPECT_EQ(out, "partial\n");
    EXPECT_EQ(err, "warn\n");
    EXPECT_EQ(p.returncode(), -9);
    EXPECT_EQ(p.wait(), -9);
}

TEST_F(SubprocessTest, ReturnCodesAreExitStatusesOrMinusTheSignal) {
    sp::Popen three({"/bin/sh", "-c", "exit 3"});
    EXPECT_EQ(three.wait(), 3);
    sp::Popen term({"sleep", "10"});
    term.terminate();
    EXPECT_EQ(term.wait(), -SIGTERM);
    sp::Popen self_killed({"/bin/sh", "-c", "kill -9 $$"});
    EXPECT_EQ(self_killed.wait(), -9);
    sp::Popen sig({"sleep", "10"});
    sig.send_signal(SIGINT);
    EXPECT_EQ(sig.wait(10), -SIGINT);
}

TEST_F(SubprocessTest, PollReportsTheEndWithoutBlocking) {
    sp::Popen p({"/bin/sh", "-c", "read line; exit 4"}, {.stdin_ = sp::PIPE});
    EXPECT_EQ(p.poll(), std::nullopt);
    p.close_stdin();
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!p.poll() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    EXPECT_EQ(p.poll(), 4);
    EXPECT_EQ(p.wait(), 4);
}

TEST_F(SubprocessTest, RunCapturesOutputAndChecksTheReturnCode) {
    auto r = sp::run({"/bin/sh", "-c", "cat; echo err >&2; exit 2"}, {.input = "in\n", .capture_output = true});
    EXPECT_EQ(r.returncode, 2);
    EXPECT_EQ(r.stdout_, "in\n");
    EXPECT_EQ(r.stderr_, "err\n");
    EXPECT_EQ(r.args[0], "/bin/sh");
    EXPECT_THROW(r.check_returncode(), sp::CalledProcessError);

    try {
        sp::run({"/bin/sh", "-c", "echo out; exit 3"}, {.capture_output = true, .check = true});
        FAIL() << "no CalledProcessError";
    } catch (const sp::CalledProcessError& e) {
        EXPECT_EQ(e.returncode(), 3);
        EXPECT_EQ(e.output(), "out\n");
        EXPECT_EQ(e.cmd(), (std::vector<std::string>{"/bin/sh", "-c", "echo out; exit 3"}));
        EXPECT_NE(std::string(e.what()).find("returned non-zero exit status 3"), std::string::npos) << e.what();
    }
    EXPECT_EQ(sp::run({"/bin/true"}, {.check = true}).returncode, 0);
}

TEST_F(SubprocessTest, RunKillsTheChildWhenItTimesOut) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
        sp::run({"/bin/sh", "-c", "echo started; exec sleep 10"}, {.capture_output = true, .timeout = 0.3});
        FAIL() << "no TimeoutExpired";
    } catch (const sp::TimeoutExpired& e) {
        EXPECT_EQ(e.stdout_(), "started\n");
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);  // killed, not waited for
}

TEST_F(SubprocessTest, CheckOutputReturnsStdoutOrThrows) {
    EXPECT_EQ(sp::check_output({"/bin/echo", "-n", "exact"}), "exact");
    EXPECT_EQ(sp::check_output({"cat"}, {.input = "piped"}), "piped");
    EXPECT_THROW(sp::check_output({"/bin/false"}), sp::CalledProcessError);
    EXPECT_THROW(sp::check_output({"/bin/echo"}, {.stdout_ = sp::DEVNULL}), mp::ValueError);
}

TEST_F(SubprocessTest, BadOptionsAreRejectedBeforeAnythingStarts) {
    EXPECT_THROW(sp::Popen({}), mp::ValueError);
    EXPECT_THROW(sp::Popen({"cat"}, {.stdin_ = sp::STDOUT}), mp::ValueError);
    EXPECT_THROW(sp::Popen({"cat"}, {.stdout_ = sp::STDOUT}), mp::ValueError);
    EXPECT_THROW(sp::Popen({"cat"}, {.env = sp::Environment{{"A=B", "c"}}}), mp::ValueError);
    EXPECT_THROW(sp::Popen({"cat"}, {.stdin_ = sp::Redirect::fd(987654)}), mp::OSError);
    sp::Popen no_pipe({"/bin/true"});
    EXPECT_THROW(no_pipe.write("x"), mp::ValueError);
    EXPECT_THROW(no_pipe.communicate("input"), mp::ValueError);
    EXPECT_EQ(no_pipe.wait(), 0);
}

TEST_F(SubprocessTest, TheChildInheritsNoDescriptorButItsStdio) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);  // inheritable on purpose: no O_CLOEXEC
    const std::string probe = "for fd in " + std::to_string(fds[0]) + " " + std::to_string(fds[1]) +
                              "; do if test -e /proc/self/fd/$fd; then echo leaked $fd; fi; done; echo checked";
    ASSERT_TRUE(fs::exists("/proc/self/fd/" + std::to_string(fds[0])));  // the probe would see it
    EXPECT_EQ(sp::check_output({"/bin/sh", "-c", probe}), "checked\n");
    // Only 0, 1 and 2 (and ls's own directory stream) are open in the child.
    const auto listing = sp::check_output({"/bin/sh", "-c", "exec ls /proc/self/fd"}, {.stdin_ = sp::DEVNULL});
    EXPECT_EQ(listing, "0\n1\n2\n3\n");
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST_F(SubprocessTest, ManyPopensLeaveNoDescriptorOpen) {
    const int before = open_fd_count();
    for (int i = 0; i < 40; ++i) {
        sp::Popen p({"cat"}, {.stdin_ = sp::PIPE, .stdout_ = sp::PIPE, .stderr_ = sp::PIPE});
        auto [out, err] = p.communicate("x");
        EXPECT_EQ(out, "x");
        EXPECT_THROW(sp::Popen({"mprocess-no-such-program"}, {.stdin_ = sp::PIPE, .stdout_ = sp::PIPE}), sp::ExecError);
        sp::Popen q({"sleep", "10"}, {.stdout_ = sp::PIPE, .stderr_ = sp::DEVNULL});
        EXPECT_THROW(q.communicate(std::nullopt, 0.001), sp::TimeoutExpired);
        q.kill();
    }
    EXPECT_EQ(open_fd_count(), before);
}

TEST_F(SubprocessTest, DestroyingAPopenClosesItsPipesAndReapsTheChild) {
    pid_t pid = 0;
    {
        sp::Popen p({"cat"}, {.stdin_ = sp::PIPE, .stdout_ = sp::PIPE});
        pid = p.pid();
        p.write("unread");
    }  // cat sees end of file (or a broken pipe) and ends; the destructor reaps it
    EXPECT_TRUE(::kill(pid, 0) != 0 && errno == ESRCH);

    sp::Popen a({"/bin/true"});
    sp::Popen b({"/bin/sh", "-c", "exit 5"});
    const pid_t first = a.pid();
    a = std::move(b);  // the replaced child is reaped too
    EXPECT_TRUE(::kill(first, 0) != 0 && errno == ESRCH);
    EXPECT_EQ(a.wait(), 5);
    EXPECT_THROW(b.pid(), mp::ValueError);  // NOLINT(bugprone-use-after-move): that is the point
}

// The launcher under Popen, which the spawn and forkserver start methods use too: what Popen does
// not show, tested directly.
namespace {

namespace pf = mprocess::platform;

// Runs `command` with /bin/sh as the plan says, stdout into a pipe: its output and return code.
std::pair<std::string, int> launch_sh(pf::ExecPlan plan, const std::string& command) {
    plan.argv = {"sh", "-c", command};
    plan.candidates = {"/bin/sh"};
    auto [out, out_w] = pf::make_pipe();
    plan.stdio[1] = out_w.get();
    auto started = pf::fork_exec(plan);
    out_w.reset();
    if (started.failure) return {"exec failed: " + std::string(std::strerror(started.failure->error)), -1};
    std::string output;
    char buf[256];
    for (long n; (n = pf::read_some(out.get(), buf, sizeof buf)) > 0;) output.append(buf, static_cast<std::size_t>(n));
    return {output, pf::reap(started.pid, true).value_or(-1000)};
}

}  // namespace

TEST_F(SubprocessTest, TheLauncherKeepsOpenTheKeptDescriptorsOnly) {
    auto [kept, other_end] = pf::make_pipe();        // close-on-exec: keeping it must clear that
    const int inheritable = ::dup(other_end.get());  // no close-on-exec: the launcher must mark it
    ASSERT_GE(inheritable, 0);
    pf::ExecPlan plan;
    plan.keep_fds = {kept.get()};
    const std::string k = std::to_string(kept.get()), i = std::to_string(inheritable);
    const auto [output, code] =
        launch_sh(plan, "for fd in " + k + " " + i + "; do if test -e /proc/self/fd/$fd; then echo open $fd; fi; done");
    EXPECT_EQ(output, "open " + k + "\n");
    EXPECT_EQ(code, 0);
    EXPECT_NE(::fcntl(kept.get(), F_GETFD) & FD_CLOEXEC, 0) << "the child's flag is its own";
    ::close(inheritable);
}

TEST_F(SubprocessTest, TheLauncherPassesOurEnvironmentWithoutAPrefixAndWithAdditions) {
    ::setenv("MPROCESS_LAUNCHER_TEST", "dropped", 1);
    ::setenv("LAUNCHER_TEST_KEPT", "kept", 1);
    pf::ExecPlan plan;
    plan.env = pf::environment_without("MPROCESS_");
    plan.env->push_back("MPROCESS_ADDED=added");
    const auto [output, code] =
        launch_sh(plan, "echo ${MPROCESS_LAUNCHER_TEST-none} $LAUNCHER_TEST_KEPT $MPROCESS_ADDED");
    EXPECT_EQ(output, "none kept added\n");
    EXPECT_EQ(code, 0);
    ::unsetenv("MPROCESS_LAUNCHER_TEST");
    ::unsetenv("LAUNCHER_TEST_KEPT");
}

TEST_F(SubprocessTest, TheLauncherReportsAMissingProgramAsTheExecStepAndEnoent) {
    pf::ExecPlan plan;
    plan.argv = {"program"};
    plan.candidates = {"/nonexistent/dir/program"};
    const auto started = pf::fork_exec(plan);
    ASSERT_TRUE(started.failure);
    EXPECT_EQ(started.failure->step, pf::ExecFailure::exec);
    EXPECT_EQ(started.failure->error, ENOENT);
    EXPECT_EQ(started.pid, 0);
    EXPECT_FALSE(started.pidfd.valid());
}  // the fixture checks that the failed child was reaped
