// SPDX-License-Identifier: Apache-2.0
// What the benchmark binaries share: the batch and its check, and a watchdog that turns a hang
// into an error message instead of a stuck compare.py.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <string>

#include <signal.h>
#include <unistd.h>

#include "mprocess/mprocess.hpp"

namespace bench {

namespace mp = mprocess;

// Messages per timed iteration of the throughput benchmarks. compare.py uses the same batch for
// Python, so that the one reply per batch weighs the same on both sides.
inline constexpr std::int64_t kBatch = 16384;
inline constexpr std::int64_t kStop = -1;         // sentinel: no benchmark sends a negative number otherwise
inline constexpr double kMinTime = 0.5;           // seconds per benchmark: keeps the whole binary well under 30 s
inline constexpr double kReapGrace = 5.0;         // seconds a child gets to end by itself before SIGKILL
inline constexpr unsigned kWatchdogSeconds = 20;  // one run takes about a second; far longer means a hang

// What a throughput consumer saw in one batch; the parent compares it with what it sent.
struct Tally {
    std::int64_t count = 0;
    std::int64_t sum = 0;
    std::int64_t out_of_order = 0;  // items that were not the next sequence number
};

constexpr std::int64_t sequence_sum(std::int64_t first, std::int64_t n) {
    return n * first + n * (n - 1) / 2;
}

// Counts one item of a throughput stream; sends the tally back after every `batch` items.
template <class Reply>
void tally(Tally& t, std::int64_t& expected, std::int64_t v, Reply reply, std::int64_t batch = kBatch) {
    if (v != expected) ++t.out_of_order;
    expected = v + 1;
    ++t.count;
    t.sum += v;
    if (t.count == batch) {
        reply(t);
        t = Tally{};
    }
}

// Empty if the tally is that of `n` items numbered from `first`, in order; else what is wrong.
inline std::string check_tally(const Tally& t, std::int64_t first, std::int64_t n = kBatch) {
    if (t.count == n && t.sum == sequence_sum(first, n) && t.out_of_order == 0) return {};
    return "consumer saw count=" + std::to_string(t.count) + " sum=" + std::to_string(t.sum) +
           " out_of_order=" + std::to_string(t.out_of_order) + ", expected count=" + std::to_string(n) +
           " sum=" + std::to_string(sequence_sum(first, n));
}

// A send() or recv() that never returns (a lost wake-up in the transport, a dead peer not
// noticed) would hang the benchmark, and compare.py with it. The watchdog turns that into a
// message and a failed exit instead; our children then see us gone (EOF) and end too.
inline const char* volatile g_running = "";

extern "C" inline void on_watchdog(int) {
    const char* name = g_running;
    constexpr char head[] = "benchmark watchdog: no progress, aborting in ";
    constexpr char tail[] = " (a hang in the library?)\n";
    [[maybe_unused]] auto r = ::write(STDERR_FILENO, head, sizeof head - 1);
    r = ::write(STDERR_FILENO, name, std::strlen(name));
    r = ::write(STDERR_FILENO, tail, sizeof tail - 1);
    ::_exit(124);
}

class Watchdog {
public:
    explicit Watchdog(const char* name) {
        g_running = name;
        ::alarm(kWatchdogSeconds);
    }
    ~Watchdog() { ::alarm(0); }
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;
};

// Runs one benchmark body under the watchdog, turning any exception into a reported error
// instead of terminating the whole binary (Google Benchmark does not catch).
template <class Fn>
void guarded(benchmark::State& state, const char* name, Fn fn) {
    Watchdog watchdog(name);
    try {
        fn();
    } catch (const std::exception& e) {
        state.SkipWithError(e.what());
    } catch (const mp::SystemExit&) {
        state.SkipWithError("mprocess::SystemExit escaped into the benchmark");
    }
}

// Installs the watchdog's handler and runs the benchmarks: the body of every binary's main().
inline int run_benchmarks(int argc, char** argv) {
    struct sigaction sa {};
    sa.sa_handler = on_watchdog;
    ::sigaction(SIGALRM, &sa, nullptr);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

}  // namespace bench
