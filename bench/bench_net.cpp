// SPDX-License-Identifier: Apache-2.0
// Client/Listener round trip on loopback TCP with an authkey, next to plain TCP sockets doing the
// same exchange (one send and one recv each way); and a Manager's queue between two processes.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>

#include <benchmark/benchmark.h>
#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

namespace {

// The echo: each int back, until -1.
void echo(std::string address) {
    auto c = mp::Client(address, {.authkey = "bench"});
    for (;;) {
        const int v = c.recv<int>();
        c.send(v);
        if (v < 0) return;
    }
}

void BM_ClientRoundTrip(benchmark::State& state) {
    mp::Listener listener("127.0.0.1:0", {.authkey = "bench"});
    mp::Process child(echo, listener.address());
    child.start();
    auto conn = listener.accept(30.0);
    int i = 0;
    for (auto _ : state) {
        conn.send(i);
        if (conn.recv<int>() != i) {
            state.SkipWithError("echo returned another value");
            break;
        }
        i = (i + 1) & 0xffff;
    }
    conn.send(-1);
    conn.recv<int>();
    child.join();
}
BENCHMARK(BM_ClientRoundTrip)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(1.0);

// Plain TCP on loopback: an 8-byte header and a 4-byte int, as one send each way.
void BM_RawTcpRoundTrip(benchmark::State& state) {
    int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(lfd, 1) != 0 ||
        ::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
        state.SkipWithError("cannot listen");
        return;
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
        int c = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (::connect(c, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) ::_exit(1);
        char buf[12];
        for (;;) {
            if (::recv(c, buf, sizeof buf, MSG_WAITALL) != sizeof buf) ::_exit(0);
            ::send(c, buf, sizeof buf, 0);
        }
    }
    int s = ::accept(lfd, nullptr, nullptr);
    int one = 1;
    ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[12] = {};
    for (auto _ : state) {
        if (::send(s, buf, sizeof buf, 0) != sizeof buf || ::recv(s, buf, sizeof buf, MSG_WAITALL) != sizeof buf) {
            state.SkipWithError("raw exchange failed");
            break;
        }
    }
    ::close(s);
    ::close(lfd);
    int status = 0;
    ::waitpid(pid, &status, 0);
}
BENCHMARK(BM_RawTcpRoundTrip)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(1.0);

constexpr int kBatch = 2000;

// Takes each batch of items, then answers with its sum, until -1.
void consume_batches(mp::QueueProxy<int> items, mp::QueueProxy<long> acks) {
    for (;;) {
        long sum = 0;
        for (int i = 0; i < kBatch; ++i) {
            const int v = items.get();
            if (v < 0) return;
            sum += v;
        }
        acks.put(sum);
    }
}

// Items from this process to a consumer process through a Manager's queue: both ends are proxies.
// tcp: a BaseManager on 127.0.0.1, whose clients find its local door and move on to shared
// memory; otherwise Manager() on a Unix socket, where clients move to shared memory at once.
void BM_ManagerQueue(benchmark::State& state, bool tcp) {
    std::optional<mp::Manager> local;
    std::optional<mp::BaseManager> remote;
    mp::BaseManager* mgr;
    if (tcp) {
        remote.emplace("127.0.0.1:0", mp::ManagerOptions{.authkey = "bench"});
        remote->start();
        mgr = &*remote;
    } else {
        local.emplace();
        mgr = &*local;
    }
    mp::BaseManager& m = *mgr;
    auto items = m.Queue<int>();
    auto acks = m.Queue<long>();
    mp::Process consumer(consume_batches, items, acks);
    consumer.start();
    for (auto _ : state) {
        long sum = 0;
        for (int i = 0; i < kBatch; ++i) {
            items.put(i);
            sum += i;
        }
        if (acks.get(true, 60.0) != sum) {
            state.SkipWithError("the consumer saw other items");
            break;
        }
    }
    items.put(-1);
    consumer.join();
    state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK_CAPTURE(BM_ManagerQueue, local, false)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK_CAPTURE(BM_ManagerQueue, tcp, true)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
