// SPDX-License-Identifier: Apache-2.0
// mpi::Pool next to the local Pool, in the same run: the per-task overhead (an apply_async round
// trip of a trivial task) and a 100,000-task map (chunksize 1), with 2 workers each.
//     mpirun --allow-run-as-root --oversubscribe -np 3 bench_mpi
#include <numeric>
#include <vector>

#include <benchmark/benchmark.h>
#include <mprocess/mpi.hpp>

namespace mp = mprocess;

namespace {

long twice(long x) {
    return 2 * x;
}

constexpr unsigned kWorkers = 2;
constexpr std::size_t kTasks = 100'000;

template <class P>
void apply_round_trip(benchmark::State& state, P& pool) {
    long v = 0;
    for (auto _ : state) v = pool.apply_async(twice, v & 1023).get();
    benchmark::DoNotOptimize(v);
}

template <class P>
void map_tasks(benchmark::State& state, P& pool) {
    std::vector<long> xs(kTasks);
    std::iota(xs.begin(), xs.end(), 0);
    for (auto _ : state) {
        auto r = pool.map(twice, xs, 1);
        if (r.back() != 2 * static_cast<long>(kTasks - 1)) state.SkipWithError("a wrong result");
    }
    state.SetItemsProcessed(state.iterations() * static_cast<long>(kTasks));
}

void BM_MpiApply(benchmark::State& state) {
    mp::mpi::Pool pool(kWorkers);
    apply_round_trip(state, pool);
}
void BM_LocalApply(benchmark::State& state) {
    mp::Pool pool(kWorkers);
    apply_round_trip(state, pool);
}
void BM_MpiMap100k(benchmark::State& state) {
    mp::mpi::Pool pool(kWorkers);
    map_tasks(state, pool);
}
void BM_LocalMap100k(benchmark::State& state) {
    mp::Pool pool(kWorkers);
    map_tasks(state, pool);
}
BENCHMARK(BM_MpiApply)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(1.0);
BENCHMARK(BM_LocalApply)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(1.0);
BENCHMARK(BM_MpiMap100k)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_LocalMap100k)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

int main(int argc, char** argv) {
    mp::mpi::freeze_support(argc, argv);  // the worker ranks serve from here
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
