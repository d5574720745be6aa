// SPDX-License-Identifier: Apache-2.0
// The lecture's "Concurrent access in multiprocessing": ten processes each add 1 to a shared
// Value fifty times, without holding its lock across the read and the write. Two processes that
// read the same value both write value + 1, and one increment is lost: run it a few times and the
// total varies, usually below 500. (counter_lock is the fix.)
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

// About what the interpreter spends between the read and the write of `val.value += 1`.
void python_gap() {
    const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(2);
    while (std::chrono::steady_clock::now() < end) {
    }
}

void func(mp::Value<int> val) {
    for (int i = 0; i < 50; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        // Python's `val.value += 1`: a locked read, then a locked write, with the interpreter's
        // work between them. That gap is what lets another process slip in; a C++ gap of a few
        // nanoseconds almost never does, so make it as long as Python's.
        int v = val.value();
        python_gap();
        val.set_value(v + 1);
    }
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    mp::Value<int> v(0);
    std::vector<mp::Process> procs;
    for (int i = 0; i < 10; ++i) procs.emplace_back(func, v);

    for (auto& p : procs) p.start();
    for (auto& p : procs) p.join();

    std::cout << "value =  " << v.value() << std::endl;
}
