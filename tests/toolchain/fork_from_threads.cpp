// SPDX-License-Identifier: Apache-2.0
// Forks children that allocate and free while two other threads allocate and free without pause:
// what the fork-method Pool does when its manager thread replaces a worker. The children must all
// end. Under a sanitizer runtime that does not hold its allocator's locks across fork() (GCC 12's
// ASan and TSan, or LLVM's ASan with its quarantine on), a child forked while another thread held
// one blocks forever on its first allocation or free: here a child that has not ended within 20 s
// is killed and the test fails, so a hang shows as a failure, not as a timeout of the whole run.
// Usage: fork_from_threads [rounds]
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

// Sizes across the allocator's size classes, so that the threads' caches refill and drain often.
std::size_t size_of(unsigned i) {
    return 16 + (i * 7919u) % 70000;
}

// A freed block back to the allocator: escapes the optimizer, which may drop a new/delete pair.
void churn_once(std::vector<char*>& keep, unsigned i) {
    auto& slot = keep[i % keep.size()];
    delete[] slot;
    slot = new char[size_of(i)];
    slot[0] = static_cast<char>(i);
}

int child() {
    // About 7 MB allocated and freed: past ASan's per-thread quarantine, so it drains too.
    std::vector<char*> blocks;
    for (unsigned k = 0; k < 200; ++k) {
        blocks.push_back(new char[size_of(k * 131)]);
        blocks.back()[0] = 1;
    }
    for (auto* b : blocks) delete[] b;
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 200;
    std::atomic<bool> stop{false};
    std::vector<std::thread> churners;
    for (unsigned t = 0; t < 2; ++t)
        churners.emplace_back([&stop, t] {
            std::vector<char*> keep(1024, nullptr);
            for (unsigned i = t; !stop.load(std::memory_order_relaxed); ++i) churn_once(keep, i);
            for (auto* p : keep) delete[] p;
        });

    int failed_round = -1;
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < rounds && failed_round < 0; ++r) {
        const pid_t pid = ::fork();
        if (pid < 0) {
            std::perror("fork");
            failed_round = r;
            break;
        }
        if (pid == 0) ::_exit(child());
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        int status = 0;
        for (;;) {
            const pid_t got = ::waitpid(pid, &status, WNOHANG);
            if (got == pid) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    std::fprintf(stderr, "round %d: the child ended with status %#x\n", r, status);
                    failed_round = r;
                }
                break;
            }
            if (got < 0 && errno != EINTR) {
                std::perror("waitpid");
                failed_round = r;
                break;
            }
            if (std::chrono::steady_clock::now() > deadline) {
                std::fprintf(stderr, "round %d: child %d still running after 20 s: blocked on a lock held at fork\n", r,
                             static_cast<int>(pid));
                ::kill(pid, SIGKILL);
                ::waitpid(pid, &status, 0);
                failed_round = r;
                break;
            }
            ::usleep(500);
        }
    }
    stop = true;
    for (auto& t : churners) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (failed_round >= 0) {
        std::printf("FAILED at round %d of %d (%.1f s)\n", failed_round, rounds, s);
        return 1;
    }
    std::printf("%d children forked beside allocating threads, all ended (%.1f s)\n", rounds, s);
    return 0;
}
