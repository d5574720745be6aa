// SPDX-License-Identifier: Apache-2.0
// Programs built by different compilers share messages: this test, built by the project's
// compiler, against its peer (peer.cpp), built by the other one (clang++-19 for g++, g++ for
// clang). Their type names and tags must be the same, and every sample of messages.hpp must cross
// both ways over a Pipe handed to the peer, and through a manager both use.
//
// Why not a Process: a spawned child runs the same binary, so it could never be the other
// compiler's program. The peer is a subprocess instead, and its end of the Pipe reaches it the way
// a manager hands one to its clients: exported, its descriptors attached, over a Unix socket (its
// stdin).
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cross_compiler/messages.hpp"
#include "helpers/children.hpp"
#include "platform/posix.hpp"
#include "channel/shm_channel.hpp"

namespace mp = mprocess;
namespace sp = mprocess::subprocess;

namespace {

constexpr double kPatience = 60.0;  // seconds: only a broken peer makes anyone wait this long

// The peer program, or why there is none.
std::string peer_path() {
    return MPROCESS_TEST_PEER;
}

#define REQUIRE_PEER()                                                                                       \
    if (peer_path().empty())                                                                                 \
        GTEST_SKIP() << "no peer program was built: the other compiler (clang++-19 for a g++ build, g++ "    \
                        "for a clang build) was not found at configure time, or this is a sanitizer build, " \
                        "whose library a program of the other compiler cannot link";

// The peer, killed and reaped if a test ends before it does.
class Peer {
public:
    Peer(std::vector<std::string> args, sp::PopenOptions options) : p_(std::move(args), std::move(options)) {}
    ~Peer() {
        if (!p_.poll()) p_.kill();
    }
    sp::Popen& operator*() { return p_; }
    sp::Popen* operator->() { return &p_; }

private:
    sp::Popen p_;
};

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

void expect_nothing_wrong(const std::vector<std::string>& wrong, const char* where) {
    for (const auto& w : wrong) ADD_FAILURE() << where << ": " << w;
}

}  // namespace

class CrossCompiler : public testing_support::ChildrenTest {};

// The names are built from each type's structure, or normalized from the compiler's spelling:
// the other compiler must arrive at the same text, and so at the same tag, for every type.
TEST_F(CrossCompiler, EveryTypeHasTheSameNameAndTagUnderBothCompilers) {
    REQUIRE_PEER();
    const auto theirs = lines_of(sp::check_output({peer_path(), "names"}));
    const auto ours = cross::all_names();
    ASSERT_EQ(theirs.size(), ours.size());
    for (std::size_t i = 0; i < ours.size(); ++i)
        EXPECT_EQ(theirs[i], ours[i]) << "type " << i << ": the other compiler's name and tag differ";
}

// No start method is involved (the peer is a subprocess): it runs once.
TEST_F(CrossCompiler, MessagesCrossAPipeHandedToTheOtherCompilersProgramBothWays) {
    REQUIRE_PEER();
    auto [mine, theirs] = mp::Pipe();
    auto [socket, peer_socket] = mp::platform::make_socketpair();
    Peer peer({peer_path(), "pipe"}, {.stdin_ = sp::Redirect::fd(peer_socket.get())});
    peer_socket.reset();
    mp::detail::send_pipe_end(socket.get(), theirs);
    theirs.close();  // the peer's end is the only one left: its exit is our EOF

    cross::send_all([&](std::size_t, const auto& v) { mine.send(v); });
    expect_nothing_wrong(cross::receive_all([&]<std::size_t, class T>() {
                             try {
                                 return mine.recv<T>(kPatience);
                             } catch (const mp::TypeMismatch&) {
                                 mine.recv_bytes();  // left unread: the next item comes after it
                                 throw;
                             }
                         }),
                         "sent by the other compiler's program over the Pipe");
    EXPECT_EQ(peer->wait(kPatience), 0) << "the other compiler's program received what it did not expect (its "
                                           "stderr says what)";
}

// The manager's server is started by each start method in turn.
class CrossCompilerManager : public testing_support::MethodTest {};

TEST_P(CrossCompilerManager, MessagesCrossAManagerSharedByBothCompilersProgramsBothWays) {
    REQUIRE_PEER();
    const std::string address = "@mprocess-cross-compiler-" + std::to_string(::getpid()) + "-" + GetParam();
    std::random_device random;
    const std::string key = "cross-" + std::to_string(random()) + std::to_string(random());
    mp::BaseManager m(address, {.authkey = key, .start_method = method()});
    m.start();
    auto ns = m.Namespace("samples");
    auto orders = m.Queue<cross::Order>("orders");
    cross::send_all([&](std::size_t i, const auto& v) { ns.set("to-peer-" + std::to_string(i), v); });

    {
        Peer peer({peer_path(), "manager", address}, {.stdin_ = sp::PIPE});
        peer->write(key + "\n");
        peer->close_stdin();
        EXPECT_EQ(peer->wait(kPatience), 0) << "the other compiler's program received what it did not expect (its "
                                               "stderr says what)";
    }
    expect_nothing_wrong(
        cross::receive_all([&]<std::size_t I, class T>() { return ns.get<T>("from-peer-" + std::to_string(I)); }),
        "set by the other compiler's program in the manager");
    try {
        EXPECT_EQ(orders.get_nowait(), cross::sample_order());  // put before the peer exited
    } catch (const mp::Error& e) {
        ADD_FAILURE() << "the Order the other compiler's program put: " << e.what();
    }
    m.shutdown();
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, CrossCompilerManager, testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });
