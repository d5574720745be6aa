// SPDX-License-Identifier: Apache-2.0
// The cross-compiler test's other program, built by the other compiler (clang++ when the project
// builds with g++, and the reverse) against the project's headers and library.
//   peer names              prints the canonical name and tag of every type of messages.hpp
//   peer pipe               its stdin is a Unix socket over which the test hands it one end of a
//                           Pipe: receives every sample there, then sends its own
//   peer manager ADDRESS    reads the manager's key from stdin, receives every sample from the
//                           manager's namespace "samples" (to-peer-<i>), sets its own (from-peer-<i>)
//                           and puts an Order on the queue "orders"
// It prints what did not come as sent on stderr and exits with 1 then.
#include <cstdio>
#include <iostream>
#include <string>

#include "cross_compiler/messages.hpp"
#include "channel/shm_channel.hpp"

namespace mp = mprocess;

namespace {

constexpr double kPatience = 60.0;  // seconds: only a broken peer makes anyone wait this long

int report(const std::vector<std::string>& wrong) {
    for (const auto& w : wrong) std::fprintf(stderr, "peer: %s\n", w.c_str());
    return wrong.empty() ? 0 : 1;
}

int over_pipe() {
    std::optional<mp::Connection> conn = mp::detail::recv_pipe_end(0);
    if (!conn) {
        std::fprintf(stderr, "peer: no Pipe end came on stdin\n");
        return 2;
    }
    const auto wrong = cross::receive_all([&]<std::size_t, class T>() {
        try {
            return conn->recv<T>(kPatience);
        } catch (const mp::TypeMismatch&) {
            conn->recv_bytes();  // left unread by recv: the next item comes after it
            throw;
        }
    });
    cross::send_all([&](std::size_t, const auto& v) { conn->send(v); });
    return report(wrong);
}

int over_manager(const std::string& address) {
    std::string key;
    std::getline(std::cin, key);
    mp::BaseManager m(address, {.authkey = key});
    m.connect();
    auto ns = m.Namespace("samples");
    const auto wrong =
        cross::receive_all([&]<std::size_t I, class T>() { return ns.get<T>("to-peer-" + std::to_string(I)); });
    cross::send_all([&](std::size_t i, const auto& v) { ns.set("from-peer-" + std::to_string(i), v); });
    m.Queue<cross::Order>("orders").put(cross::sample_order());
    return report(wrong);
}

}  // namespace

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode == "names" && argc == 2) {
            for (const auto& line : cross::all_names()) std::printf("%s\n", line.c_str());
            return 0;
        }
        if (mode == "pipe" && argc == 2) return over_pipe();
        if (mode == "manager" && argc == 3) return over_manager(argv[2]);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "peer: %s\n", e.what());
        return 2;
    }
    std::fprintf(stderr, "usage: %s names | pipe | manager ADDRESS\n", argv[0]);
    return 2;
}
