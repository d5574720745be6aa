// SPDX-License-Identifier: Apache-2.0
// The lecture's fix for value_race: a Counter whose increment holds a Lock across the read and
// the write. However the ten processes interleave, the total is always 500.
#include <chrono>
#include <iostream>
#include <mutex>
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

class Counter {
public:
    explicit Counter(int initval = 0) : val_(initval) {}

    void increment() {
        std::lock_guard with(lock_);
        int v = val_.value();
        python_gap();  // the same gap as value_race
        val_.set_value(v + 1);
    }

    int value() {
        std::lock_guard with(lock_);
        return val_.value();
    }

    // How a Counter travels to a child started by spawn or forkserver: its two handles, as
    // handles (under fork the child's copy shares them anyway).
    template <class Archive>
    void serialize(Archive& ar) {
        ar(val_, lock_);
    }

private:
    // Both are handles on shared memory: a Counter copied into a child shares them.
    mp::Value<int> val_;
    mp::Lock lock_;
};

void func(Counter counter) {
    for (int i = 0; i < 50; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        counter.increment();
    }
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    if (argc > 1) mp::set_start_method(argv[1]);  // counter_lock [fork|spawn|forkserver]
    Counter counter(0);
    std::vector<mp::Process> procs;
    for (int i = 0; i < 10; ++i) procs.emplace_back(func, counter);

    for (auto& p : procs) p.start();
    for (auto& p : procs) p.join();

    std::cout << "Counter =  " << counter.value() << std::endl;
}
