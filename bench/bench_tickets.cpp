// SPDX-License-Identifier: Apache-2.0
// The tickets app end to end: one dispatcher (2 worker processes) on 127.0.0.1 and 4 controllers,
// each sending kPerController numbers on its standard input; tickets per second over all four,
// from the controllers' start to the last one's exit. Every controller must report all its
// tickets answered.
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <regex>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <mprocess/mprocess.hpp>

namespace sp = mprocess::subprocess;

namespace {

constexpr int kControllers = 4;
constexpr int kPerController = 2000;

void BM_Tickets4Controllers(benchmark::State& state) {
    const std::string bin = TICKETS_BIN;
    ::setenv("TICKETS_AUTHKEY", "bench", 1);
    sp::Popen dispatcher({bin, "dispatcher", "--listen", "127.0.0.1:0", "--workers", "2", "--quiet"},
                         {.stdout_ = sp::PIPE});
    std::smatch m;
    const std::string line = dispatcher.readline();
    if (!std::regex_search(line, m, std::regex("serving on (\\S+)"))) {
        state.SkipWithError("the dispatcher did not start");
        return;
    }
    const std::string address = m[1];
    std::string input;
    for (int i = 0; i < kPerController; ++i) input += std::to_string(i - kPerController / 2) + "\n";
    const std::string done = "summary: " + std::to_string(kPerController) + " tickets, " +
                             std::to_string(kPerController) + " answered, 0 failed";
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<sp::Popen> controllers;
        for (int c = 0; c < kControllers; ++c) {
            controllers.emplace_back(std::vector<std::string>{bin, "controller", "--connect", address, "--quiet"},
                                     sp::PopenOptions{.stdin_ = sp::PIPE, .stdout_ = sp::PIPE});
            controllers.back().write(input);  // fits the pipe: all four start at once
            controllers.back().close_stdin();
        }
        bool ok = true;
        for (auto& c : controllers) ok = c.communicate().stdout_.find(done) != std::string::npos && ok;
        state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        if (!ok) {
            state.SkipWithError("a controller did not get every answer");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations() * kControllers * kPerController);
    dispatcher.send_signal(SIGINT);
    dispatcher.wait();
}
BENCHMARK(BM_Tickets4Controllers)->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
