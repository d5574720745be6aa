// SPDX-License-Identifier: Apache-2.0
// Builds against the installed mprocess and checks one round trip through a child.
#include <cstdio>
#include <string>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

int main() {
    auto [parent, child] = mp::Pipe();
    mp::Process p([](mp::Connection c) { c.send(c.recv<std::string>() + " world"); }, child);
    p.start();
    child.close();
    parent.send(std::string("hello"));
    std::string reply = parent.recv<std::string>();
    p.join();
    bool ok = reply == "hello world" && p.exitcode() == 0;
    std::printf("consumer %s: %s\n", ok ? "ok" : "FAILED", reply.c_str());
    return ok ? 0 : 1;
}
