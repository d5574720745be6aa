// SPDX-License-Identifier: Apache-2.0
// Locks and shared values: uncontended Lock, a Value counter contended by two processes, Value
// reads and writes; beside the cost of the bare atomic operations, for bench/compare.py.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "bench_common.hpp"
#include "mprocess/mprocess.hpp"

namespace mp = mprocess;

namespace {

using namespace bench;

constexpr long kIncrements = 200'000;  // per process and timed iteration

// Python's `l.acquire(); l.release()`.
void BM_LockUncontended(benchmark::State& state) {
    mp::Lock l;
    for (auto _ : state) {
        l.acquire();
        l.release();
    }
    state.SetItemsProcessed(state.iterations());
}

// The floor: the compare-and-swap and the exchange any owner-recording lock needs.
void BM_RawAtomicPair(benchmark::State& state) {
    std::atomic<std::uint32_t> word{0};
    for (auto _ : state) {
        std::uint32_t expected = 0;
        word.compare_exchange_strong(expected, 1, std::memory_order_acquire);
        benchmark::DoNotOptimize(word.exchange(0, std::memory_order_release));
    }
    state.SetItemsProcessed(state.iterations());
}

// Python's `with v.get_lock(): v.value += 1` in two processes at once. Each round starts when
// both children and this process meet at the barrier.
void increment(mp::Value<long> v, mp::Barrier start, mp::Semaphore done, long n) {
    for (;;) {
        start.wait(60.0);
        if (v.value() < 0) return;
        for (long i = 0; i < n; ++i) {
            std::lock_guard g(v.get_lock());
            v.set_value(v.value() + 1);
        }
        done.release();
    }
}

void BM_ContendedCounter(benchmark::State& state) {
    guarded(state, "BM_ContendedCounter", [&] {
        mp::Value<long> v(0);
        mp::Barrier start(3);
        mp::Semaphore done(0);
        std::optional<mp::Process> kids[2];
        for (auto& k : kids) {
            k.emplace(increment, mp::ProcessOptions{.daemon = true, .die_with_parent = true}, v, start, done,
                      kIncrements);
            k->start();
        }
        long expected = 0;
        for (auto _ : state) {
            start.wait(60.0);
            if (!done.acquire(true, 60.0) || !done.acquire(true, 60.0)) {
                state.SkipWithError("a child did not finish its increments");
                break;
            }
            expected += 2 * kIncrements;
            if (v.value() != expected) {
                state.SkipWithError(
                    ("counter is " + std::to_string(v.value()) + ", expected " + std::to_string(expected)).c_str());
                break;
            }
        }
        v.set_value(-1);
        try {
            start.wait(5.0);
        } catch (const mp::BrokenBarrierError&) {
        }
        for (auto& k : kids)
            if (!k->join(kReapGrace)) k->kill();
        state.SetItemsProcessed(state.iterations() * 2 * kIncrements);
    });
}

// Python's `x = v.value; v.value = x + 1` (each access takes the Value's lock).
void BM_ValueReadWrite(benchmark::State& state) {
    mp::Value<long> v(0);
    for (auto _ : state) v.set_value(v.value() + 1);
    if (v.value() != static_cast<long>(state.iterations())) state.SkipWithError("lost an update");
    state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_LockUncontended)->MinTime(kMinTime);
BENCHMARK(BM_RawAtomicPair)->MinTime(kMinTime);
BENCHMARK(BM_ContendedCounter)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ValueReadWrite)->MinTime(kMinTime);

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    return bench::run_benchmarks(argc, argv);
}
