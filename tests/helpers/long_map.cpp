// SPDX-License-Identifier: Apache-2.0
// A program in the middle of a long Pool.map, for the Ctrl-C test (tests/interrupt): it holds a
// named shared-memory block and a Queue too, then prints its workers' pids and the block's name, and
// maps a slow function over a minute's worth of items.
//
//     long_map METHOD
#include <mprocess/mprocess.hpp>

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace mp = mprocess;

namespace {

int slow_square(int x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return x * x;
}

}  // namespace

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    if (argc != 2) {
        std::cerr << "usage: long_map METHOD\n";
        return 2;
    }
    mp::set_start_method(argv[1], true);
    const std::string name = "/mprocess-interrupt-" + std::to_string(::getpid());
    mp::SharedMemory block(name, true, 1 << 20);
    mp::Queue<int> q;
    q.put(1);
    mp::Pool pool(2);
    std::cout << "mapping, workers";
    for (pid_t pid : pool.pids()) std::cout << ' ' << pid;
    std::cout << ", block " << name << std::endl;
    pool.map(slow_square, std::vector<int>(6000, 3), 1);
    std::cout << "done" << std::endl;
    return 0;
}
