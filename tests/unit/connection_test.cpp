// SPDX-License-Identifier: Apache-2.0
#include <mprocess/connection.hpp>
#include <mprocess/listener.hpp>
#include <mprocess/process.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <numeric>
#include <random>
#include <span>
#include <string_view>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "helpers/children.hpp"
#include "helpers/messages.hpp"

using namespace std::chrono_literals;
using testing_support::ChildrenTest;

namespace {

class ConnectionTest : public ChildrenTest {};
class ConnectionMethods : public testing_support::MethodTest {};

using testing_support::pattern;
using testing_support::Reading;

// A child that sends back every byte message until it gets "stop".
mp::Process start_echo(const mp::Context& ctx, mp::Connection child_end) {
    auto p = ctx.Process(
        [](mp::Connection c) {
            for (;;) {
                std::string m = c.recv_bytes();
                if (m == "stop") return;
                c.send_bytes(m);
            }
        },
        child_end);
    p.start();
    child_end.close();
    return p;
}

}  // namespace

TEST_P(ConnectionMethods, TypedObjectsCrossAProcessBoundary) {
    auto [parent, child] = mp::Pipe();
    auto p = ctx().Process(
        [](mp::Connection c) {
            auto r = c.recv<Reading>();
            r.values.push_back(static_cast<double>(r.values.size()));
            c.send(r);
            auto m = c.recv<std::map<std::string, int>>();
            c.send(m.size());
        },
        child);
    p.start();
    child.close();
    parent.send(Reading{"t1", {1.5, 2.5}});
    EXPECT_EQ(parent.recv<Reading>(), (Reading{"t1", {1.5, 2.5, 2.0}}));
    parent.send(std::map<std::string, int>{{"a", 1}, {"b", 2}});
    EXPECT_EQ(parent.recv<std::size_t>(), 2u);
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST_F(ConnectionTest, MessagesAreNeverMergedOrSplitAndEmptyOnesCount) {
    auto [a, b] = mp::Pipe();
    a.send_bytes("ab");
    a.send_bytes("");
    a.send_bytes("cd");
    a.send_bytes("");
    EXPECT_EQ(b.recv_bytes(), "ab");
    EXPECT_EQ(b.recv_bytes(), "");
    EXPECT_EQ(b.recv_bytes(), "cd");
    EXPECT_EQ(b.recv_bytes(), "");
    EXPECT_FALSE(b.poll());
}

TEST_P(ConnectionMethods, EverySizeAroundTheRingBoundariesArrivesIntact) {
    auto [parent, child] = mp::Pipe(true, {.capacity = 4096});
    auto p = start_echo(ctx(), child);
    for (std::size_t n : {0, 1, 7, 8, 9, 63, 64, 65, 4072, 4080, 4088, 4089, 4096, 4097, 8191, 3 * 4096 + 5, 100000}) {
        std::string m = pattern(n, static_cast<unsigned>(n));
        parent.send_bytes(m);
        EXPECT_EQ(parent.recv_bytes(), m) << "size " << n;
    }
    parent.send_bytes("stop");
    p.join();
}

TEST_P(ConnectionMethods, AQuarterGigabyteMessageArrivesIntact) {
    auto [parent, child] = mp::Pipe();
    auto p = ctx().Process([](mp::Connection c) { c.send_bytes(pattern(std::size_t{256} << 20, 7)); }, child);
    p.start();
    child.close();
    std::string got = parent.recv_bytes();
    p.join();
    ASSERT_EQ(got.size(), std::size_t{256} << 20);
    EXPECT_TRUE(got == pattern(got.size(), 7));
}

TEST_F(ConnectionTest, AOneWayPipeUsedBackwardsThrowsOSErrorAsPythonDoes) {
    auto [r, w] = mp::Pipe(false);
    EXPECT_TRUE(r.readable());
    EXPECT_FALSE(r.writable());
    EXPECT_TRUE(w.writable());
    EXPECT_FALSE(w.readable());
    try {
        r.send(1);
        FAIL() << "sent on the read-only end";
    } catch (const mp::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::bad_file_descriptor);
        EXPECT_NE(std::string(e.what()).find("connection is read-only"), std::string::npos) << e.what();
    }
    try {
        w.recv<int>();
        FAIL() << "received on the write-only end";
    } catch (const mp::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::bad_file_descriptor);
        EXPECT_NE(std::string(e.what()).find("connection is write-only"), std::string::npos) << e.what();
    }
    EXPECT_THROW(r.send_bytes("x"), mp::OSError);
    EXPECT_THROW(w.recv_bytes(), mp::OSError);
    EXPECT_THROW(w.poll(), mp::OSError);
    w.send(5);
    EXPECT_EQ(r.recv<int>(), 5);
    r.close();
    EXPECT_THROW(r.recv<int>(), mp::ValueError);  // a closed end is still Python's ValueError
}

TEST_P(ConnectionMethods, RecvDrainsWhatWasSentThenThrowsEOFError) {
    auto [parent, child] = mp::Pipe();
    auto p = ctx().Process(
        [](mp::Connection c) {
            c.send(1);
            c.send(2);
        },
        child);
    p.start();
    child.close();
    p.join();
    EXPECT_TRUE(parent.poll());
    EXPECT_EQ(parent.recv<int>(), 1);
    EXPECT_EQ(parent.recv<int>(), 2);
    EXPECT_TRUE(parent.poll());  // recv would not block: it throws
    EXPECT_THROW(parent.recv<int>(), mp::EOFError);
}

TEST_P(ConnectionMethods, AKilledPeerGivesEOFErrorNotAHang) {
    auto [parent, child] = mp::Pipe();
    auto p = ctx().Process([] { std::this_thread::sleep_for(1h); });
    auto holder = ctx().Process([](mp::Connection) { std::this_thread::sleep_for(1h); }, child);
    holder.start();
    child.close();
    holder.kill();
    holder.join();
    EXPECT_THROW(parent.recv<int>(), mp::EOFError);
}

TEST_F(ConnectionTest, SendingToAClosedPeerThrowsBrokenPipe) {
    auto [a, b] = mp::Pipe(true, {.capacity = 4096});
    b.close();
    EXPECT_THROW(for (int i = 0; i < 100000; ++i) a.send(i), mp::BrokenPipeError);
}

TEST_F(ConnectionTest, RecvBytesIntoFitsOrThrowsBufferTooShortWithTheMessage) {
    auto [a, b] = mp::Pipe();
    std::array<char, 8> buf{};
    a.send_bytes("hello");
    EXPECT_EQ(b.recv_bytes_into(buf), 5u);
    EXPECT_EQ(std::string(buf.data(), 5), "hello");
    a.send_bytes("xy");
    EXPECT_EQ(b.recv_bytes_into(buf, 6), 2u);
    EXPECT_EQ(std::string(buf.data() + 6, 2), "xy");
    a.send_bytes("much too long");
    try {
        b.recv_bytes_into(buf);
        FAIL() << "no BufferTooShort";
    } catch (const mp::BufferTooShort& e) {
        EXPECT_EQ(e.message(), "much too long");
    }
    EXPECT_THROW(b.recv_bytes_into(buf, 9), mp::ValueError);
    EXPECT_FALSE(b.poll());
}

TEST_F(ConnectionTest, AMessageThatCannotBeReceivedAsAskedStaysUnread) {
    auto [a, b] = mp::Pipe();
    a.send(5);
    EXPECT_THROW(b.recv<double>(), mp::TypeMismatch);
    EXPECT_THROW(b.recv<std::string>(), mp::TypeMismatch);
    EXPECT_EQ(b.recv<int>(), 5);
    a.send_bytes("0123456789");
    EXPECT_THROW(b.recv_bytes(4), mp::OSError);
    EXPECT_EQ(b.recv_bytes(10), "0123456789");
    a.send_bytes("raw");
    EXPECT_THROW(b.recv<int>(), mp::TypeMismatch);
    EXPECT_EQ(b.recv_bytes(), "raw");
}

// A receive with a timeout: TimeoutError when no message comes in time, and nothing is lost: a
// message that comes later is received whole by the next call.
TEST_F(ConnectionTest, RecvWithATimeoutThrowsTimeoutErrorAndLosesNothing) {
    auto [a, b] = mp::Pipe();
    EXPECT_THROW(b.recv<int>(0.05), mp::TimeoutError);
    EXPECT_THROW(b.recv<std::string>(0.0), mp::TimeoutError);
    EXPECT_THROW(b.recv_bytes(std::nullopt, 0.05), mp::TimeoutError);
    a.send(7);
    a.send_bytes("raw");
    EXPECT_EQ(b.recv<int>(30.0), 7);
    EXPECT_EQ(b.recv_bytes(std::nullopt, 30.0), "raw");
    a.send_bytes("");
    EXPECT_EQ(b.recv_bytes(std::nullopt, 0.0), "");  // a message that is there is taken, even with no time
}

// Timeouts out of the ordinary: infinity and anything too long to count on the clock mean forever,
// not a wrapped-around deadline in the past; a NaN or a negative number means no waiting at all.
TEST_F(ConnectionTest, AnEndlessTimeoutIsForeverAndANotANumberOneIsZero) {
    EXPECT_TRUE(mp::Timeout(std::numeric_limits<double>::infinity()).infinite());
    EXPECT_TRUE(mp::Timeout(1e300).infinite());
    EXPECT_TRUE(mp::Timeout(std::chrono::hours::max()).infinite());
    EXPECT_TRUE(mp::Timeout(std::chrono::nanoseconds::max()).infinite());
    EXPECT_EQ(mp::Timeout(std::numeric_limits<double>::quiet_NaN()).duration(), std::chrono::nanoseconds(0));
    EXPECT_EQ(mp::Timeout(-std::numeric_limits<double>::infinity()).duration(), std::chrono::nanoseconds(0));
    EXPECT_EQ(mp::Timeout(std::chrono::hours::min()).duration(), std::chrono::nanoseconds(0));
    EXPECT_EQ(mp::Timeout(2.5).duration(), std::chrono::milliseconds(2500));
    EXPECT_FALSE(mp::Timeout(3e8).infinite());  // ten years is still a number
    EXPECT_GT(*mp::Timeout(3e8).deadline(), mp::Timeout::clock::now());

    auto [a, b] = mp::Pipe();
    EXPECT_FALSE(b.poll(std::numeric_limits<double>::quiet_NaN()));
    EXPECT_THROW(b.recv<int>(std::numeric_limits<double>::quiet_NaN()), mp::TimeoutError);
    a.send(7);
    EXPECT_TRUE(b.poll(std::numeric_limits<double>::infinity()));
    EXPECT_EQ(b.recv<int>(std::numeric_limits<double>::infinity()), 7);
}

// On a socket a message may arrive in parts: a receive that times out half way keeps what came,
// and the next receive, of the same kind or another, goes on from it.
TEST_F(ConnectionTest, ASocketMessageHalfArrivedIsKeptAcrossATimeout) {
    mp::Listener listener("@mprocess-recv-timeout-" + std::to_string(::getpid()));
    auto client = mp::Client(listener.address());
    auto conn = listener.accept(30.0);
    std::string big(4 << 20, 'z');  // longer than the read buffer: its body goes past it
    big[12345] = 'a';
    big.back() = 'b';
    const std::string body = mp::encode(big);
    const std::uint64_t length = body.size();
    const std::string wire = std::string(reinterpret_cast<const char*>(&length), sizeof length) + body;
    const std::size_t half = wire.size() / 2;
    std::promise<void> go;
    // The client's socket, written raw: the first half now, the rest when told.
    std::thread writer([&, fd = client.fileno()] {
        auto send_all = [fd](const char* p, std::size_t n) {
            while (n > 0) {
                const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
                if (k <= 0) return;
                p += k;
                n -= static_cast<std::size_t>(k);
            }
        };
        send_all(wire.data(), half);
        go.get_future().wait();
        send_all(wire.data() + half, wire.size() - half);
    });
    EXPECT_THROW(conn.recv<std::string>(0.3), mp::TimeoutError);
    EXPECT_THROW(conn.recv_bytes(std::nullopt, 0.1), mp::TimeoutError);
    EXPECT_THROW(conn.recv<std::string>(0.1), mp::TimeoutError);
    go.set_value();
    EXPECT_EQ(conn.recv<std::string>(30.0), big);
    writer.join();
    client.send(5);
    EXPECT_EQ(conn.recv<int>(30.0), 5);
}

TEST_F(ConnectionTest, SendBytesHonoursOffsetAndSize) {
    auto [a, b] = mp::Pipe();
    a.send_bytes("abcdef", 2, 3);
    a.send_bytes("abcdef", 4);
    EXPECT_EQ(b.recv_bytes(), "cde");
    EXPECT_EQ(b.recv_bytes(), "ef");
    EXPECT_THROW(a.send_bytes("abc", 4), mp::ValueError);
    EXPECT_THROW(a.send_bytes("abc", 1, 5), mp::ValueError);
}

TEST_P(ConnectionMethods, PollWaitsUpToItsTimeout) {
    auto [a, b] = mp::Pipe();
    EXPECT_FALSE(b.poll());
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(b.poll(0.1));
    auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(waited, 95ms);
    EXPECT_LT(waited, 5s);
    auto p = ctx().Process(
        [](mp::Connection c) {
            std::this_thread::sleep_for(50ms);
            c.send(1);
        },
        a);
    p.start();
    EXPECT_TRUE(b.poll(mp::forever));
    EXPECT_EQ(b.recv<int>(), 1);
    p.join();
}

TEST_F(ConnectionTest, CloseClosesEveryHandleAndLaterUseThrows) {
    auto [a, b] = mp::Pipe();
    mp::Connection copy = a;
    EXPECT_EQ(copy, a);
    EXPECT_GE(a.fileno(), 0);
    a.close();
    EXPECT_TRUE(a.closed());
    EXPECT_TRUE(copy.closed());
    EXPECT_THROW(copy.send(1), mp::ValueError);
    EXPECT_THROW(a.recv<int>(), mp::ValueError);
    EXPECT_THROW((void)a.fileno(), mp::ValueError);
    a.close();
    EXPECT_TRUE(mp::Connection().closed());
    EXPECT_THROW(b.recv<int>(), mp::EOFError);
}

TEST_P(ConnectionMethods, WaitReturnsExactlyTheReadyObjects) {
    auto [a1, b1] = mp::Pipe();
    auto [a2, b2] = mp::Pipe();
    auto p = ctx().Process([](mp::Connection c) { c.send(std::string("second")); }, b2);
    p.start();
    b2.close();
    auto ready = mp::wait({a1, a2}, 10.0);
    ASSERT_EQ(ready.size(), 1u);
    EXPECT_EQ(ready[0].connection(), a2);
    EXPECT_EQ(a2.recv<std::string>(), "second");
    p.join();

    auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(mp::wait({a1}, 0.1).empty());
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 95ms);

    auto q = ctx().Process([] { std::this_thread::sleep_for(30ms); });
    q.start();
    auto done = mp::wait({a1, mp::Waitable(q)}, 10.0);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].fd(), q.sentinel());
    q.join();
}

TEST_P(ConnectionMethods, ManyProcessesCanSendOnOneEndWithoutMixingMessages) {
    auto [r, w] = mp::Pipe(false, {.capacity = 8192});
    constexpr int kWriters = 4, kEach = 10000;
    std::vector<mp::Process> writers;
    for (int id = 0; id < kWriters; ++id) {
        writers.push_back(ctx().Process(
            [](mp::Connection c, int who) {
                for (int i = 0; i < kEach; ++i) c.send(std::vector<int>{who, i, who * i});
            },
            w, id));
        writers.back().start();
    }
    w.close();
    std::vector<int> next(kWriters, 0);
    for (int n = 0; n < kWriters * kEach; ++n) {
        auto m = r.recv<std::vector<int>>();
        ASSERT_EQ(m.size(), 3u);
        ASSERT_EQ(m[1], next[m[0]]) << "writer " << m[0] << " out of order";
        ASSERT_EQ(m[2], m[0] * m[1]);
        ++next[m[0]];
    }
    for (auto& p : writers) p.join();
    EXPECT_THROW(r.recv<std::vector<int>>(), mp::EOFError);
}

TEST_F(ConnectionTest, ThreadsCanShareAnEnd) {
    auto [r, w] = mp::Pipe(false, {.capacity = 4096});
    constexpr int kThreads = 4, kEach = 5000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < kEach; ++i) w.send(std::array<int, 2>{t, i});
        });
    std::vector<int> next(kThreads, 0);
    for (int n = 0; n < kThreads * kEach; ++n) {
        auto m = r.recv<std::array<int, 2>>();
        ASSERT_EQ(m[1], next[m[0]]++);
    }
    for (auto& t : threads) t.join();
}

TEST_P(ConnectionMethods, AWriterKilledInsideALargeMessageBreaksThePipeCleanly) {
    auto [r, w] = mp::Pipe(false, {.capacity = 4096});
    auto p = ctx().Process(
        [](mp::Connection c) {
            c.send(std::string("whole"));
            c.send_bytes(pattern(1 << 20, 1));  // blocks: nobody reads it all
        },
        w);
    p.start();
    w.close();
    EXPECT_EQ(r.recv<std::string>(), "whole");
    ASSERT_TRUE(r.poll(10.0));  // the large message has begun
    p.kill();
    p.join();
    EXPECT_THROW(r.recv_bytes(), mp::EOFError);
    EXPECT_THROW(r.recv_bytes(), mp::BrokenPipeError);
}

TEST_P(ConnectionMethods, ConnectionsPassedToChildrenCarryTrafficBothWays) {
    auto [parent, child] = mp::Pipe();
    auto p = ctx().Process(
        [](mp::Connection c) {
            int total = 0;
            for (;;) {
                int v = c.recv<int>();
                if (v < 0) break;
                total += v;
                c.send(total);
            }
        },
        child);
    p.start();
    child.close();
    int expect = 0;
    for (int i = 1; i <= 1000; ++i) {
        parent.send(i);
        expect += i;
        ASSERT_EQ(parent.recv<int>(), expect);
    }
    parent.send(-1);
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, ConnectionMethods, ::testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });

TEST_F(ConnectionTest, WritersKilledAtRandomMomentsNeverCorruptTheStream) {
    auto [r, w] = mp::Pipe(false, {.capacity = 4096});
    constexpr int kWriters = 4;
    std::vector<mp::Process> writers;
    for (int id = 0; id < kWriters; ++id) {
        writers.emplace_back(
            [](mp::Connection c, int who) {
                for (int i = 0;; ++i) c.send(std::vector<int>{who, i, who * 1000 + i});
            },
            w, id);
        writers.back().start();
    }
    w.close();
    std::mt19937 rng(std::random_device{}());
    std::vector<int> next(kWriters, 0);
    auto read_checked = [&](int n) {
        for (int k = 0; k < n; ++k) {
            auto m = r.recv<std::vector<int>>();  // a torn message would throw or fail below
            ASSERT_EQ(m.size(), 3u);
            ASSERT_TRUE(m[0] >= 0 && m[0] < kWriters);
            ASSERT_EQ(m[1], next[m[0]]) << "writer " << m[0] << ": a message was lost or repeated";
            ASSERT_EQ(m[2], m[0] * 1000 + m[1]);
            ++next[m[0]];
        }
    };
    for (int victim = 0; victim < kWriters; ++victim) {
        read_checked(100 + static_cast<int>(rng() % 3000));
        writers[victim].kill();  // at whatever point of send() it happens to be
        writers[victim].join();
    }
    for (;;) {  // what the dead writers published before dying, then EOF
        try {
            read_checked(1);
        } catch (const mp::EOFError&) {
            break;
        }
    }
    EXPECT_GE(std::accumulate(next.begin(), next.end(), 0), 400);
}

TEST_F(ConnectionTest, CloseWakesAThreadBlockedOnTheSameEnd) {
    auto [a, b] = mp::Pipe();
    std::thread blocked([conn = a]() mutable { EXPECT_THROW(conn.recv<int>(), mp::ValueError); });
    a.close();  // whether the thread is already asleep or not yet inside recv(), it must not hang
    blocked.join();
    EXPECT_THROW(b.recv<int>(), mp::EOFError);  // and the peer sees the end go
}

TEST_F(ConnectionTest, ViewsArePointersAndCannotBeMessages) {
    static_assert(!mp::Serializable<std::string_view>);
    static_assert(!mp::Serializable<std::span<int>>);
    static_assert(!mp::Serializable<int*>);
    static_assert(mp::Serializable<std::string>);
}
