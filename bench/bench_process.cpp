// SPDX-License-Identifier: Apache-2.0
// Process start+join latency per start method, next to the raw system calls they are built on.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>
#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

extern char** environ;

namespace {

void noop() {}

void BM_ProcessStartJoin(benchmark::State& state, const char* method) {
    auto ctx = mp::get_context(method);
    for (auto _ : state) {
        auto p = ctx.Process(noop);
        p.start();
        p.join();
        if (p.exitcode() != 0) {
            state.SkipWithError("child failed");
            break;
        }
    }
}
BENCHMARK_CAPTURE(BM_ProcessStartJoin, fork, "fork")->UseRealTime()->MinTime(0.5);
BENCHMARK_CAPTURE(BM_ProcessStartJoin, spawn, "spawn")->UseRealTime()->MinTime(1.0);
BENCHMARK_CAPTURE(BM_ProcessStartJoin, forkserver, "forkserver")->UseRealTime()->MinTime(0.5);

// The floor for fork: fork, _exit, waitpid.
void BM_RawForkWaitpid(benchmark::State& state) {
    for (auto _ : state) {
        pid_t pid = ::fork();
        if (pid == 0) ::_exit(0);
        int status = 0;
        ::waitpid(pid, &status, 0);
    }
}
BENCHMARK(BM_RawForkWaitpid)->UseRealTime()->MinTime(0.5);

// The floor for starting a fresh program: posix_spawn of /bin/true and waitpid.
void BM_RawPosixSpawnTrue(benchmark::State& state) {
    char arg0[] = "true";
    char* argv[] = {arg0, nullptr};
    for (auto _ : state) {
        pid_t pid = 0;
        if (::posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0) {
            state.SkipWithError("posix_spawn failed");
            break;
        }
        int status = 0;
        ::waitpid(pid, &status, 0);
    }
}
BENCHMARK(BM_RawPosixSpawnTrue)->UseRealTime()->MinTime(0.5);

}  // namespace

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);  // spawn and forkserver children start here
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
