// SPDX-License-Identifier: Apache-2.0
// The lecture's three start methods side by side: the same target under fork, spawn and
// forkserver, with what each costs to start. Note the entry guard, the C++ form of the lecture's
// `if __name__ == '__main__':` + freeze_support(): spawned children enter main() too.
#include <chrono>
#include <cstdio>
#include <string>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

void greet(mp::Connection conn, std::string method) {
    conn.send("hello from " + mp::current_process().name() + " (pid " + std::to_string(mp::current_process().pid()) +
              ", started with " + method + ")");
}

void nothing() {}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);

    for (const auto& method : mp::get_all_start_methods()) {
        auto ctx = mp::get_context(method);
        auto [parent_conn, child_conn] = mp::Pipe();
        auto p = ctx.Process(greet, child_conn, method);
        p.start();
        child_conn.close();
        std::printf("%s\n", parent_conn.recv<std::string>().c_str());
        p.join();

        constexpr int runs = 20;
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < runs; ++i) {
            auto q = ctx.Process(nothing);
            q.start();
            q.join();
        }
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / runs;
        std::printf("  %-10s start+join: %.2f ms\n", method.c_str(), ms);
    }
    std::printf(
        "\nfork copies this process (fast, any callable, but unsafe once threads run); spawn runs the program\n"
        "afresh and calls a plain function with serialized arguments; forkserver forks from a clean server.\n");
}
