// SPDX-License-Identifier: Apache-2.0
// A Pool that copes with bad tasks, as Python's cannot: a task that runs too long is stopped, a
// task whose worker crashes runs again, a task that takes too much memory is stopped before the
// machine suffers, and at any moment the pool tells what each worker is doing.
//
//     pool_robust [METHOD]      fork (default), spawn or forkserver
#include <mprocess/mprocess.hpp>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace mp = mprocess;
using Clock = std::chrono::steady_clock;

namespace {

int sleepy(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
}

// Crashes the first time (no marker file yet), answers the second.
int crash_once(std::string marker) {
    if (!std::filesystem::exists(marker)) {
        std::ofstream(marker).put('x');
        ::raise(SIGSEGV);
    }
    return 42;
}

// Takes `mb` MiB, then works with them for a minute.
int hog(int mb) {
    std::vector<char> block(static_cast<std::size_t>(mb) << 20, 1);
    std::this_thread::sleep_for(std::chrono::minutes(1));
    return block[0];
}

int square(int x) {
    return x * x;
}

double since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    if (argc > 1) mp::set_start_method(argv[1], true);
    constexpr int kLimitMiB = 200;
    mp::Pool pool(2, {.max_memory_per_child = std::uint64_t{kLimitMiB} << 20});

    std::printf("1. a task that runs too long, with a timeout of 0.5 s\n");
    auto t0 = Clock::now();
    try {
        pool.apply_async(mp::TaskOptions{.timeout = 0.5}, sleepy, 60'000).get();
    } catch (const mp::TaskTimeout& e) {
        std::printf("   TaskTimeout %.0f ms past the deadline: %s\n", (since(t0) - 0.5) * 1000, e.what());
    }

    std::printf("2. a task whose worker crashes once, with one retry\n");
    const auto marker = std::filesystem::temp_directory_path() / ("pool_robust-" + std::to_string(::getpid()));
    const int answer = pool.apply_async(mp::TaskOptions{.retries = 1}, crash_once, marker.string()).get();
    std::filesystem::remove(marker);
    std::printf("   answer %d, from the second attempt\n", answer);

    std::printf("3. a task that takes 400 MiB under a limit of %d MiB per worker\n", kLimitMiB);
    t0 = Clock::now();
    try {
        pool.apply(hog, 400);
    } catch (const mp::WorkerLost& e) {
        const double over = static_cast<double>(e.report().peak_rss) / (1 << 20) - kLimitMiB;
        std::printf("   WorkerLost after %.0f ms, %.0f MiB past the limit when stopped: %s\n", since(t0) * 1000, over,
                    e.what());
    }

    std::printf("4. what the workers are doing\n");
    auto a = pool.apply_async(sleepy, 300);
    auto b = pool.map_async(sleepy, std::vector<int>{300}, 1);
    auto ws = pool.workers();
    for (t0 = Clock::now(); since(t0) < 30; ws = pool.workers()) {  // until both have taken theirs
        if (ws[0].task && ws[1].task) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    for (const auto& w : ws)
        std::printf("   %s (pid %d): %s for %.1f s, %.1f MiB\n", w.name.c_str(), static_cast<int>(w.pid),
                    w.task.value_or("idle").c_str(), w.running_for, static_cast<double>(w.rss) / (1 << 20));
    a.get();
    b.get();
    std::printf("and the pool goes on: 7 * 7 = %d\n", pool.apply(square, 7));
    return 0;
}
