// SPDX-License-Identifier: Apache-2.0
// Queue throughput between processes, beside a raw shared-memory ring and memcpy, so that
// bench/compare.py can put mprocess, Python's multiprocessing.Queue and the machine's limit in
// one table.
//
//     build/bench/bench_queue                       # all of them, about 15 s
//
// Every benchmark starts its processes before the timed loop, and every consumer checks what it
// got (count, sum, order) and reports it; a wrong report fails the benchmark.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_common.hpp"
#include "mprocess/mprocess.hpp"

namespace mp = mprocess;

namespace {

using namespace bench;

constexpr std::int64_t kMpmcPerProducer = 4 * kBatch;
constexpr std::int64_t kBigItems = 4;  // 64 MiB items per timed iteration
constexpr std::size_t kBig = std::size_t{64} << 20;
constexpr std::size_t kRingBytes = 256 * 1024;  // the raw ring is as large as a Queue's ring

// A child process for the length of one benchmark run: reaped however the run ends, killed if it
// does not end by itself, and killed with us if the watchdog fires.
class Child {
public:
    template <class F, class... A>
    explicit Child(F f, A... a) : p_(f, mp::ProcessOptions{.daemon = true, .die_with_parent = true}, a...) {
        p_.start();
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() {
        try {
            if (!p_.join(kReapGrace)) {
                p_.kill();
                p_.join();
            }
        } catch (...) {
        }
    }

private:
    mp::Process p_;
};

// The sequence number carried by an item: the item itself, or its first 8 bytes.
std::int64_t seq_of(std::int64_t v) {
    return v;
}
std::int64_t seq_of(const std::string& s) {
    std::int64_t v = 0;
    std::memcpy(&v, s.data(), sizeof v);
    return v;
}
void stamp(std::string& s, std::int64_t v) {
    std::memcpy(s.data(), &v, sizeof v);
}

template <class T>
void spsc_consumer(mp::Queue<T> q, mp::Queue<Tally> replies, std::int64_t batch) {
    Tally t;
    std::int64_t expected = 0;
    for (;;) {
        T item = q.get();
        std::int64_t v = seq_of(item);
        if (v == kStop) return;
        tally(
            t, expected, v, [&](const Tally& r) { replies.put(r); }, batch);
    }
}

// One producer (this process) and one consumer; arg: item size (8: an int64, else a string).
template <class T>
void spsc(benchmark::State& state, std::size_t size, std::int64_t batch) {
    mp::Queue<T> q;
    mp::Queue<Tally> replies;
    Child consumer(&spsc_consumer<T>, q, replies, batch);
    T item{};
    if constexpr (std::is_same_v<T, std::string>) item.assign(size, 'x');
    auto put = [&](std::int64_t v) {
        if constexpr (std::is_same_v<T, std::string>) {
            stamp(item, v);
            q.put(item);
        } else {
            q.put(v);
        }
    };
    std::int64_t seq = 0;
    for (auto _ : state) {
        const std::int64_t first = seq;
        for (std::int64_t i = 0; i < batch; ++i) put(seq++);
        if (auto err = check_tally(replies.get(true, 60.0), first, batch); !err.empty()) {
            state.SkipWithError(err.c_str());
            break;
        }
    }
    put(kStop);
    state.SetItemsProcessed(state.iterations() * batch);
    state.SetBytesProcessed(state.iterations() * batch * static_cast<std::int64_t>(size));
}

void BM_QueueThroughput(benchmark::State& state) {
    guarded(state, "BM_QueueThroughput", [&] {
        const auto size = static_cast<std::size_t>(state.range(0));
        if (size == sizeof(std::int64_t)) {
            spsc<std::int64_t>(state, size, kBatch);
        } else {
            spsc<std::string>(state, size, kBatch / 4);
        }
    });
}

// Four 64 MiB items per iteration; counted in MiB.
void BM_QueueBigItems(benchmark::State& state) {
    guarded(state, "BM_QueueBigItems", [&] {
        mp::Queue<std::string> q;
        mp::Queue<Tally> replies;
        Child consumer(&spsc_consumer<std::string>, q, replies, kBigItems);
        std::string item(kBig, 'x');
        std::int64_t seq = 0;
        auto round = [&] {
            const std::int64_t first = seq;
            for (std::int64_t i = 0; i < kBigItems; ++i) {
                stamp(item, seq++);
                q.put(item);
            }
            return check_tally(replies.get(true, 60.0), first, kBigItems);
        };
        // One untimed round first, as the Python workload does: the memory is then in place.
        if (auto err = round(); !err.empty()) state.SkipWithError(err.c_str());
        for (auto _ : state) {
            if (state.error_occurred()) break;
            if (auto err = round(); !err.empty()) {
                state.SkipWithError(err.c_str());
                break;
            }
        }
        stamp(item, kStop);
        q.put(item);
        state.SetItemsProcessed(state.iterations() * kBigItems * static_cast<std::int64_t>(kBig >> 20));
    });
}

// Two producers and two consumers, all children; this process only starts and checks each round.
// The same protocol as the Python workload in compare.py.
void mpmc_producer(mp::Queue<std::int64_t> q, mp::Queue<std::int64_t> go) {
    for (;;) {
        const std::int64_t first = go.get();
        if (first < 0) return;
        for (std::int64_t v = first; v < first + kMpmcPerProducer; ++v) q.put(v);
        q.put(kStop);  // after its items, which are all in the queue already
    }
}

void mpmc_consumer(mp::Queue<std::int64_t> q, mp::Queue<int> go, mp::Queue<Tally> replies) {
    for (;;) {
        if (go.get() < 0) return;
        // Per round: count until a stop. Each producer's stop follows its items, and a consumer
        // that has a stop waits for the next round, so the other stop reaches the other consumer
        // after every item.
        Tally t;
        for (;;) {
            const std::int64_t v = q.get();
            if (v == kStop) break;
            ++t.count;
            t.sum += v;
        }
        replies.put(t);
    }
}

void BM_QueueMpmc(benchmark::State& state) {
    guarded(state, "BM_QueueMpmc", [&] {
        mp::Queue<std::int64_t> q, pgo;
        mp::Queue<int> cgo;
        mp::Queue<Tally> replies;
        std::optional<Child> kids[4];
        kids[0].emplace(&mpmc_producer, q, pgo);
        kids[1].emplace(&mpmc_producer, q, pgo);
        kids[2].emplace(&mpmc_consumer, q, cgo, replies);
        kids[3].emplace(&mpmc_consumer, q, cgo, replies);
        std::int64_t first = 0;
        for (auto _ : state) {
            cgo.put(1);
            cgo.put(1);
            pgo.put(first);
            pgo.put(first + kMpmcPerProducer);
            Tally a = replies.get(true, 60.0), b = replies.get(true, 60.0);
            Tally total{a.count + b.count, a.sum + b.sum, 0};
            if (auto err = check_tally(total, first, 2 * kMpmcPerProducer); !err.empty()) {
                state.SkipWithError(err.c_str());
                break;
            }
            first += 2 * kMpmcPerProducer;
        }
        pgo.put(-1);
        pgo.put(-1);
        cgo.put(-1);
        cgo.put(-1);
        state.SetItemsProcessed(state.iterations() * 2 * kMpmcPerProducer);
    });
}

// ---------------------------------------------------------------------------------------------
// The limits: a single-producer single-consumer ring of fixed slots in shared memory, with
// nothing but two cached indices and spinning (no locks, no sleeping, no framing), and memcpy.

struct RawRing {
    alignas(64) std::atomic<std::uint64_t> tail;
    alignas(64) std::atomic<std::uint64_t> head;
    alignas(64) std::atomic<std::int64_t> batches;  // tallies the consumer has posted
    Tally tally;
    alignas(64) char data[kRingBytes];
};

void raw_consumer(RawRing& r, std::size_t slot, std::int64_t batch) {
    const std::uint64_t slots = kRingBytes / slot;
    std::uint64_t head = 0, tail_seen = 0;
    std::vector<char> out(slot);
    Tally t;
    std::int64_t expected = 0;
    for (;;) {
        while (tail_seen == head) tail_seen = r.tail.load(std::memory_order_acquire);
        std::memcpy(out.data(), r.data + (head % slots) * slot, slot);
        r.head.store(++head, std::memory_order_release);
        std::int64_t v;
        std::memcpy(&v, out.data(), sizeof v);
        if (v == kStop) return;
        tally(
            t, expected, v,
            [&](const Tally& done) {
                r.tally = done;
                r.batches.fetch_add(1, std::memory_order_release);
            },
            batch);
    }
}

void BM_RawShmRing(benchmark::State& state) {
    guarded(state, "BM_RawShmRing", [&] {
        const auto slot = static_cast<std::size_t>(state.range(0));
        const std::int64_t batch = slot == 8 ? kBatch : kBatch / 4;
        void* mem = ::mmap(nullptr, sizeof(RawRing), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) throw std::bad_alloc();
        auto& r = *new (mem) RawRing{};
        const pid_t pid = ::fork();
        if (pid == 0) {
            raw_consumer(r, slot, batch);
            ::_exit(0);
        }
        const std::uint64_t slots = kRingBytes / slot;
        std::uint64_t tail = 0, head_seen = 0;
        std::vector<char> item(slot, 'x');
        auto put = [&](std::int64_t v) {
            while (tail - head_seen == slots) head_seen = r.head.load(std::memory_order_acquire);
            std::memcpy(item.data(), &v, sizeof v);
            std::memcpy(r.data + (tail % slots) * slot, item.data(), slot);
            r.tail.store(++tail, std::memory_order_release);
        };
        std::int64_t seq = 0, batches = 0;
        for (auto _ : state) {
            const std::int64_t first = seq;
            for (std::int64_t i = 0; i < batch; ++i) put(seq++);
            ++batches;
            while (r.batches.load(std::memory_order_acquire) != batches) {
            }
            if (auto err = check_tally(r.tally, first, batch); !err.empty()) {
                state.SkipWithError(err.c_str());
                break;
            }
        }
        put(kStop);
        ::waitpid(pid, nullptr, 0);
        ::munmap(mem, sizeof(RawRing));
        state.SetItemsProcessed(state.iterations() * batch);
        state.SetBytesProcessed(state.iterations() * batch * static_cast<std::int64_t>(slot));
    });
}

// memcpy of 64 MiB between two warm buffers; counted in MiB.
void BM_RawMemcpy64MiB(benchmark::State& state) {
    std::vector<char> a(kBig, 'a'), b(kBig, 'b');
    for (auto _ : state) {
        std::memcpy(b.data(), a.data(), kBig);
        benchmark::DoNotOptimize(b.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBig >> 20));
}

}  // namespace

BENCHMARK(BM_QueueThroughput)->Arg(8)->Arg(4096)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_QueueMpmc)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_QueueBigItems)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RawShmRing)->Arg(8)->Arg(4096)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RawMemcpy64MiB)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    return bench::run_benchmarks(argc, argv);
}
