// SPDX-License-Identifier: Apache-2.0
// The lecture's perf1.py: the same CPU-bound work run sequentially, on two threads and in two
// processes. Usage: perf1 [count [runs]]   (default 100000000, best of 7 runs)
//
// Each variant is timed several times, in turn, and its best time printed: a run of 0.1 s on a
// shared machine is easily stretched by other work, and the best run is the one that shows the method.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

namespace {

// Without volatile the optimizer sees a loop with no effect and deletes it, timing nothing.
void count(long n) {
    volatile long v = n;
    while (v > 0) v = v - 1;  // not `--v`: C++20 deprecates ++/-- on volatile
}

template <class F>
double seconds(F&& work) {
    auto start = std::chrono::steady_clock::now();
    work();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
    const long ntimes = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 100'000'000L;
    const int runs = argc > 2 ? std::atoi(argv[2]) : 7;

    auto sequential = [&] {
        count(ntimes);
        count(ntimes);
    };
    auto threaded = [&] {
        std::thread t1(count, ntimes);
        std::thread t2(count, ntimes);
        t1.join();
        t2.join();
    };
    // Threads are joined before each fork, so fork() is safe here (see process.hpp).
    auto multiprocess = [&] {
        mp::Process p1(count, ntimes);
        mp::Process p2(count, ntimes);
        p1.start();
        p2.start();
        p1.join();
        p2.join();
    };
    // Round-robin, so that all three see the same machine; keep each one's best run.
    double seq = 1e300, thr = 1e300, proc = 1e300;
    for (int i = 0; i < runs; ++i) {
        seq = std::min(seq, seconds(sequential));
        thr = std::min(thr, seconds(threaded));
        proc = std::min(proc, seconds(multiprocess));
    }
    std::printf("Sequential Execution time = %.3f\n", seq);
    std::printf("Threaded Execution time = %.3f\n", thr);
    std::printf("Multiprocess Execution time = %.3f\n", proc);

    std::printf("\nBest of %d runs each. Threaded speedup = %.2fx, multiprocess speedup = %.2fx (on %d CPUs)\n", runs,
                seq / thr, seq / proc, mp::cpu_count());
    std::printf(
        "In Python the GIL lets only one thread run bytecode at a time, so threads gain nothing and only\n"
        "processes run in parallel. C++ has no GIL: threads run in parallel too. Processes pay a start-up\n"
        "cost (fork) but give isolation: a crash or a stray write in one cannot touch the other.\n");
}
