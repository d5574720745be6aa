// SPDX-License-Identifier: Apache-2.0
// Builds against the installed mprocess and checks, under every start method, one round trip through
// a child and a Pool's map (a spawned child and the forkserver find the code again, the program's and
// the library's, in a static or a shared library build), and that the headers, the library and the
// package agree on the version.
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

namespace {

long square(long x) {
    return x * x;
}

bool round_trip(mp::StartMethod method) {
    auto ctx = mp::get_context(method);
    auto [parent, child] = mp::Pipe();
    auto p = ctx.Process([](mp::Connection c) { c.send(c.recv<std::string>() + " world"); }, child);
    p.start();
    child.close();
    parent.send(std::string("hello"));
    std::string reply = parent.recv<std::string>();
    p.join();
    // A Pool's workers run the library's own entry point, found again in a spawned or forkserver
    // child by the library's build-id, whether the library is linked in or shared.
    mp::Pool pool(2, {.start_method = method});
    const auto squares = pool.map(square, std::vector<long>{1, 2, 3, 4});
    bool ok = reply == "hello world" && p.exitcode() == 0 && squares == std::vector<long>{1, 4, 9, 16};
    std::printf("consumer %s (%s): %s, squares %ld %ld %ld %ld\n", ok ? "ok" : "FAILED",
                std::string(mp::to_string(method)).c_str(), reply.c_str(), squares[0], squares[1], squares[2],
                squares[3]);
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
