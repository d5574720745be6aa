// SPDX-License-Identifier: Apache-2.0
// The lecture's "message exchange using network IO": an echo server and its client, with an
// authkey, in two processes here, or in two terminals (or on two machines):
//
//     net_echo                          both ends, in two processes of this program
//     net_echo serve 0.0.0.0:6000       a server, until Ctrl-C
//     net_echo connect host:6000 [words...]
//
// The key comes from MPROCESS_AUTHKEY (default "lecture"). It proves each side knows it; it does
// not encrypt what follows.
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

std::string authkey() {
    const char* k = std::getenv("MPROCESS_AUTHKEY");
    return k && *k ? k : "lecture";
}

// Answers each line with the line in capitals, until the client hangs up.
void serve_one(mp::Connection conn) {
    try {
        for (;;) {
            std::string line = conn.recv<std::string>();
            for (char& c : line) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            conn.send(line + " (from pid " + std::to_string(::getpid()) + ")");
        }
    } catch (const mp::EOFError&) {
    }
}

// Accepts clients one after another (all of them if clients < 0); a client with a wrong key is
// reported and the next one served. The address is told through `report`, if open.
void serve(std::string address, int clients, mp::Connection report) {
    mp::Listener listener(address, {.authkey = authkey()});
    std::cout << "server: listening on " << listener.address() << ", authkey required (pid " << ::getpid() << ")"
              << std::endl;
    if (!report.closed()) report.send(listener.address());
    for (int served = 0; clients < 0 || served < clients; ++served) {
        try {
            serve_one(listener.accept());
        } catch (const mp::AuthenticationError& e) {
            std::cout << "server: refused a client: " << e.what() << std::endl;
        }
    }
}

void talk(const std::string& address, const std::vector<std::string>& words, const std::string& key) {
    auto conn = mp::Client(address, {.authkey = key});
    for (const auto& w : words) {
        conn.send(w);
        std::cout << "client: sent " << w << ", got back " << conn.recv<std::string>() << std::endl;
    }
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() >= 2 && args[0] == "serve") {
        serve(args[1], -1, mp::Connection());
        return 0;
    }
    if (args.size() >= 2 && args[0] == "connect") {
        std::vector<std::string> words(args.begin() + 2, args.end());
        if (words.empty()) words = {"hello", "network"};
        talk(args[1], words, authkey());
        return 0;
    }
    if (!args.empty()) {
        std::cerr << "usage: net_echo | net_echo serve HOST:PORT | net_echo connect HOST:PORT [words...]\n";
        return 2;
    }

    // Both ends here: the server picks a free port and tells us which.
    auto [here, there] = mp::Pipe();
    mp::Process server(serve, {.name = "server"}, std::string("127.0.0.1:0"), 2, there);
    server.start();
    const std::string where = here.recv<std::string>();
    talk(where, {"hello", "from", "the client"}, authkey());
    try {
        talk(where, {"let me in"}, "a wrong key");
    } catch (const mp::AuthenticationError& e) {
        std::cout << "client with a wrong key: " << e.what() << std::endl;
    }
    server.join();
    return server.exitcode() == 0 ? 0 : 1;
}
