// SPDX-License-Identifier: Apache-2.0
// The lecture's mprocess1.py: a class derived from Process that overrides run().
#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

class CountdownProcess : public mp::Process {
public:
    CountdownProcess(std::string name, int count) : mp::Process({.name = std::move(name)}), count_(count) {}

    // Runs in the child; count_ is the child's own copy, the parent's stays untouched.
    void run() override {
        while (count_ > 0) {
            // endl flushes each line now, so the two children's lines interleave even into a pipe.
            std::cout << name() << " counting down " << count_ << std::endl;
            --count_;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }

private:
    int count_;
};

int main() {
    CountdownProcess p1("p1", 10);
    p1.start();

    CountdownProcess p2("p2", 15);
    p2.start();

    p1.join();
    p2.join();
}
