// SPDX-License-Identifier: Apache-2.0
// Starts a daemonic and a non-daemonic child, prints their pids, and returns from main.
// Python's rule at exit: the daemonic child is terminated, the other one joined.
#include <chrono>
#include <cstdio>
#include <thread>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

int main() {
    mp::Process daemon([] { std::this_thread::sleep_for(std::chrono::hours(1)); }, {.daemon = true});
    mp::Process worker([] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        std::printf("worker done\n");
    });
    daemon.start();
    worker.start();
    std::printf("daemon %d\nworker %d\n", daemon.pid(), worker.pid());
    std::fflush(stdout);
    return 0;
}
