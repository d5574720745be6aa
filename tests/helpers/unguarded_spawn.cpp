// SPDX-License-Identifier: Apache-2.0
// A program that uses spawn but forgets mprocess::freeze_support() in main().
//   unguarded_spawn start   the child runs main() again and tries to start a process itself
//   unguarded_spawn idle    the child runs main() again and just keeps running
// Prints what the parent's start() threw; exits 0 if it named the fix.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

void target() {}

int main(int argc, char** argv) {
    const bool idle = argc > 1 && std::strcmp(argv[1], "idle") == 0;
    if (idle && std::getenv("UNGUARDED_RUNNING")) {  // the child, since it inherited this
        std::this_thread::sleep_for(std::chrono::minutes(1));
        return 0;
    }
    ::setenv("UNGUARDED_RUNNING", "1", 1);
    auto p = mp::get_context("spawn").Process(target);
    try {
        p.start();
        p.join();
        std::printf("started without the guard\n");
        return 1;
    } catch (const mp::ProcessError& e) {
        std::printf("%s\n", e.what());
        return std::strstr(e.what(), "freeze_support") ? 0 : 2;
    }
}
