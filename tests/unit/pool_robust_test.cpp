// SPDX-License-Identifier: Apache-2.0
// A Pool that stops tasks (timeouts, cancelling a running task, retries after a lost worker, a
// memory limit), says what a lost worker's error tells and what each worker does, and sizes and
// places its workers by the CPUs it may use. Under every start method.
#include <mprocess/executor.hpp>
#include <mprocess/pool.hpp>
#include <mprocess/process.hpp>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <optional>
#include <ranges>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "helpers/children.hpp"
#include "helpers/files.hpp"

using namespace testing_support;  // the scratch files that workers leave

namespace {

class PoolRobust : public testing_support::MethodTest {};

int square(int x) {
    return x * x;
}
int nap(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
}
// Leaves one file in dir per attempt, named after its worker; attempt k (from 1) dies by SIGKILL
// while k <= deaths, and returns k after.
int die_first(std::string dir, int deaths) {
    const auto attempt = static_cast<int>(files_in(dir)) + 1;
    std::ofstream(dir + "/" + std::to_string(::getpid()));
    if (attempt <= deaths) ::raise(SIGKILL);
    return attempt;
}
// The first attempt sleeps a minute, the next ones answer at once.
int hang_first(std::string dir) {
    const bool first = files_in(dir) == 0;
    std::ofstream(dir + "/" + std::to_string(::getpid()));
    return first ? nap(60000) : 5;
}
// Counts its calls in dir, then throws: a task's own error, never retried.
int count_then_throw(std::string dir) {
    std::ofstream(dir + "/" + std::to_string(::getpid()) + "-" + std::to_string(files_in(dir)));
    throw std::runtime_error("the task's own failure");
}
int exit_with(int code) {
    std::_Exit(code);
}
// Waits until `pid` is gone (reaped by the pool): true, or false after 30 s.
bool ends(pid_t pid) {
    const auto t0 = std::chrono::steady_clock::now();
    while (::kill(pid, 0) == 0 || errno != ESRCH) {
        if (seconds_since(t0) > 30) return false;
        nap(5);
    }
    return true;
}
pid_t only_pid_in(const std::string& dir) {
    return std::stoi(std::filesystem::directory_iterator(dir)->path().filename().string());
}
// This process's resident memory in bytes.
long long resident(int) {
    long long size = 0, pages = 0;
    std::ifstream("/proc/self/statm") >> size >> pages;
    return pages * ::sysconf(_SC_PAGESIZE);
}
// Touches `mb` MiB and keeps them until the process ends; returns this worker's pid.
pid_t hold_memory(int mb) {
    static std::vector<std::vector<char>> kept;
    kept.emplace_back(static_cast<std::size_t>(mb) << 20, 'x');
    return ::getpid();
}
// Touches `mb` MiB, then leaves its mark and works for a minute.
int hog_then_sleep(int mb, std::string dir) {
    hold_memory(mb);
    return mark_then_sleep(dir);
}
int hog_then_die(int mb) {
    hold_memory(mb);
    ::raise(SIGKILL);
    return 0;
}
std::string omp_threads(int) {
    const char* v = std::getenv("OMP_NUM_THREADS");
    return v ? v : "";
}
// The CPUs this worker may run on.
std::vector<int> my_cpus(int) {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (::sched_getaffinity(0, sizeof set, &set) == 0)
        for (std::size_t c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) cpus.push_back(static_cast<int>(c));
    return cpus;
}
// Two lines to standard output, one to standard error, and a last one without its newline.
int chatter(int i) {
    std::printf("out %d\n", i);
    std::printf("more %d\n", i);
    std::fprintf(stderr, "err %d\n", i);
    return i;
}
int unfinished_line(int) {
    std::printf("no newline");
    return 0;
}
// Standard output or error sent to a file while it lives; what was written, once it ends.
class Captured {
public:
    explicit Captured(int fd) : fd_(fd), path_(scratch_dir() + "/captured") {
        std::fflush(nullptr);
        saved_ = ::dup(fd_);
        const int file = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ::dup2(file, fd_);
        ::close(file);
    }
    std::string end() {
        std::fflush(nullptr);
        ::dup2(saved_, fd_);
        ::close(saved_);
        std::ifstream in(path_);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }

private:
    int fd_, saved_;
    std::string path_;
};
bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}
std::string worker_prefix(mp::StartMethod m) {
    return m == mp::StartMethod::fork    ? "ForkPoolWorker-"
           : m == mp::StartMethod::spawn ? "SpawnPoolWorker-"
                                         : "ForkServerPoolWorker-";
}

}  // namespace

TEST_P(PoolRobust, ATaskPastItsTimeoutFailsItsWorkerIsReplacedAndTheOthersGoOn) {
    mp::Pool pool(2, {.start_method = method()});
    const std::string dir = scratch_dir();
    auto late = pool.apply_async(mp::TaskOptions{.timeout = 0.2}, mark_then_sleep, dir);
    auto other = pool.apply_async(nap, 300);
    try {
        late.get(30.0);
        FAIL() << "no TaskTimeout";
    } catch (const mp::TaskTimeout& e) {
        EXPECT_DOUBLE_EQ(e.seconds(), 0.2);
        EXPECT_EQ(e.report().pid, only_pid_in(dir));
        EXPECT_EQ(e.report().worker.rfind(worker_prefix(method()), 0), 0u) << e.what();
        EXPECT_TRUE(contains(e.what(), "ran past its timeout of 0.2 s")) << e.what();
        EXPECT_TRUE(contains(e.report().task, "task ")) << e.report().task;
    }
    EXPECT_THROW(late.get(), mp::TimeoutError);  // a TaskTimeout is a TimeoutError, and final
    EXPECT_TRUE(ends(only_pid_in(dir)));
    EXPECT_EQ(other.get(30.0), 300);
    EXPECT_EQ(pool.apply(square, 9), 81);  // the replacement works
    EXPECT_EQ(pool.pids().size(), 2u);
}

TEST_P(PoolRobust, ThePoolsTimeoutAppliesToEachItemOfAMapAndATaskMayLiftIt) {
    mp::Pool pool(2, {.start_method = method(), .task_timeout = 0.2});
    try {
        pool.map(nap, std::vector<int>{0, 0, 60000, 0});
        FAIL() << "no TaskTimeout";
    } catch (const mp::TaskTimeout& e) {
        EXPECT_EQ(e.report().task, "item 2 of map") << e.what();
    }
    // No limit for this one: it outlives the pool's timeout and answers.
    EXPECT_EQ(pool.apply_async(mp::TaskOptions{.timeout = mp::forever}, nap, 500).get(30.0), 500);
    EXPECT_EQ(pool.map(mp::TaskOptions{.timeout = 30.0}, square, std::vector<int>{1, 2, 3}),
              (std::vector<int>{1, 4, 9}));
}

TEST_P(PoolRobust, CancelTakesBackOnlyQueuedTasksUnlessToldToKillRunningOnes) {
    mp::Pool pool(1, {.start_method = method()});
    const std::string dir = scratch_dir();
    auto running = pool.apply_async(wait_for_gate, dir);
    auto queued = pool.apply_async(square, 4);
    wait_for_files(dir, 1);
    EXPECT_TRUE(queued.cancel());
    EXPECT_THROW(queued.get(), mp::CancelledError);
    EXPECT_FALSE(running.cancel());  // Python's meaning: a running task goes on
    std::ofstream(dir + "/open");
    EXPECT_EQ(running.get(30.0), 1);

    const std::string dir2 = scratch_dir();
    auto stopped = pool.apply_async(mark_then_sleep, dir2);
    wait_for_files(dir2, 1);
    const pid_t worker = only_pid_in(dir2);
    EXPECT_TRUE(stopped.cancel(mp::kill_running));
    EXPECT_THROW(stopped.get(1.0), mp::CancelledError);  // at once: it does not wait for the worker's end
    EXPECT_TRUE(ends(worker));
    EXPECT_TRUE(stopped.cancel(mp::kill_running));  // cancelled already: true, as Python's Future says
    auto done = pool.apply_async(square, 5);
    EXPECT_EQ(done.get(30.0), 25);
    EXPECT_FALSE(done.cancel(mp::kill_running));  // done: nothing to stop
}

TEST_P(PoolRobust, ATaskWhoseWorkerDiesRunsAgainInAFreshWorkerWhileItHasRetries) {
    mp::Pool pool(2, {.start_method = method()});
    const std::string once = scratch_dir();
    EXPECT_EQ(pool.apply_async(mp::TaskOptions{.retries = 1}, die_first, once, 1).get(30.0), 2);
    EXPECT_EQ(files_in(once), 2u);  // two attempts, two different workers (the first died)

    const std::string always = scratch_dir();
    try {
        pool.apply_async(mp::TaskOptions{.retries = 2}, die_first, always, 100).get(30.0);
        FAIL() << "no WorkerLost";
    } catch (const mp::WorkerLost& e) {
        EXPECT_EQ(e.report().earlier.size(), 2u);
        EXPECT_EQ(files_in(always), 3u);
        EXPECT_TRUE(contains(e.what(), "earlier attempts: 1) ")) << e.what();
        EXPECT_TRUE(contains(e.what(), "2) ")) << e.what();
    }

    // A task that threw has answered: it does not run again.
    const std::string thrown = scratch_dir();
    EXPECT_THROW(pool.apply_async(mp::TaskOptions{.retries = 3}, count_then_throw, thrown).get(30.0), mp::RemoteError);
    EXPECT_EQ(files_in(thrown), 1u);
}

TEST_P(PoolRobust, ATimedOutTaskWithRetriesRunsAgain) {
    mp::Pool pool(1, {.start_method = method(), .retries = 1});
    const std::string dir = scratch_dir();
    EXPECT_EQ(pool.apply_async(mp::TaskOptions{.timeout = 0.3}, hang_first, dir).get(30.0), 5);
    EXPECT_EQ(files_in(dir), 2u);
}

TEST_P(PoolRobust, ALostWorkersErrorSaysWhichTaskWhichWorkerAndWhy) {
    mp::Pool pool(2, {.start_method = method()});
    const std::string dir = scratch_dir();
    auto r = pool.map_async(mark_then_sleep, std::vector<std::string>{dir}, 1);
    wait_for_files(dir, 1);
    ASSERT_EQ(::kill(only_pid_in(dir), SIGKILL), 0);
    try {
        r.get(30.0);
        FAIL() << "no WorkerLost";
    } catch (const mp::WorkerLost& e) {
        EXPECT_EQ(e.reason(), mp::WorkerLost::Reason::signal);
        EXPECT_EQ(e.signal_name(), "SIGKILL");
        EXPECT_EQ(e.exitcode(), -SIGKILL);
        EXPECT_EQ(e.pid(), only_pid_in(dir));
        EXPECT_EQ(e.report().task, "item 0 of map");
        const std::string what = e.what();
        EXPECT_EQ(what.rfind("item 0 of map: worker " + worker_prefix(method()), 0), 0u) << what;
        EXPECT_TRUE(contains(what, "was killed by SIGKILL (not sent by the pool: likely the OOM killer")) << what;
    }
    try {
        pool.apply(exit_with, 3);
        FAIL() << "no WorkerLost";
    } catch (const mp::WorkerLost& e) {
        EXPECT_EQ(e.reason(), mp::WorkerLost::Reason::exit);
        EXPECT_EQ(e.exitcode(), 3);
        EXPECT_EQ(e.signal_name(), "");
        EXPECT_TRUE(contains(e.what(), "exited with code 3")) << e.what();
    }
}

TEST_P(PoolRobust, AnExecutorsTimeoutFailsTheFutureWithoutBreakingTheExecutor) {
    mp::ProcessPoolExecutor ex(2, {.start_method = method()});
    auto f = ex.submit(mp::TaskOptions{.timeout = 0.2}, nap, 60000);
    EXPECT_THROW(f.result(30.0), mp::TaskTimeout);
    EXPECT_EQ(ex.submit(square, 6).result(30.0), 36);
    const std::string dir = scratch_dir();
    auto running = ex.submit(mark_then_sleep, dir);
    wait_for_files(dir, 1);
    EXPECT_TRUE(running.cancel(mp::kill_running));
    EXPECT_TRUE(running.cancelled());
    EXPECT_THROW(running.result(), mp::CancelledError);
    EXPECT_EQ(ex.submit(square, 7).result(30.0), 49);
}

TEST_P(PoolRobust, AWorkerPastTheMemoryLimitIsStoppedDuringATaskAndRenewedAfterOne) {
    // The limit: what a worker holds after its start, plus 96 MiB (sanitizers make the first large).
    const auto base = mp::Pool(1, {.start_method = method()}).apply(resident, 0);
    const auto limit = static_cast<std::uint64_t>(base) + (std::uint64_t{96} << 20);
    mp::Pool pool(1, {.start_method = method(), .max_memory_per_child = limit});

    const std::string dir = scratch_dir();
    try {
        pool.apply_async(hog_then_sleep, 256, dir).get(30.0);  // touches 256 MiB, then sleeps
        FAIL() << "no WorkerLost";
    } catch (const mp::WorkerLost& e) {
        EXPECT_EQ(e.reason(), mp::WorkerLost::Reason::memory_limit);
        EXPECT_GT(e.report().peak_rss, limit);
        EXPECT_TRUE(contains(e.what(), "passed the pool's memory limit")) << e.what();
    }

    // A task that passes it and returns: caught while it runs, or just after (then its answer
    // stands); either way the worker takes no other task.
    pid_t first = 0;
    try {
        first = pool.apply(hold_memory, 128);
    } catch (const mp::WorkerLost& e) {
        EXPECT_EQ(e.reason(), mp::WorkerLost::Reason::memory_limit);
        first = e.pid();
    }
    const pid_t second = pool.apply(hold_memory, 0);
    EXPECT_NE(first, second);
    EXPECT_TRUE(ends(first));
    EXPECT_EQ(pool.apply(hold_memory, 0), second);  // under the limit: kept
}

TEST_P(PoolRobust, ALostWorkersErrorTellsItsPeakMemory) {
    mp::Pool pool(1, {.start_method = method()});
    try {
        pool.apply(hog_then_die, 64);
        FAIL() << "no WorkerLost";
    } catch (const mp::WorkerLost& e) {
        EXPECT_GE(e.report().peak_rss, std::uint64_t{64} << 20) << e.what();
        EXPECT_TRUE(contains(e.what(), "MiB")) << e.what();
    }
}

TEST_P(PoolRobust, WorkersTellsWhatEachRunsForHowLongAndItsMemory) {
    mp::Pool pool(2, {.start_method = method()});
    const std::string dir = scratch_dir();
    auto r = pool.map_async(wait_for_gate, std::vector<std::string>{dir}, 1);
    wait_for_files(dir, 1);
    const auto ws = pool.workers();
    ASSERT_EQ(ws.size(), 2u);
    const auto busy = std::find_if(ws.begin(), ws.end(), [](const mp::WorkerInfo& w) { return w.task.has_value(); });
    ASSERT_NE(busy, ws.end());
    EXPECT_EQ(*busy->task, "item 0 of map");
    EXPECT_EQ(busy->pid, only_pid_in(dir));
    EXPECT_EQ(busy->name.rfind(worker_prefix(method()), 0), 0u) << busy->name;
    EXPECT_GE(busy->running_for, 0.0);
    EXPECT_GT(busy->rss, 0u);
    const auto idle = busy == ws.begin() ? ws.begin() + 1 : ws.begin();
    EXPECT_FALSE(idle->task.has_value());
    EXPECT_GT(idle->pid, 0);
    std::vector<pid_t> pids{ws[0].pid, ws[1].pid};
    EXPECT_EQ(pids, pool.pids());
    std::ofstream(dir + "/open");
    EXPECT_EQ(r.get(30.0), std::vector<int>{1});
}

TEST_P(PoolRobust, WorkersAreSizedAndPlacedByTheCpusThisProcessMayUse) {
    EXPECT_EQ(mp::Pool(std::nullopt, {.start_method = method()}).processes(),
              static_cast<unsigned>(mp::process_cpu_count()));
    mp::Pool pool(2, {.start_method = method(), .threads_per_worker = 1, .pin_workers = true});
    EXPECT_EQ(pool.map(omp_threads, std::vector<int>{0, 1}, 1), (std::vector<std::string>{"1", "1"}));
    const auto mine = my_cpus(0);
    for (const auto& cpus : pool.map(my_cpus, std::vector<int>(8, 0), 1)) {
        ASSERT_EQ(cpus.size(), 1u);
        EXPECT_NE(std::find(mine.begin(), mine.end(), cpus[0]), mine.end());
    }
    if (mine.size() >= 2) {  // the two workers: the first two CPUs, one each
        std::vector<int> seen;
        for (const auto& w : pool.workers()) {
            std::ifstream stat("/proc/" + std::to_string(w.pid) + "/status");
            for (std::string line; std::getline(stat, line);)
                if (line.rfind("Cpus_allowed_list:", 0) == 0) seen.push_back(std::stoi(line.substr(18)));
        }
        std::sort(seen.begin(), seen.end());
        EXPECT_EQ(seen, (std::vector<int>{mine[0], mine[1]}));
    }
}

TEST_P(PoolRobust, AnExecutorsWorkersCanBeTerminatedOrKilledAtOnce) {
    for (bool kill : {false, true}) {
        mp::ProcessPoolExecutor ex(1, {.start_method = method()});
        const std::string dir = scratch_dir();
        auto running = ex.submit(mark_then_sleep, dir);
        auto queued = ex.submit(square, 2);
        wait_for_files(dir, 1);
        const pid_t worker = only_pid_in(dir);
        if (kill)
            ex.kill_workers();
        else
            ex.terminate_workers();
        EXPECT_TRUE(ends(worker));
        EXPECT_THROW(running.result(30.0), mp::Error);
        EXPECT_TRUE(queued.cancelled());
        EXPECT_THROW(queued.result(), mp::CancelledError);
        EXPECT_THROW(ex.submit(square, 3), mp::Error);  // as after shutdown()
    }
}

TEST_P(PoolRobust, MapsTakeAnyInputRangeAndImapReadsItAsResultsAreTaken) {
    mp::Pool pool(2, {.start_method = method()});
    EXPECT_EQ(pool.map(square, std::views::iota(0, 5)), (std::vector<int>{0, 1, 4, 9, 16}));
    std::vector<int> expected;
    for (int i = 0; i < 100; ++i) expected.push_back(i * i);
    std::vector<int> got;
    for (int r : pool.imap(square, std::views::iota(0, 100), 7)) got.push_back(r);
    EXPECT_EQ(got, expected);

    // A one-pass input (its iterator cannot be copied), unordered.
    std::istringstream numbers("1 2 3 4 5 6");
    std::vector<int> unordered;
    for (int r : pool.imap_unordered(square, std::views::istream<int>(numbers), 2)) unordered.push_back(r);
    std::sort(unordered.begin(), unordered.end());
    EXPECT_EQ(unordered, (std::vector<int>{1, 4, 9, 16, 25, 36}));

    // With a buffersize, the input is read as results are taken: never more than buffersize
    // tasks ahead, and a billion items are no obstacle to the first results.
    std::size_t read = 0;
    auto counted = std::views::iota(0, 1'000'000'000) | std::views::transform([&read](int i) {
                       ++read;
                       return i;
                   });
    auto it = pool.imap(square, counted, {.chunksize = 1, .buffersize = 3});
    EXPECT_EQ(read, 3u);  // the first tasks, handed over at once
    for (int i = 0; i < 20; ++i) {
        EXPECT_EQ(it.next(30.0), i * i);
        EXPECT_LE(read, static_cast<std::size_t>(i) + 4);
    }
    auto un = pool.imap_unordered(square, std::views::iota(0, 1'000'000'000), {.chunksize = 10, .buffersize = 2});
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(un.next(30.0).has_value());
    EXPECT_THROW(pool.imap(square, std::views::iota(0, 3), {.buffersize = 0}), mp::ValueError);

    mp::ProcessPoolExecutor ex(2, {.start_method = method()});
    std::vector<int> from_executor;
    for (int r : ex.map(square, std::views::iota(0, 6), {.buffersize = 2})) from_executor.push_back(r);
    EXPECT_EQ(from_executor, (std::vector<int>{0, 1, 4, 9, 16, 25}));
}

TEST_P(PoolRobust, AnImapItemPastItsTimeoutFailsInItsTurnAndTheRestFollow) {
    mp::Pool pool(2, {.start_method = method()});
    auto it = pool.imap(mp::TaskOptions{.timeout = 0.2}, nap, std::vector<int>{0, 60000, 5});
    EXPECT_EQ(it.next(30.0), 0);
    EXPECT_THROW(it.next(30.0), mp::TaskTimeout);
    EXPECT_EQ(it.next(30.0), 5);
    EXPECT_EQ(it.next(30.0), std::nullopt);
}

TEST_P(PoolRobust, TaggedOutputPrefixesEachWholeLineWithItsWorker) {
    // A forkserver's workers write to the streams the server inherited when it started (as Python's
    // do), which an earlier test may have started: this process's redirection below cannot reach them.
    if (method() == mp::StartMethod::forkserver) GTEST_SKIP() << "forkserver workers write to the server's streams";
    Captured out(1), err(2);
    {
        mp::Pool pool(2, {.start_method = method(), .tag_output = true});
        std::vector<int> xs(20);
        std::iota(xs.begin(), xs.end(), 0);
        pool.map(chatter, xs, 1);
        pool.apply(unfinished_line, 0);
        pool.close();
        pool.join();  // the workers end, and pass on what they have
    }
    const std::string o = out.end(), e = err.end();
    const std::regex line("\\[" + worker_prefix(method()) + "[0-9]+\\] (out|more|err) [0-9]+|\\[" +
                          worker_prefix(method()) + "[0-9]+\\] no newline");
    std::istringstream os(o), es(e);
    std::size_t outs = 0, errs = 0;
    for (std::string l; std::getline(os, l); ++outs) EXPECT_TRUE(std::regex_match(l, line)) << l;
    for (std::string l; std::getline(es, l); ++errs) EXPECT_TRUE(std::regex_match(l, line)) << l;
    EXPECT_EQ(outs, 41u) << o;  // 2 lines x 20 items, and the unfinished one
    EXPECT_EQ(errs, 20u) << e;
    for (int i = 0; i < 20; ++i) EXPECT_TRUE(contains(o, "] out " + std::to_string(i) + "\n")) << i;
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, PoolRobust, testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });
