// SPDX-License-Identifier: Apache-2.0
// Pool: a map of a million trivial tasks, the apply_async round trip, and a CPU-bound map on two
// workers next to the same work in one process. The pool is made before the timing starts, as the
// Python side's is.
#include <atomic>
#include <cstdint>
#include <memory>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

namespace {

int square(int x) {
    return x * x;
}

bool is_prime(unsigned n) {
    if (n < 2) return false;
    if (n % 2 == 0) return n == 2;
    for (unsigned d = 3; d * d <= n; d += 2)
        if (n % d == 0) return false;
    return true;
}

long count_primes(std::pair<unsigned, unsigned> range) {
    long count = 0;
    for (unsigned n = range.first; n < range.second; ++n) count += is_prime(n);
    return count;
}

mp::Pool& pool2() {
    static mp::Pool pool(2);
    return pool;
}

constexpr int kMapItems = 1'000'000;

void BM_PoolMapTrivial(benchmark::State& state) {
    std::vector<int> in(kMapItems);
    std::iota(in.begin(), in.end(), 0);
    for (auto _ : state) {
        auto out = pool2().map(square, in);
        if (out.size() != in.size() || out[999] != 999 * 999 || out.back() != square(kMapItems - 1)) {
            state.SkipWithError("wrong results");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations() * kMapItems);
}
BENCHMARK(BM_PoolMapTrivial)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);

// The same map in this process, with no pool: what the work itself costs.
void BM_RawMapTrivial(benchmark::State& state) {
    std::vector<int> in(kMapItems);
    std::iota(in.begin(), in.end(), 0);
    for (auto _ : state) {
        std::vector<int> out(in.size());
        for (std::size_t i = 0; i < in.size(); ++i) out[i] = square(in[i]);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * kMapItems);
}
BENCHMARK(BM_RawMapTrivial)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);

void BM_PoolApplyRoundTrip(benchmark::State& state) {
    int i = 0;
    for (auto _ : state) {
        if (pool2().apply_async(square, i).get() != i * i) {
            state.SkipWithError("wrong result");
            break;
        }
        i = (i + 1) & 0xffff;
    }
}
BENCHMARK(BM_PoolApplyRoundTrip)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(1.0);

// Primes below 5,000,000 in 16 ranges, as the Python workload splits its own.
constexpr unsigned kPrimesBelow = 5'000'000;
constexpr long kPrimeCount = 348'513;
std::vector<std::pair<unsigned, unsigned>> prime_ranges() {
    std::vector<std::pair<unsigned, unsigned>> r;
    for (unsigned i = 0; i < 16; ++i) r.emplace_back(kPrimesBelow / 16 * i, kPrimesBelow / 16 * (i + 1));
    return r;
}

void BM_PoolPrimes(benchmark::State& state) {
    const auto ranges = prime_ranges();
    for (auto _ : state) {
        auto counts = pool2().map(count_primes, ranges, 1);
        if (std::accumulate(counts.begin(), counts.end(), 0L) != kPrimeCount) {
            state.SkipWithError("wrong prime count");
            break;
        }
    }
}
BENCHMARK(BM_PoolPrimes)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(4);

void BM_SequentialPrimes(benchmark::State& state) {
    const auto ranges = prime_ranges();
    for (auto _ : state) {
        long total = 0;
        for (const auto& r : ranges) total += count_primes(r);
        if (total != kPrimeCount) {
            state.SkipWithError("wrong prime count");
            break;
        }
    }
}
BENCHMARK(BM_SequentialPrimes)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(4);

// The machine's limit for this work: two threads of this process taking the ranges in turn.
void BM_ThreadsPrimes(benchmark::State& state) {
    const auto ranges = prime_ranges();
    for (auto _ : state) {
        std::atomic<std::size_t> next{0};
        std::atomic<long> total{0};
        auto work = [&] {
            for (std::size_t i; (i = next.fetch_add(1)) < ranges.size();) total += count_primes(ranges[i]);
        };
        std::thread other(work);
        work();
        other.join();
        if (total != kPrimeCount) {
            state.SkipWithError("wrong prime count");
            break;
        }
    }
}
BENCHMARK(BM_ThreadsPrimes)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(4);

}  // namespace

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);  // spawn and forkserver workers start here
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
