// SPDX-License-Identifier: Apache-2.0
// Builds against the installed mprocess and checks one round trip through a child under every start
// method (a spawned child and the forkserver find the lambda again, in a static or a shared library
// build), and that the headers, the library and the package agree on the version.
#include <cstdio>
#include <string>
#include <string_view>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

namespace {

bool round_trip(mp::StartMethod method) {
    auto ctx = mp::get_context(method);
    auto [parent, child] = mp::Pipe();
    auto p = ctx.Process([](mp::Connection c) { c.send(c.recv<std::string>() + " world"); }, child);
    p.start();
    child.close();
    parent.send(std::string("hello"));
    std::string reply = parent.recv<std::string>();
    p.join();
    bool ok = reply == "hello world" && p.exitcode() == 0;
    std::printf("consumer %s: %s\n", ok ? "ok" : "FAILED", reply.c_str());
    return ok;
}

}  // namespace

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);  // a spawned child runs its target from here
    bool ok = true;
    for (auto method : {mp::StartMethod::fork, mp::StartMethod::spawn, mp::StartMethod::forkserver})
        ok = round_trip(method) && ok;
    std::string_view library = mp::version();
#ifdef CONSUMER_PACKAGE_VERSION
    std::string_view package = CONSUMER_PACKAGE_VERSION;
#else
    std::string_view package = MPROCESS_VERSION_STRING;  // pkg-config: its version is checked by the caller
#endif
    bool versions =
        library == MPROCESS_VERSION_STRING && package == library &&
        MPROCESS_VERSION == MPROCESS_VERSION_MAJOR * 10000 + MPROCESS_VERSION_MINOR * 100 + MPROCESS_VERSION_PATCH;
    std::printf("version %s: headers %s, library %.*s, package %.*s (C++ %ld)\n", versions ? "ok" : "MISMATCH",
                MPROCESS_VERSION_STRING, static_cast<int>(library.size()), library.data(),
                static_cast<int>(package.size()), package.data(), static_cast<long>(__cplusplus));
    return ok && versions ? 0 : 1;
}
