// SPDX-License-Identifier: Apache-2.0
#include <mprocess/listener.hpp>
#include <mprocess/process.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <future>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "helpers/children.hpp"
#include "helpers/other_user.hpp"

using testing_support::ChildrenTest;

namespace {

class ListenerTest : public ChildrenTest {};
class ListenerMethods : public testing_support::MethodTest {};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

unsigned port_of(const std::string& address) {
    return static_cast<unsigned>(std::stoul(address.substr(address.rfind(':') + 1)));
}

// A raw TCP socket to 127.0.0.1:port, for speaking out of turn.
int raw_connect(unsigned port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

void raw_write(int fd, const void* p, std::size_t n) {
    ASSERT_EQ(::send(fd, p, n, MSG_NOSIGNAL), static_cast<ssize_t>(n));
}

void raw_frame_header(int fd, std::uint64_t length) {
    raw_write(fd, &length, sizeof length);
}

std::string frame(const std::string& body) {
    std::uint64_t n = body.size();
    return std::string(reinterpret_cast<const char*>(&n), sizeof n) + body;
}

// The hello a client without a key begins with.
void raw_hello(int fd) {
    const std::string hello = "#HELLO#nokey";
    raw_frame_header(fd, hello.size());
    raw_write(fd, hello.data(), hello.size());
}

// A child's side: connect, send a greeting, echo one message back, exit 0; exit codes say what failed.
void echo_client(std::string address, std::string key) {
    try {
        auto c = mp::Client(address, {.authkey = key, .timeout = 10});
        c.send(std::string("hello from ") + std::to_string(::getpid()));
        c.send(c.recv<int>() + 1);
        mp::exit(0);
    } catch (const mp::AuthenticationError&) {
        mp::exit(3);
    }
}

// Sends n ints, then expects their sum back.
void counting_client(std::string address, int n) {
    auto c = mp::Client(address, {.authkey = "k"});
    long sum = 0;
    for (int i = 0; i < n; ++i) {
        c.send(i);
        sum += i;
    }
    mp::exit(c.recv<long>() == sum ? 0 : 1);
}

void answer_on(mp::Connection c) {
    c.send(c.recv<int>() * 2);
}

// The second hop: reads one message, hands the connection on to a grandchild of the same start
// method, which reads the next and answers with both.
void read_last_and_answer(mp::Connection c, int first) {
    c.send(first * 10 + c.recv<int>());
}
void read_one_and_hand_on(mp::Connection c, std::string method) {
    const int first = c.recv<int>();
    auto p = mp::get_context(method).Process(read_last_and_answer, c, first);
    p.start();
    p.join();
    mp::exit(p.exitcode().value_or(99));
}

// A sanitizer's shadow memory makes the process's size say nothing about its own allocations.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSizeMeansSomething = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
constexpr bool kSizeMeansSomething = false;
#else
constexpr bool kSizeMeansSomething = true;
#endif
#else
constexpr bool kSizeMeansSomething = true;
#endif

constexpr std::size_t MiB = std::size_t{1} << 20;

// This process's resident memory, in bytes.
std::size_t resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::size_t size = 0, resident = 0;
    statm >> size >> resident;
    return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// A TCP connection to 127.0.0.1:port, begun without waiting for it to be established.
int raw_connect_nowait(unsigned port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// True once the other end has closed this raw connection (or reset it).
bool closed_by_peer(int fd) {
    char c;
    const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// Hostile traffic at a listener: a frame sent in part, frames of random bytes, a hello with a
// key and then a wrong answer, and `silent` connections that never say a word. Each peer sends
// what it sends at once, in one piece, and ignores what becomes of it.
struct Crowd {
    std::vector<int> fds;
    Crowd(unsigned port, int silent, std::uint32_t seed) {
        std::mt19937 rng(seed);
        std::vector<std::string> talk;
        talk.push_back(frame("#HELLO#nokey").substr(0, 12));  // the header and half the hello
        for (int i = 0; i < 4; ++i) {
            std::string noise(8 + rng() % 300, '\0');
            for (auto& c : noise) c = static_cast<char>(rng());
            if (i % 2 == 0) {  // a length a handshake message could have, then random bytes
                const std::uint64_t n = rng() % 200;
                std::memcpy(noise.data(), &n, sizeof n);
            }
            talk.push_back(noise);
        }
        talk.push_back(frame("#HELLO#authkey") + frame(std::string(32, 'x')));
        for (const auto& bytes : talk) {
            const int fd = raw_connect(port);
            if (fd < 0) continue;
            [[maybe_unused]] auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            fds.push_back(fd);
        }
        for (int i = 0; i < silent; ++i) fds.push_back(raw_connect_nowait(port));
    }
    ~Crowd() {
        for (int fd : fds)
            if (fd >= 0) ::close(fd);
    }
    Crowd(const Crowd&) = delete;
    Crowd& operator=(const Crowd&) = delete;
};

// accept() as a server loop calls it: a client that fails its handshake is reported and the next
// one taken, within `timeout` seconds in all.
mp::Connection accept_past_failures(mp::Listener& listener, double timeout) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
        try {
            return listener.accept(std::max(0.0, timeout - seconds_since(t0)));
        } catch (const mp::AuthenticationError&) {
        }
    }
}

// accept() in a thread of its own, while the test plays the clients: what it returned, and when.
struct Acceptor {
    std::optional<mp::Connection> conn;
    std::string error;
    std::chrono::steady_clock::time_point returned_at;
    std::thread thread;
    Acceptor(mp::Listener& listener, double timeout)
        : thread([this, &listener, timeout] {
              try {
                  conn = accept_past_failures(listener, timeout);
              } catch (const std::exception& e) {
                  error = e.what();
              }
              returned_at = std::chrono::steady_clock::now();
          }) {}
    ~Acceptor() {
        if (thread.joinable()) thread.join();
    }
};

// A crowd of `silent` silent peers and noise, then a good client: the seconds from the good
// client's connect to accept() returning it (negative after a failure, reported).
double seconds_to_accept_a_good_client(mp::Listener& listener, const std::string& key, int silent, std::uint32_t seed) {
    Acceptor acceptor(listener, 60.0);
    Crowd crowd(port_of(listener.address()), silent, seed);
    const auto t0 = std::chrono::steady_clock::now();
    try {
        auto client = mp::Client(listener.address(), {.authkey = key, .timeout = 20});
        client.send(std::string("good"));
    } catch (const mp::Error& e) {
        ADD_FAILURE() << "the good client failed: " << e.what();
    }
    acceptor.thread.join();
    if (!acceptor.conn) {
        ADD_FAILURE() << "accept() failed: " << acceptor.error;
        return -1;
    }
    EXPECT_TRUE(acceptor.conn->poll(30.0));
    EXPECT_EQ(acceptor.conn->recv<std::string>(), "good") << "accept() returned another connection";
    return std::chrono::duration<double>(acceptor.returned_at - t0).count();
}

// Calls accept() with short timeouts while `p` runs: nothing may be accepted. Returns what its
// errors said, each line starting with the error's kind.
std::string accept_nothing_while(mp::Listener& listener, mp::Process& p) {
    std::string said;
    const auto t0 = std::chrono::steady_clock::now();
    while (p.is_alive() && seconds_since(t0) < 60) {
        try {
            listener.accept(0.2);
            ADD_FAILURE() << "a client was accepted that should not have been";
        } catch (const mp::AuthenticationError& e) {
            said += std::string("AuthenticationError: ") + e.what() + '\n';
        } catch (const mp::TimeoutError& e) {
            said += std::string("TimeoutError: ") + e.what() + '\n';
        }
    }
    return said;
}

// A child's side: becomes another user, connects, sends its uid and expects 1 back. Exits 0 if
// let in, 3 if refused.
void client_as(std::string address, uid_t uid, gid_t gid) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 || ::setresuid(uid, uid, uid) != 0) mp::exit(5);
    try {
        auto c = mp::Client(address, {.timeout = 30});
        c.send(static_cast<unsigned>(::getuid()));
        if (!c.poll(30.0)) mp::exit(4);
        mp::exit(c.recv<int>() == 1 ? 0 : 4);
    } catch (const mp::AuthenticationError&) {
        mp::exit(3);
    } catch (const mp::EOFError&) {
        mp::exit(3);
    } catch (const mp::BrokenPipeError&) {
        mp::exit(3);
    }
}

}  // namespace

TEST_F(ListenerTest, AddressesAreCheckedWithClearErrors) {
    EXPECT_THROW(mp::Listener("no-port"), mp::ValueError);
    EXPECT_THROW(mp::Listener("127.0.0.1:99999"), mp::ValueError);
    EXPECT_THROW(mp::Listener("127.0.0.1:http"), mp::ValueError);
    EXPECT_THROW(mp::Listener("::1:0"), mp::ValueError);
    EXPECT_THROW(mp::Listener("[::1"), mp::ValueError);
    EXPECT_THROW(mp::Listener("@"), mp::ValueError);
    EXPECT_THROW(mp::Listener(""), mp::ValueError);
    EXPECT_THROW(mp::Listener("/" + std::string(200, 'x')), mp::ValueError);
    EXPECT_THROW(mp::Client("127.0.0.1:1", {.timeout = 5}), mp::OSError);  // nothing listens on port 1
}

TEST_P(ListenerMethods, TcpPortZeroPicksAPortAndClientsTalk) {
    mp::Listener listener("127.0.0.1:0");
    ASSERT_NE(port_of(listener.address()), 0u) << listener.address();
    auto p = ctx().Process(echo_client, listener.address(), std::string());
    p.start();
    auto conn = listener.accept(30.0);
    EXPECT_EQ(conn.recv<std::string>(), "hello from " + std::to_string(p.pid()));
    conn.send(41);
    EXPECT_TRUE(conn.poll(30.0));
    EXPECT_EQ(conn.recv<int>(), 42);
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST_F(ListenerTest, Ipv6AndUnixSocketsWork) {
    std::vector<std::string> addresses{"@mprocess-test-" + std::to_string(::getpid())};
    const auto path =
        std::filesystem::temp_directory_path() / ("mprocess-test-" + std::to_string(::getpid()) + ".sock");
    addresses.push_back(path.string());
    try {
        mp::Listener probe("[::1]:0");
        addresses.push_back("[::1]:0");
    } catch (const mp::OSError&) {
        std::cerr << "no IPv6 loopback here: that case is skipped\n";
    }
    for (const auto& a : addresses) {
        mp::Listener listener(a, {.authkey = "key"});
        if (a == path.string()) {
            EXPECT_TRUE(std::filesystem::exists(path));
        }
        mp::Process p(echo_client, listener.address(), std::string("key"));
        p.start();
        auto conn = listener.accept(30.0);
        EXPECT_EQ(conn.recv<std::string>().rfind("hello from ", 0), 0u) << a;
        conn.send(1);
        EXPECT_EQ(conn.recv<int>(), 2) << a;
        p.join();
        EXPECT_EQ(p.exitcode(), 0) << a;
        listener.close();
        if (a == path.string()) {
            EXPECT_FALSE(std::filesystem::exists(path));
        }
    }
}

namespace {
// A socket file path of this test's own in /tmp, which every user may reach.
std::string socket_path(const char* what) {
    return "/tmp/mprocess-test-" + std::to_string(::getpid()) + "-" + what + ".sock";
}

mode_t permissions_of(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return 07777;
    return st.st_mode & 07777;
}

// 0 if a connect() to the socket file at path succeeds, else its errno.
int try_connect(const char* path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, path, sizeof un.sun_path - 1);
    const int err = ::connect(fd, reinterpret_cast<const sockaddr*>(&un), sizeof un) == 0 ? 0 : errno;
    ::close(fd);
    return err;
}
}  // namespace

TEST_F(ListenerTest, AUnixSocketFileIsItsOwnersAloneWhateverTheUmask) {
    const std::string path = socket_path("owner");
    mp::Listener listener = [&] {
        testing_support::Umask none(0);
        return mp::Listener(path);
    }();
    EXPECT_EQ(permissions_of(path), 0600u);
    listener.close();
    EXPECT_EQ(permissions_of(path), 07777u) << "the socket file was left behind";
}

TEST_F(ListenerTest, AUnixSocketFileTakesTheModeAskedForLessTheUmask) {
    const std::string path = socket_path("mode");
    {
        testing_support::Umask none(0);
        mp::Listener listener(path, {.mode = 0666});
        EXPECT_EQ(permissions_of(path), 0666u);
    }
    {
        testing_support::Umask group(027);
        mp::Listener listener(path, {.mode = 0666});
        EXPECT_EQ(permissions_of(path), 0640u);
    }
    EXPECT_THROW(mp::Listener(path, {.mode = 04777}), mp::ValueError);
    EXPECT_EQ(permissions_of(path), 07777u);
}

TEST_F(ListenerTest, AnotherUserCannotConnectToAUnixSocketFileUnlessTheModeAllows) {
    if (const auto why = testing_support::cannot_become_another_user(); !why.empty()) GTEST_SKIP() << why;
    const std::string path = socket_path("stranger");
    testing_support::Umask none(0);
    {
        mp::Listener listener(path);
        EXPECT_EQ(testing_support::as_nobody([&] { return try_connect(path.c_str()); }), EACCES);
    }
    mp::Listener listener(path, {.mode = 0666});
    EXPECT_EQ(testing_support::as_nobody([&] { return try_connect(path.c_str()); }), 0);
}

TEST_P(ListenerMethods, AWrongKeyFailsOnBothEndsAndTheListenerGoesOn) {
    mp::Listener listener("127.0.0.1:0", {.authkey = "right"});
    auto bad = ctx().Process(echo_client, listener.address(), std::string("wrong"));
    bad.start();
    // accept() waits on for a client that does authenticate, and its timeout says why others failed.
    // As Python's: accept() throws AuthenticationError for that client, and goes on afterwards.
    const std::string said = accept_nothing_while(listener, bad);
    EXPECT_NE(said.find("AuthenticationError: the other end does not know the authkey"), std::string::npos) << said;
    bad.join();
    EXPECT_EQ(bad.exitcode(), 3);  // the client saw AuthenticationError

    auto good = ctx().Process(echo_client, listener.address(), std::string("right"));
    good.start();
    auto conn = listener.accept(30.0);
    EXPECT_EQ(conn.recv<std::string>(), "hello from " + std::to_string(good.pid()));
    conn.send(1);
    EXPECT_EQ(conn.recv<int>(), 2);
    good.join();
    EXPECT_EQ(good.exitcode(), 0);
}

// A child's side of a handshake with a key on one end only: exit 3 for AuthenticationError at
// Client() or, without a key, at its first look for a message; exit 0 if it was let in.
void one_sided_client(std::string address, std::string key) {
    try {
        auto c = mp::Client(address, {.authkey = key, .timeout = 60});
        c.poll(60.0);
        mp::exit(0);
    } catch (const mp::AuthenticationError&) {
        mp::exit(3);
    }
}

// 60 s for the handshake on both ends: a failure within 10 s can only be the mismatch known at
// once, not a timeout.
TEST_P(ListenerMethods, AKeyOnOneEndOnlyFailsAtOnceOnBothEnds) {
    for (const bool key_on_client : {true, false}) {
        const std::string key = "k";
        mp::Listener listener("127.0.0.1:0", {.authkey = key_on_client ? "" : key, .handshake_timeout = 60});
        const auto t0 = std::chrono::steady_clock::now();
        auto p = ctx().Process(one_sided_client, listener.address(), key_on_client ? key : "");
        p.start();
        const std::string said = accept_nothing_while(listener, p);
        const std::string want = key_on_client ? "AuthenticationError: the client has an authkey"
                                               : "AuthenticationError: the client has no authkey";
        EXPECT_NE(said.find(want), std::string::npos) << said;
        p.join();
        EXPECT_EQ(p.exitcode(), 3) << "the client did not see AuthenticationError";
        EXPECT_LT(seconds_since(t0), 10.0);
    }
}

// As Python's: a key-less Client() returns before the listener accepts, so one thread may
// connect and then accept (CPython's test_issue16955 does).
TEST_F(ListenerTest, AKeylessClientMayConnectBeforeTheSameThreadAccepts) {
    mp::Listener listener("127.0.0.1:0");
    auto client = mp::Client(listener.address());
    auto server_side = listener.accept(30.0);
    server_side.send_bytes("hello");
    EXPECT_TRUE(client.poll(30.0));
    EXPECT_EQ(client.recv_bytes(), "hello");
    client.send(std::string("and back"));
    EXPECT_EQ(server_side.recv<std::string>(), "and back");
}

// poll(timeout) on a socket connection returns false once the timeout passes with nothing to read,
// and true once a message is there: on both ends.
TEST_F(ListenerTest, ASocketConnectionsPollEndsAtItsTimeout) {
    mp::Listener listener("127.0.0.1:0");
    mp::Connection server_end;
    std::thread t([&] { server_end = listener.accept(20.0); });
    mp::Connection client = mp::Client(listener.address());
    t.join();
    EXPECT_FALSE(client.poll(0.2));
    EXPECT_FALSE(server_end.poll(0.2));
    server_end.send(5);
    ASSERT_TRUE(client.poll(20.0));
    EXPECT_EQ(client.recv<int>(), 5);
    client.send(6);
    ASSERT_TRUE(server_end.poll(20.0));
    EXPECT_EQ(server_end.recv<int>(), 6);
}

// Options take time as every wait does, a Timeout; a handshake without an end is refused.
TEST_F(ListenerTest, TimeoutsAreTimeoutsAndAHandshakeMustEnd) {
    EXPECT_THROW(mp::Listener("127.0.0.1:0", {.handshake_timeout = mp::forever}), mp::ValueError);
    mp::Listener listener("127.0.0.1:0", {.handshake_timeout = std::chrono::milliseconds(1500)});
    std::thread t([&] { mp::Client(listener.address(), {.timeout = std::chrono::seconds(20)}).send(7); });
    EXPECT_EQ(listener.accept(20.0).recv<int>(), 7);
    t.join();
}

// Each pending handshake has its own deadline: the silent peer is dropped when it passes, the
// babbling ones at once, and none of them delays the good client.
TEST_F(ListenerTest, ASilentOrBabblingPeerCostsOnlyItsOwnConnection) {
    mp::Listener listener("127.0.0.1:0", {.authkey = "k", .handshake_timeout = 0.3});
    const unsigned port = port_of(listener.address());
    const int silent = raw_connect(port);
    ASSERT_GE(silent, 0);
    const int babbler = raw_connect(port);
    raw_frame_header(babbler, std::uint64_t{1} << 40);  // a huge handshake message
    const int junk = raw_connect(port);
    raw_frame_header(junk, 32);
    raw_write(junk, std::string(32, 'x').data(), 32);  // not a hello

    mp::Process p(echo_client, listener.address(), std::string("k"));
    p.start();
    auto conn = accept_past_failures(listener, 30.0);
    EXPECT_EQ(conn.recv<std::string>(), "hello from " + std::to_string(p.pid()));
    conn.send(5);
    EXPECT_EQ(conn.recv<int>(), 6);
    p.join();
    EXPECT_EQ(p.exitcode(), 0);

    const auto t0 = std::chrono::steady_clock::now();
    while (!(closed_by_peer(silent) && closed_by_peer(babbler) && closed_by_peer(junk)) && seconds_since(t0) < 30) {
        EXPECT_THROW(listener.accept(0.1), mp::Error);  // a failed handshake, or none completed
    }
    EXPECT_TRUE(closed_by_peer(silent));
    EXPECT_TRUE(closed_by_peer(babbler));
    EXPECT_TRUE(closed_by_peer(junk));
    for (int fd : {silent, babbler, junk}) ::close(fd);
}

TEST_F(ListenerTest, HostileFramesEndOnlyTheirConnection) {
    mp::Listener listener("127.0.0.1:0", {.max_message = 1 << 20});
    const unsigned port = port_of(listener.address());

    const int big = raw_connect(port);
    raw_hello(big);
    auto c1 = listener.accept(30.0);
    raw_frame_header(big, std::uint64_t{1} << 40);
    try {
        c1.recv_bytes();
        FAIL() << "no error";
    } catch (const mp::DecodeError& e) {
        EXPECT_NE(std::string(e.what()).find("exceeds"), std::string::npos) << e.what();
    }
    EXPECT_THROW(c1.recv_bytes(), mp::EOFError);  // that connection is over

    const int truncated = raw_connect(port);
    raw_hello(truncated);
    auto c2 = listener.accept(30.0);
    raw_frame_header(truncated, 100);
    raw_write(truncated, "0123456789", 10);
    ::close(truncated);
    EXPECT_THROW(c2.recv_bytes(), mp::EOFError);

    const int noise = raw_connect(port);
    raw_hello(noise);
    auto c3 = listener.accept(30.0);
    raw_frame_header(noise, 12);
    raw_write(noise, "random bytes", 12);
    EXPECT_THROW(c3.recv<std::string>(), mp::TypeMismatch);  // not a string's message
    EXPECT_EQ(c3.recv_bytes(), "random bytes");              // and it was left unread

    // A well-behaved client is served meanwhile and afterwards.
    auto client = mp::Client(listener.address());
    auto c4 = listener.accept(30.0);
    client.send(std::string("fine"));
    EXPECT_EQ(c4.recv<std::string>(), "fine");
    for (int fd : {big, noise}) ::close(fd);
}

TEST_F(ListenerTest, AMessageOfTheWrongTypeIsLeftForTheRightOne) {
    mp::Listener listener("@mprocess-type-" + std::to_string(::getpid()));
    auto client = mp::Client(listener.address());
    auto conn = listener.accept(30.0);
    client.send(7);
    EXPECT_THROW(conn.recv<std::string>(), mp::TypeMismatch);
    EXPECT_EQ(conn.recv<int>(), 7);
    // A big message crosses whole, through the read buffer and past it.
    std::string big(8 << 20, 'z');
    big[12345] = 'a';
    std::thread sender([&] { client.send_bytes(big); });
    EXPECT_EQ(conn.recv_bytes(), big);
    sender.join();
    client.close();
    EXPECT_THROW(conn.recv_bytes(), mp::EOFError);
}

TEST_F(ListenerTest, FiftyClientsOfAThousandMessagesLoseNothing) {
    mp::Listener listener("127.0.0.1:0", {.authkey = "k"});
    std::vector<mp::Process> clients;
    for (int i = 0; i < 50; ++i) {
        clients.emplace_back(counting_client, listener.address(), 1000);
        clients.back().start();
    }
    std::vector<mp::Connection> conns;
    for (int i = 0; i < 50; ++i) conns.push_back(listener.accept(60.0));
    std::vector<long> sums(50, 0);
    std::vector<int> counts(50, 0);
    int finished = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (finished < 50 && seconds_since(t0) < 120) {
        std::vector<mp::Waitable> objs;
        for (int i = 0; i < 50; ++i)
            if (counts[i] < 1000) objs.emplace_back(conns[i]);
        const auto ready = mp::wait(objs, 10.0);
        for (int i = 0; i < 50; ++i) {
            if (counts[i] >= 1000 || std::find(ready.begin(), ready.end(), mp::Waitable(conns[i])) == ready.end())
                continue;
            do {
                sums[i] += conns[i].recv<int>();
                if (++counts[i] == 1000) {
                    conns[i].send(sums[i]);
                    ++finished;
                    break;
                }
            } while (conns[i].poll(0.0));
        }
    }
    for (auto& p : clients) {
        p.join();
        EXPECT_EQ(p.exitcode(), 0);
    }
    for (int i = 0; i < 50; ++i) EXPECT_EQ(counts[i], 1000);
}

TEST_P(ListenerMethods, AClientConnectionCanBeHandedToAChild) {
    mp::Listener listener("127.0.0.1:0");
    auto conn = mp::Client(listener.address());
    auto server_side = listener.accept(30.0);
    auto p = ctx().Process(answer_on, conn);
    p.start();
    conn.close();  // as Python's usual p.start(); conn.close(): the child's copy lives on
    server_side.send(21);
    EXPECT_EQ(server_side.recv<int>(), 42);
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

// A raw listening socket on loopback that speaks for the listener, byte by byte as the test says.
struct RawListener {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unsigned port = 0;
    RawListener() {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof sa;
        ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
        ::listen(fd, 4);
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
        port = ntohs(sa.sin_port);
    }
    ~RawListener() { ::close(fd); }
    std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

// A key-less client does not wait for the listener's welcome; when it comes in pieces, a look
// for messages in between finds none (no error), and the first message after it is whole.
TEST_F(ListenerTest, AWelcomeArrivingInPiecesIsTakenWholeBeforeTheFirstMessage) {
    RawListener raw;
    auto client = mp::Client(raw.address());
    const int peer = ::accept(raw.fd, nullptr, nullptr);
    ASSERT_GE(peer, 0);
    const std::string welcome = frame("#WELCOME#");
    raw_write(peer, welcome.data(), 5);
    EXPECT_FALSE(client.poll(0.05));
    EXPECT_FALSE(client.poll(0.0));
    const std::string rest = welcome.substr(5) + frame(mp::encode(42));
    raw_write(peer, rest.data(), rest.size());
    EXPECT_EQ(client.recv<int>(), 42);
    ::close(peer);
}

// Anything but a welcome (a listener that needs a key, one that speaks another protocol) ends the
// connection: its bytes are never handed out as a message.
TEST_F(ListenerTest, ARefusalOrAStrangeFirstFrameEndsAKeylessClientsConnection) {
    for (const std::string& first :
         {std::string("#NEEDKEY#"), std::string("#CHALLENGE#sha256:") + std::string(32, 'x')}) {
        RawListener raw;
        auto client = mp::Client(raw.address());
        const int peer = ::accept(raw.fd, nullptr, nullptr);
        ASSERT_GE(peer, 0);
        const std::string bytes = frame(first) + frame(mp::encode(7));
        raw_write(peer, bytes.data(), bytes.size());
        try {
            client.recv<int>();
            ADD_FAILURE() << "a connection the listener did not welcome was used";
        } catch (const mp::AuthenticationError& e) {
            if (first == "#NEEDKEY#") {
                EXPECT_NE(std::string(e.what()).find("requires an authkey"), std::string::npos) << e.what();
            }
        }
        EXPECT_THROW(client.recv<int>(), mp::Error);  // still over, never the 7
        ::close(peer);
    }
}

// A key-less client may send and leave before the listener accepts (as Python's may): what it
// sent is still delivered, then its end of file.
TEST_F(ListenerTest, AClientThatSendsAndLeavesBeforeAcceptIsStillHeard) {
    mp::Listener listener("@mprocess-leaver-" + std::to_string(::getpid()));
    {
        auto client = mp::Client(listener.address());
        client.send(std::string("parting words"));
        client.close();
    }
    auto conn = listener.accept(30.0);
    EXPECT_EQ(conn.recv<std::string>(), "parting words");
    EXPECT_THROW(conn.recv<std::string>(), mp::EOFError);
}

// A client that sends at once may have its messages read ahead by accept() (or by an earlier
// recv) into this end's buffer: they travel with the connection, to a child and on to its child.
TEST_P(ListenerMethods, MessagesReadAheadTravelWithAConnectionToAChildAndAGrandchild) {
    for (const std::string key : {"k", ""}) {
        mp::Listener listener("127.0.0.1:0", {.authkey = key});
        std::promise<void> all_sent;
        int answer = -1;
        std::thread client([&] {
            auto c = mp::Client(listener.address(), {.authkey = key});
            for (int i = 1; i <= 3; ++i) c.send(i);
            all_sent.set_value();
            try {
                answer = c.recv<int>();
            } catch (const mp::Error&) {  // the answer never came: the checks below say so
            }
        });
        auto server_side = listener.accept(30.0);
        all_sent.get_future().wait();
        // On loopback a finished send is in our receive queue: this recv reads all three.
        EXPECT_EQ(server_side.recv<int>(), 1);
        auto p = ctx().Process(read_one_and_hand_on, server_side, GetParam());
        p.start();
        if (!p.join(60.0)) p.kill();  // a lost message would leave the child waiting for it
        p.join();
        server_side.close();
        client.join();
        EXPECT_EQ(p.exitcode(), 0) << "key '" << key << "'";
        EXPECT_EQ(answer, 23) << "key '" << key << "'";
    }
}

// Handshakes run side by side: 200 connections that say nothing, a frame sent in part and frames
// of random bytes do not hold up a good client, with a key or without. (Typically a few
// milliseconds here; the bound is for a loaded machine.) The kernel's queue is made long enough
// for the crowd, so that the good client's connect is never dropped and retried a second later:
// that would be the kernel's delay, not the handshake's.
TEST_F(ListenerTest, TwoHundredSilentPeersAndNoiseDoNotDelayAGoodClient) {
    for (const std::string key : {"", "k"}) {
        mp::Listener listener("127.0.0.1:0", {.authkey = key, .backlog = 1024});
        const double latency = seconds_to_accept_a_good_client(listener, key, 200, 1);
        std::cout << "key '" << key << "': the good client was accepted after " << latency * 1000 << " ms\n";
        EXPECT_GE(latency, 0.0);
        EXPECT_LT(latency, 2.0) << "key '" << key << "'";
    }
}

// Several clients complete out of the order they came in: each accept() returns the next one
// that has finished its handshake, and those still under way wait for the next call.
TEST_F(ListenerTest, AcceptReturnsWhicheverHandshakeCompletesFirst) {
    mp::Listener listener("127.0.0.1:0", {.handshake_timeout = 60});
    const unsigned port = port_of(listener.address());
    const int slow = raw_connect(port);
    const std::string hello = frame("#HELLO#nokey");
    raw_write(slow, hello.data(), 5);
    const int quick = raw_connect(port);
    raw_write(quick, hello.data(), hello.size());
    const std::string first = frame(mp::encode(std::string("quick")));
    raw_write(quick, first.data(), first.size());
    auto a = listener.accept(30.0);
    EXPECT_EQ(a.recv<std::string>(), "quick");
    EXPECT_THROW(listener.accept(0.05), mp::TimeoutError);  // the slow one is still half way
    const std::string rest = hello.substr(5) + frame(mp::encode(std::string("slow")));
    raw_write(slow, rest.data(), rest.size());
    auto b = listener.accept(30.0);
    EXPECT_EQ(b.recv<std::string>(), "slow");
    for (int fd : {slow, quick}) ::close(fd);
}

// Past max_pending_per_source handshakes from one address, a new connection from there drops the
// one whose peer has stalled longest (owed a message for over a second); one from a burst that is
// not stalled stays, and every handshake left goes on.
TEST_F(ListenerTest, PastItsLimitASourcesStalledHandshakesAreDroppedOldestFirst) {
    mp::Listener listener("127.0.0.1:0", {.handshake_timeout = 60, .max_pending_per_source = 2});
    const unsigned port = port_of(listener.address());
    const int a = raw_connect(port), b = raw_connect(port);
    EXPECT_THROW(listener.accept(1.5), mp::TimeoutError);  // a and b are taken in, and stall
    const int c = raw_connect(port), d = raw_connect(port);
    const auto t0 = std::chrono::steady_clock::now();
    while (!(closed_by_peer(a) && closed_by_peer(b)) && seconds_since(t0) < 30)
        EXPECT_THROW(listener.accept(0.1), mp::TimeoutError);
    EXPECT_TRUE(closed_by_peer(a) && closed_by_peer(b)) << "the stalled ones were not dropped";
    const int e = raw_connect(port);  // over the limit again, but c and d are not stalled yet
    EXPECT_THROW(listener.accept(0.1), mp::TimeoutError);
    for (int fd : {c, d, e}) EXPECT_FALSE(closed_by_peer(fd));
    for (int fd : {e, c, d}) {
        raw_hello(fd);
        auto conn = listener.accept(30.0);
        raw_frame_header(fd, 0);
        EXPECT_EQ(conn.recv_bytes(std::nullopt, 30.0), "");
    }
    for (int fd : {a, b, c, d, e}) ::close(fd);
}

// A peer announcing a huge message and then stalling costs only the bytes it really sent: the
// receive buffer grows as bytes arrive, and a receive that fails gives its memory back. Four
// peers announce 256 MiB each and send 64 KiB: the process grows by less than 64 MiB (it grew by
// the whole 1 GiB when the buffer was sized by the announced length).
TEST_F(ListenerTest, PeersAnnouncingHugeMessagesCostOnlyWhatTheySent) {
    if (!kSizeMeansSomething) std::cout << "under a sanitizer the process's size says nothing: it is not checked\n";
    mp::Listener listener("127.0.0.1:0");
    const unsigned port = port_of(listener.address());
    const std::size_t before = resident_bytes();
    std::vector<int> peers;
    std::vector<mp::Connection> conns;
    // The start of a string's message (its type tag, so that recv<std::string> takes it on).
    const std::string some = mp::encode(std::string(64 << 10, 'x'));
    for (int i = 0; i < 4; ++i) {
        peers.push_back(raw_connect(port));
        raw_hello(peers.back());
        conns.push_back(listener.accept(30.0));
        raw_frame_header(peers.back(), std::uint64_t{256} << 20);
        raw_write(peers.back(), some.data(), some.size());
    }
    for (std::size_t i = 0; i < conns.size(); ++i) {
        if (i % 2 == 0)
            EXPECT_THROW(conns[i].recv_bytes(std::nullopt, 0.2), mp::TimeoutError);
        else
            EXPECT_THROW(conns[i].recv<std::string>(0.2), mp::TimeoutError);
    }
    if (kSizeMeansSomething) {
        EXPECT_LT(resident_bytes(), before + 64 * MiB) << "the announced lengths were allocated";
    }
    for (int fd : peers) ::close(fd);
    for (auto& c : conns) EXPECT_THROW(c.recv<std::string>(30.0), mp::EOFError);
    if (kSizeMeansSomething) {
        EXPECT_LT(resident_bytes(), before + 64 * MiB) << "memory was kept after the peers left";
    }
}

// A client whose user differs from ours is refused on an abstract name (which any user can
// reach, and anyone can find in /proc/net/unix), before any byte of the handshake; allowed_uids
// lets a named user in.
TEST_P(ListenerMethods, AnAbstractNameRefusesAnotherUserUnlessAllowed) {
    if (const auto why = testing_support::cannot_become_another_user(); !why.empty()) GTEST_SKIP() << why;
    const passwd* nobody = ::getpwnam("nobody");
    const uid_t uid = nobody->pw_uid;
    const gid_t gid = nobody->pw_gid;
    const std::string name = "@mprocess-uid-" + std::to_string(::getpid()) + "-" + GetParam();
    {
        mp::Listener listener(name);
        auto p = ctx().Process(client_as, listener.address(), uid, gid);
        p.start();
        accept_nothing_while(listener, p);
        p.join();
        EXPECT_EQ(p.exitcode(), 3) << "the other user's client was not refused";
    }
    // Let in by name, or by a socket file whose mode lets everyone connect.
    const std::string path = socket_path(GetParam().c_str());
    for (const bool by_file : {false, true}) {
        std::optional<mp::Listener> listener;
        if (by_file) {
            testing_support::Umask none(0);  // no threads of ours meanwhile
            listener.emplace(path, mp::ListenerOptions{.mode = 0666});
        } else {
            listener.emplace(name, mp::ListenerOptions{.allowed_uids = {uid}});
        }
        auto p = ctx().Process(client_as, listener->address(), uid, gid);
        p.start();
        auto conn = listener->accept(60.0);
        EXPECT_EQ(conn.recv<unsigned>(), uid);
        conn.send(1);
        p.join();
        EXPECT_EQ(p.exitcode(), 0) << (by_file ? "by the file's mode" : "by allowed_uids");
    }
}

// A soak, a few seconds long: rounds of 200 silent peers and noise, each with a good client
// accepted within the bound, and a listener whose memory stays put: after the first round, the
// process grows by less than 32 MiB in all (pending handshakes hold at most 264 bytes each, and
// at most max_pending of them are kept).
TEST_F(ListenerTest, ASoakOfSilentPeersAndNoiseNeverStarvesAGoodClient) {
    mp::Listener listener("127.0.0.1:0", {.authkey = "k", .backlog = 1024});
    EXPECT_LT(seconds_to_accept_a_good_client(listener, "k", 200, 0), 2.0);
    const std::size_t before = resident_bytes();
    double worst = 0;
    for (std::uint32_t round = 1; round <= 20; ++round) {
        const double latency = seconds_to_accept_a_good_client(listener, "k", 200, round);
        worst = std::max(worst, latency);
        EXPECT_GE(latency, 0.0);
        EXPECT_LT(latency, 2.0) << "round " << round;
    }
    std::cout << "the slowest good client was accepted after " << worst * 1000 << " ms\n";
    if (kSizeMeansSomething) {
        EXPECT_LT(resident_bytes(), before + 32 * MiB);
    } else {
        std::cout << "under a sanitizer the process's size says nothing: it is not checked\n";
    }
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, ListenerMethods, testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });
