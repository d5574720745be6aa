// The lecture's perf1.py: the same CPU-bound work run sequentially, on two threads and in two
// processes. Usage: perf1 [count]   (default 100000000)
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

    double seq = seconds([&] {
        count(ntimes);
        count(ntimes);
    });
    std::printf("Sequential Execution time = %.3f\n", seq);

    double thr = seconds([&] {
        std::thread t1(count, ntimes);
        std::thread t2(count, ntimes);
        t1.join();
        t2.join();
    });
    std::printf("Threaded Execution time = %.3f\n", thr);

    // The threads above have been joined: fork() is safe again (see process.hpp).
    double proc = seconds([&] {
        mp::Process p1(count, ntimes);
        mp::Process p2(count, ntimes);
        p1.start();
        p2.start();
        p1.join();
        p2.join();
    });
    std::printf("Multiprocess Execution time = %.3f\n", proc);

    std::printf("\nThreaded speedup = %.2fx, multiprocess speedup = %.2fx (on %d CPUs)\n", seq / thr, seq / proc,
                mp::cpu_count());
    std::printf(
        "In Python the GIL lets only one thread run bytecode at a time, so threads gain nothing and only\n"
        "processes run in parallel. C++ has no GIL: threads run in parallel too. Processes pay a start-up\n"
        "cost (fork) but give isolation: a crash or a stray write in one cannot touch the other.\n");
}
