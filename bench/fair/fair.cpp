// SPDX-License-Identifier: Apache-2.0
// The C++ side of the like-for-like comparison (bench/fair/run.py). One run of one workload per
// process; fair.py is its Python twin, workload by workload: the same counts and sizes (run.py
// passes them to both), the same start method, the same span, every result checked.
//
//     fair_cpp WORKLOAD key=value...      prints {"value": v} on one line, or exits 1 saying what failed
//
// Spans. A workload with children starts the clock when all of them are running and waiting (a
// Barrier, or the child's first message), and stops it at the last finisher's own timestamp
// (CLOCK_MONOTONIC, the clock of Python's time.monotonic(), comparable across processes). Building
// inputs counts where Python's does (a map's input list), and checking results never counts. No
// warm-up round on either side.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>

#include "mprocess/mprocess.hpp"

namespace mp = mprocess;

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Failed : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void expect(bool ok, const std::string& what) {
    if (!ok) throw Failed(what);
}

using Args = std::map<std::string, std::string>;

std::int64_t arg(const Args& a, const std::string& key) {
    auto it = a.find(key);
    if (it == a.end()) throw Failed("missing argument " + key + "=");
    return std::stoll(it->second);
}
std::string arg_text(const Args& a, const std::string& key) {
    auto it = a.find(key);
    if (it == a.end()) throw Failed("missing argument " + key + "=");
    return it->second;
}

// ---- Pipe -----------------------------------------------------------------------------------------

constexpr std::int64_t kStop = -1;

// Echoes until the stop; says it is ready first. size 0: 8-byte objects; otherwise raw bytes.
void echo(mp::Connection c, std::int64_t size) {
    c.send(std::int64_t{0});
    if (size == 0) {
        for (;;) {
            auto v = c.recv<std::int64_t>();
            if (v == kStop) return;
            c.send(v);
        }
    }
    for (;;) {
        auto b = c.recv_bytes();
        if (b.empty()) return;
        c.send_bytes(b);
    }
}

double pipe_rtt(const Args& a) {
    const auto n = arg(a, "n"), size = arg(a, "size");
    auto [here, there] = mp::Pipe();
    mp::Process p(echo, there, size);
    p.start();
    there.close();
    expect(here.recv<std::int64_t>() == 0, "the echo's ready message");
    std::string payload(static_cast<std::size_t>(size), 'x');
    const double t0 = now();
    for (std::int64_t i = 0; i < n; ++i) {
        if (size == 0) {
            here.send(i);
            expect(here.recv<std::int64_t>() == i, "an echoed number");
        } else {
            payload[0] = static_cast<char>(i);
            here.send_bytes(payload);
            expect(here.recv_bytes() == payload, "echoed bytes");
        }
    }
    const double t1 = now();
    if (size == 0)
        here.send(kStop);
    else
        here.send_bytes("");
    p.join();
    expect(p.exitcode() == 0, "the echo's exit");
    return (t1 - t0) / static_cast<double>(n);
}

// Counts a stream of numbers, answering (count, sum, in order) once per batch.
void count_stream(mp::Connection c, std::int64_t n, std::int64_t batch) {
    c.send(std::int64_t{0});
    std::int64_t expected = 0, count = 0, sum = 0;
    bool ordered = true;
    while (expected < n) {
        auto v = c.recv<std::int64_t>();
        ordered = ordered && v == expected;
        expected = v + 1;
        ++count;
        sum += v;
        if (count % batch == 0 || expected == n)
            c.send(std::tuple<std::int64_t, std::int64_t, bool>{count, sum, ordered});
    }
}

double pipe_throughput(const Args& a) {
    const auto n = arg(a, "n"), batch = arg(a, "batch");
    auto [here, there] = mp::Pipe();
    mp::Process p(count_stream, there, n, batch);
    p.start();
    there.close();
    expect(here.recv<std::int64_t>() == 0, "the counter's ready message");
    std::tuple<std::int64_t, std::int64_t, bool> last{};
    const double t0 = now();
    for (std::int64_t i = 0; i < n; ++i) {
        here.send(i);
        if ((i + 1) % batch == 0 || i + 1 == n) last = here.recv<std::tuple<std::int64_t, std::int64_t, bool>>();
    }
    const double t1 = now();
    p.join();
    expect(std::get<0>(last) == n && std::get<1>(last) == n * (n - 1) / 2 && std::get<2>(last),
           "the consumer's count, sum and order");
    return static_cast<double>(n) / (t1 - t0);
}

// ---- Process start --------------------------------------------------------------------------------

void noop() {}

double start(const Args& a) {
    const auto n = arg(a, "n");
    const auto ctx = mp::get_context(arg_text(a, "method"));
    const double t0 = now();
    for (std::int64_t i = 0; i < n; ++i) {
        auto p = ctx.Process(noop);
        p.start();
        p.join();
        expect(p.exitcode() == 0, "a child's exit code");
    }
    return (now() - t0) / static_cast<double>(n);
}

// ---- Queue ----------------------------------------------------------------------------------------

// The item of a byte row: distinct, its index in its first 8 bytes and a fill that depends on it.
std::string make_item(std::int64_t i, std::int64_t size) {
    std::string s(static_cast<std::size_t>(size), static_cast<char>('a' + i % 26));
    std::memcpy(s.data(), &i, sizeof i);
    return s;
}
bool item_ok(const std::string& s, std::int64_t i, std::int64_t size) {
    if (static_cast<std::int64_t>(s.size()) != size) return false;
    std::int64_t j = 0;
    std::memcpy(&j, s.data(), sizeof j);
    const char fill = static_cast<char>('a' + i % 26);
    return j == i && std::all_of(s.begin() + 8, s.end(), [&](char c) { return c == fill; });
}

using Finish = std::tuple<double, std::int64_t, std::int64_t, bool>;  // finish time, count, sum, ok

// Numbers: producer `id` of `producers` puts its share, id * n + k for k < n / producers.
void produce_numbers(mp::Queue<std::int64_t> q, mp::Barrier go, std::int64_t id, std::int64_t share,
                     mp::Queue<Finish> done) {
    go.wait();
    for (std::int64_t k = 0; k < share; ++k) q.put(id * share + k);
    done.put(Finish{now(), share, 0, true});
}
// Takes `share` numbers; each producer's must come in the order it put them (FIFO per producer).
void consume_numbers(mp::Queue<std::int64_t> q, mp::Barrier go, std::int64_t share, std::int64_t per_producer,
                     std::int64_t producers, mp::Queue<Finish> done) {
    go.wait();
    std::int64_t sum = 0;
    std::vector<std::int64_t> last(static_cast<std::size_t>(producers), -1);
    bool ordered = true;
    for (std::int64_t k = 0; k < share; ++k) {
        const auto v = q.get();
        sum += v;
        auto& l = last.at(static_cast<std::size_t>(v / per_producer));
        ordered = ordered && v > l;
        l = v;
    }
    done.put(Finish{now(), share, sum, ordered});
}

void produce_items(mp::Queue<std::string> q, mp::Barrier go, std::int64_t n, std::int64_t size,
                   mp::Queue<Finish> done) {
    std::vector<std::string> items;
    items.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) items.push_back(make_item(i, size));
    go.wait();
    for (auto& item : items) q.put(item);
    done.put(Finish{now(), n, 0, true});
}
void consume_items(mp::Queue<std::string> q, mp::Barrier go, std::int64_t n, std::int64_t size,
                   mp::Queue<Finish> done) {
    std::vector<std::string> kept;
    kept.reserve(static_cast<std::size_t>(n));
    go.wait();
    for (std::int64_t i = 0; i < n; ++i) kept.push_back(q.get());
    const double t = now();
    bool ok = true;
    for (std::int64_t i = 0; i < n; ++i) ok = ok && item_ok(kept[static_cast<std::size_t>(i)], i, size);
    done.put(Finish{t, n, 0, ok});
}

double queue(const Args& a) {
    const auto n = arg(a, "n"), size = arg(a, "size"), producers = arg(a, "producers"), consumers = arg(a, "consumers");
    expect(n % producers == 0 && n % consumers == 0, "n divisible by the producers and the consumers");
    expect(size == 0 || (producers == 1 && consumers == 1), "byte items with one producer and one consumer");
    mp::Barrier go(static_cast<unsigned>(producers + consumers + 1));
    mp::Queue<Finish> done;
    std::vector<mp::Process> ps;
    if (size == 0) {
        mp::Queue<std::int64_t> q;
        for (std::int64_t i = 0; i < producers; ++i) ps.emplace_back(produce_numbers, q, go, i, n / producers, done);
        for (std::int64_t i = 0; i < consumers; ++i)
            ps.emplace_back(consume_numbers, q, go, n / consumers, n / producers, producers, done);
    } else {
        mp::Queue<std::string> q;
        ps.emplace_back(produce_items, q, go, n, size, done);
        ps.emplace_back(consume_items, q, go, n, size, done);
    }
    for (auto& p : ps) p.start();
    go.wait();
    const double t0 = now();
    double t1 = t0;
    std::int64_t sum = 0;
    bool ok = true;
    for (std::size_t i = 0; i < ps.size(); ++i) {  // producers' and consumers': the last finisher's time
        auto [t, count, s, good] = done.get();
        t1 = std::max(t1, t);
        ok = ok && good;
        sum += s;
    }
    for (auto& p : ps) {
        p.join();
        ok = ok && p.exitcode() == 0;
    }
    expect(ok, "every item, and every child's exit");
    if (size == 0) expect(sum == n * (n - 1) / 2, "the sum of every number put");
    return static_cast<double>(n) / (t1 - t0);
}

// ---- Lock and Value -------------------------------------------------------------------------------

double lock(const Args& a) {
    const auto n = arg(a, "n");
    mp::Lock l;
    const double t0 = now();
    for (std::int64_t i = 0; i < n; ++i) {
        l.acquire();
        l.release();
    }
    return (now() - t0) / static_cast<double>(n);
}

void increment(mp::Value<std::int64_t> v, mp::Barrier go, std::int64_t n, mp::Queue<double> done) {
    go.wait();
    for (std::int64_t i = 0; i < n; ++i) {
        std::lock_guard g(v.get_lock());
        v.set_value(v.value() + 1);
    }
    done.put(now());
}

double counter(const Args& a) {
    const auto n = arg(a, "n"), procs = arg(a, "processes");
    mp::Value<std::int64_t> v(0);
    mp::Barrier go(static_cast<unsigned>(procs + 1));
    mp::Queue<double> done;
    std::vector<mp::Process> ps;
    for (std::int64_t i = 0; i < procs; ++i) ps.emplace_back(increment, v, go, n, done);
    for (auto& p : ps) p.start();
    go.wait();
    const double t0 = now();
    double t1 = t0;
    for (std::int64_t i = 0; i < procs; ++i) t1 = std::max(t1, done.get());
    for (auto& p : ps) p.join();
    expect(v.value() == n * procs, "the counter's final value");
    return static_cast<double>(n * procs) / (t1 - t0);
}

double value_rw(const Args& a) {
    const auto n = arg(a, "n");
    mp::Value<std::int64_t> v(0);
    const double t0 = now();
    for (std::int64_t i = 0; i < n; ++i) v.set_value(v.value() + 1);
    const double t1 = now();
    expect(v.value() == n, "the value after n reads and writes");
    return (t1 - t0) / static_cast<double>(n);
}

// ---- Pool -----------------------------------------------------------------------------------------

std::int64_t square(std::int64_t x) {
    return x * x;
}

double pool_map(const Args& a) {
    const auto n = arg(a, "n");
    mp::Pool pool(static_cast<unsigned>(arg(a, "processes")));
    const double t0 = now();
    std::vector<std::int64_t> items(static_cast<std::size_t>(n));
    std::iota(items.begin(), items.end(), std::int64_t{0});
    const auto out = pool.map(square, items);
    const double t1 = now();
    expect(static_cast<std::int64_t>(out.size()) == n, "as many results as items");
    for (std::int64_t i = 0; i < n; ++i) expect(out[static_cast<std::size_t>(i)] == i * i, "every square");
    return static_cast<double>(n) / (t1 - t0);
}

double pool_apply(const Args& a) {
    const auto n = arg(a, "n");
    mp::Pool pool(static_cast<unsigned>(arg(a, "processes")));
    const double t0 = now();
    for (std::int64_t i = 0; i < n; ++i) expect(pool.apply_async(square, i).get() == i * i, "a square");
    return (now() - t0) / static_cast<double>(n);
}

// imap over n items that never exist all at once: a view of the numbers, at most `buffersize`
// tasks of `chunksize` items in flight. Prints the time to the first result and this process's peak
// memory beside the rate (not a row: Python 3.11's imap reads its whole input first).
double imap_lazy(const Args& a) {
    const auto n = arg(a, "n");
    mp::Pool pool(static_cast<unsigned>(arg(a, "processes")));
    const double t0 = now();
    double first = 0;
    std::uint64_t sum = 0, count = 0;
    for (std::int64_t r : pool.imap(square, std::views::iota(std::int64_t{0}, n),
                                    {.chunksize = static_cast<std::size_t>(arg(a, "chunksize")),
                                    .buffersize = static_cast<std::size_t>(arg(a, "buffersize"))})) {
        if (count++ == 0) first = now() - t0;
        sum += static_cast<std::uint64_t>(r);
    }
    const double t1 = now();
    std::uint64_t want = 0;  // the same sum, wrapping as it does
    for (std::int64_t i = 0; i < n; ++i) want += static_cast<std::uint64_t>(i * i);
    expect(count == static_cast<std::uint64_t>(n) && sum == want, "every square, once");
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    std::printf("{\"first_result_s\": %.6f, \"peak_rss_mib\": %.1f}\n", first,
                static_cast<double>(ru.ru_maxrss) / 1024);
    return static_cast<double>(n) / (t1 - t0);
}

// Primes in [lo, hi) by trial division: the same algorithm as fair.py's.
std::int64_t count_primes(std::tuple<std::int64_t, std::int64_t> range) {
    const auto [lo, hi] = range;
    std::int64_t count = 0;
    for (std::int64_t k = std::max<std::int64_t>(lo, 2); k < hi; ++k) {
        bool prime = true;
        for (std::int64_t d = 2; d * d <= k; ++d) {
            if (k % d == 0) {
                prime = false;
                break;
            }
        }
        count += prime ? 1 : 0;
    }
    return count;
}

// Serial, then the same ranges on a Pool, in one run: the speedup.
double pool_cpu(const Args& a) {
    const auto limit = arg(a, "limit"), chunks = arg(a, "chunks"), expected = arg(a, "primes");
    std::vector<std::tuple<std::int64_t, std::int64_t>> ranges;
    for (std::int64_t i = 0; i < chunks; ++i) ranges.emplace_back(limit * i / chunks, limit * (i + 1) / chunks);
    const double t0 = now();
    std::int64_t serial = 0;
    for (const auto& r : ranges) serial += count_primes(r);
    const double t1 = now();
    mp::Pool pool(static_cast<unsigned>(arg(a, "processes")));
    const double t2 = now();
    const auto parts = pool.map(count_primes, ranges, 1);
    const double t3 = now();
    expect(serial == expected, "the serial count of primes");
    expect(std::accumulate(parts.begin(), parts.end(), std::int64_t{0}) == expected, "the pool's count of primes");
    return (t1 - t0) / (t3 - t2);
}

// ---- Client and Manager ---------------------------------------------------------------------------

void net_echo(std::string address) {
    auto c = mp::Client(address, {.authkey = "bench"});
    c.send(std::int64_t{0});
    for (;;) {
        const auto v = c.recv<std::int64_t>();
        if (v == kStop) return;
        c.send(v);
    }
}

double net_rtt(const Args& a) {
    const auto n = arg(a, "n");
    mp::Listener listener("127.0.0.1:0", {.authkey = "bench"});
    mp::Process p(net_echo, listener.address());
    p.start();
    auto conn = listener.accept(30.0);
    expect(conn.recv<std::int64_t>() == 0, "the echo's ready message");
    const double t0 = now();
    for (std::int64_t i = 0; i < n; ++i) {
        conn.send(i);
        expect(conn.recv<std::int64_t>() == i, "an echoed number");
    }
    const double t1 = now();
    conn.send(kStop);
    p.join();
    expect(p.exitcode() == 0, "the echo's exit");
    return (t1 - t0) / static_cast<double>(n);
}

// Takes the items in batches, answering each with its sum; says it is ready first.
void consume_batches(mp::QueueProxy<std::int64_t> items, mp::QueueProxy<std::int64_t> acks, std::int64_t n,
                     std::int64_t batch) {
    acks.put(-1);
    std::int64_t sum = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        sum += items.get();
        if ((i + 1) % batch == 0 || i + 1 == n) {
            acks.put(sum);
            sum = 0;
        }
    }
}

double manager_queue(const Args& a) {
    const auto n = arg(a, "n"), batch = arg(a, "batch");
    std::optional<mp::Manager> local;
    std::optional<mp::BaseManager> remote;
    mp::BaseManager* m = nullptr;
    if (a.count("connect") != 0) {  // a server that manager-serve started, maybe in another network namespace
        remote.emplace(arg_text(a, "connect"), mp::ManagerOptions{.authkey = "bench"});
        remote->connect();
        m = &*remote;
    } else if (arg(a, "tcp") != 0) {
        remote.emplace("127.0.0.1:0", mp::ManagerOptions{.authkey = "bench"});
        remote->start();
        m = &*remote;
    } else {
        local.emplace();
        m = &*local;
    }
    auto items = m->Queue<std::int64_t>();
    auto acks = m->Queue<std::int64_t>();
    mp::Process p(consume_batches, items, acks, n, batch);
    p.start();
    expect(acks.get() == -1, "the consumer's ready message");
    const double t0 = now();
    std::int64_t sum = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        items.put(i);
        sum += i;
        if ((i + 1) % batch == 0 || i + 1 == n) {
            expect(acks.get() == sum, "the consumer's sum of a batch");
            sum = 0;
        }
    }
    const double t1 = now();
    p.join();
    expect(p.exitcode() == 0, "the consumer's exit");
    return static_cast<double>(n) / (t1 - t0);
}

// ---- Latency by payload size --------------------------------------------------------------------

// Pins this process to one CPU (the latency rows place both ends themselves).
void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0) throw Failed("sched_setaffinity");
}

// A Unix stream socket with 8-byte length frames: the kernel's path, for scale.
void write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        const auto k = ::write(fd, p, n);
        if (k <= 0) throw Failed("write to the socket pair");
        p += k;
        n -= static_cast<std::size_t>(k);
    }
}
bool read_all(int fd, char* p, std::size_t n) {
    while (n > 0) {
        const auto k = ::read(fd, p, n);
        if (k <= 0) return false;
        p += k;
        n -= static_cast<std::size_t>(k);
    }
    return true;
}
void send_frame(int fd, const std::string& b) {
    const std::uint64_t n = b.size();
    write_all(fd, reinterpret_cast<const char*>(&n), sizeof n);
    write_all(fd, b.data(), b.size());
}
bool recv_frame(int fd, std::string& b) {
    std::uint64_t n = 0;
    if (!read_all(fd, reinterpret_cast<char*>(&n), sizeof n)) return false;
    b.resize(n);
    return read_all(fd, b.data(), n);
}

void latency_echo(mp::Connection c, int fd, int cpu) {
    pin_to(cpu);
    std::string b;
    if (fd >= 0) {
        while (recv_frame(fd, b) && !b.empty()) send_frame(fd, b);
        return;
    }
    echo(c, 1);
}

// Half round trips of `size` bytes, n of them: the median here, the 99th percentile printed beside.
double latency(const Args& a) {
    const auto n = arg(a, "n"), size = arg(a, "size");
    const bool unix_socket = arg_text(a, "transport") == "unix";
    const bool same_cpu = arg_text(a, "cpus") == "same";
    pin_to(0);
    auto [here, there] = mp::Pipe();
    int sv[2] = {-1, -1};
    if (unix_socket && ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw Failed("socketpair");
    mp::Process p(latency_echo, there, sv[1], same_cpu ? 0 : 1);
    p.start();
    there.close();
    std::string payload(static_cast<std::size_t>(size), 'x'), back;
    if (unix_socket) {
        ::close(sv[1]);
        send_frame(sv[0], payload);  // ready: the first exchange, untimed on both sides
        expect(recv_frame(sv[0], back) && back == payload, "the socket's first echo");
    } else {
        expect(here.recv<std::int64_t>() == 0, "the echo's ready message");
    }
    std::vector<double> half(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
        payload[0] = static_cast<char>(i);
        const double t0 = now();
        if (unix_socket) {
            send_frame(sv[0], payload);
            expect(recv_frame(sv[0], back), "the socket's echo");
        } else {
            here.send_bytes(payload);
            back = here.recv_bytes();
        }
        half[static_cast<std::size_t>(i)] = (now() - t0) / 2;
        expect(back == payload, "echoed bytes");
    }
    if (unix_socket) {
        send_frame(sv[0], "");
        ::close(sv[0]);
    } else {
        here.send_bytes("");
    }
    p.join();
    expect(p.exitcode() == 0, "the echo's exit");
    std::sort(half.begin(), half.end());
    std::printf("{\"p99\": %.9g}\n", half[static_cast<std::size_t>(n * 99 / 100)]);
    return half[static_cast<std::size_t>(n / 2)];
}

// A manager's server on `address` for manager-queue's connect=, until standard input closes.
double manager_serve(const Args& a) {
    mp::BaseManager m(arg_text(a, "address"), mp::ManagerOptions{.authkey = "bench"});
    m.start();
    std::printf("serving on %s\n", m.address().c_str());
    std::fflush(stdout);
    while (std::getchar() != EOF) {
    }
    m.shutdown();
    return 0;
}

// ---- The machine's limits: the same work without mprocess ------------------------------------------
// What the hardware allows for a row's work, in plain POSIX (fork, a shared mapping, pipes, atomics
// that spin): the floor under mprocess's figure, in the same run. Not a library: nothing here
// survives a dead peer or a bad message.

pid_t fork_child(const std::function<int()>& body) {
    const pid_t pid = ::fork();
    if (pid < 0) throw Failed("fork");
    if (pid == 0) {
        int rc = 1;
        try {
            rc = body();
        } catch (...) {
        }
        ::_exit(rc);
    }
    return pid;
}

void reap(pid_t pid) {
    int status = 0;
    expect(::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0, "a child's exit");
}

// Shared with the children forked after it; its pages are touched (and paid for) in the span.
template <class T>
T* shared_mapping(std::size_t count) {
    void* p = ::mmap(nullptr, count * sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw Failed("mmap");
    return static_cast<T*>(p);
}

template <class Pred>
void spin_until(Pred ready) {
    for (unsigned k = 1; !ready(); ++k) {
        if (k % 256 == 0) ::sched_yield();
        __builtin_ia32_pause();
    }
}

void write_word(int fd, std::uint64_t w) {
    expect(::write(fd, &w, sizeof w) == sizeof w, "a pipe write");
}
bool read_word(int fd, std::uint64_t& w) {
    return ::read(fd, &w, sizeof w) == sizeof w;
}

struct RingState {
    alignas(64) std::atomic<std::uint64_t> head{0};  // items written
    alignas(64) std::atomic<std::uint64_t> tail{0};  // items taken
    alignas(64) std::atomic<int> ready{0};
    double finished = 0;
    int ok = 0;
};

// queue's byte rows without a queue: the producer copies each pre-built item into a ring of fixed
// slots in shared memory (4 MiB, or one item), the consumer copies it out into a string it keeps.
double queue_limit(const Args& a) {
    const auto n = arg(a, "n"), size = arg(a, "size");
    const auto item = static_cast<std::size_t>(size);
    const std::size_t slots = std::max<std::size_t>(1, (std::size_t{4} << 20) / item);
    auto* st = new (shared_mapping<RingState>(1)) RingState;
    char* ring = shared_mapping<char>(slots * item);
    std::vector<std::string> items;
    items.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) items.push_back(make_item(i, size));
    const pid_t consumer = fork_child([&] {
        std::vector<std::string> kept;
        kept.reserve(static_cast<std::size_t>(n));
        st->ready.store(1, std::memory_order_release);
        for (std::uint64_t i = 0; i < static_cast<std::uint64_t>(n); ++i) {
            spin_until([&] { return st->head.load(std::memory_order_acquire) != i; });
            kept.emplace_back(ring + (i % slots) * item, item);
            st->tail.store(i + 1, std::memory_order_release);
        }
        st->finished = now();
        bool ok = true;
        for (std::int64_t i = 0; i < n; ++i) ok = ok && item_ok(kept[static_cast<std::size_t>(i)], i, size);
        st->ok = ok ? 1 : 0;
        return 0;
    });
    spin_until([&] { return st->ready.load(std::memory_order_acquire) != 0; });
    const double t0 = now();
    for (std::uint64_t i = 0; i < static_cast<std::uint64_t>(n); ++i) {
        spin_until([&] { return i - st->tail.load(std::memory_order_acquire) < slots; });
        std::memcpy(ring + (i % slots) * item, items[i].data(), item);
        st->head.store(i + 1, std::memory_order_release);
    }
    reap(consumer);
    expect(st->ok == 1, "every item");
    return static_cast<double>(n) / (st->finished - t0);
}

// pool-map without a pool: workers forked before the span, waiting on a pipe; in the span the
// input is built, each chunk (the Pool's default size) copied into shared memory and named to a
// worker, which squares it into a shared output; the results are copied into the vector returned.
double pool_map_limit(const Args& a) {
    const auto n = static_cast<std::size_t>(arg(a, "n"));
    const auto procs = static_cast<std::size_t>(arg(a, "processes"));
    const std::size_t chunk = (n + 4 * procs - 1) / (4 * procs);
    const std::size_t chunks = (n + chunk - 1) / chunk;
    auto* in = shared_mapping<std::int64_t>(n);
    auto* squares = shared_mapping<std::int64_t>(n);
    int done[2];
    expect(::pipe(done) == 0, "pipe");
    std::vector<int> jobs;
    std::vector<pid_t> workers;
    for (std::size_t w = 0; w < procs; ++w) {
        int job[2];
        expect(::pipe(job) == 0, "pipe");
        workers.push_back(fork_child([&] {
            ::close(job[1]);
            for (std::uint64_t c = 0; read_word(job[0], c);) {
                const std::size_t end = std::min(n, (c + 1) * chunk);
                for (std::size_t i = c * chunk; i < end; ++i) squares[i] = square(in[i]);
                write_word(done[1], c);
            }
            return 0;
        }));
        ::close(job[0]);
        jobs.push_back(job[1]);
    }
    const double t0 = now();
    std::vector<std::int64_t> items(n);
    std::iota(items.begin(), items.end(), std::int64_t{0});
    for (std::size_t c = 0; c < chunks; ++c) {
        const std::size_t begin = c * chunk, end = std::min(n, begin + chunk);
        std::memcpy(in + begin, items.data() + begin, (end - begin) * sizeof(std::int64_t));
        write_word(jobs[c % procs], c);
    }
    for (std::size_t c = 0; c < chunks; ++c) {
        std::uint64_t which = 0;
        expect(read_word(done[0], which), "a worker's answer");
    }
    const std::vector<std::int64_t> out(squares, squares + n);
    const double t1 = now();
    for (int fd : jobs) ::close(fd);
    for (pid_t w : workers) reap(w);
    for (std::size_t i = 0; i < n; ++i) expect(out[i] == static_cast<std::int64_t>(i * i), "every square");
    return static_cast<double>(n) / (t1 - t0);
}

// Reads a word from a socket without sleeping: a sleep and a wake-up cost more than the network's
// own round trip on a virtual machine.
bool spin_read_word(int fd, std::int64_t& w) {
    auto* p = reinterpret_cast<char*>(&w);
    for (std::size_t got = 0; got < sizeof w;) {
        const auto k = ::recv(fd, p + got, sizeof w - got, MSG_DONTWAIT);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) return false;
        if (k > 0) got += static_cast<std::size_t>(k);
    }
    return true;
}

// A TCP echo of 8-byte messages on `address` (host:0), one client, until standard input closes:
// the network's own round trip, for the rows over TCP.
double tcp_echo_serve(const Args& a) {
    const std::string address = arg_text(a, "address");
    const auto colon = address.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    expect(::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr) == 1, "an IPv4 address");
    const int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof sa;
    expect(ls >= 0 && ::bind(ls, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 && ::listen(ls, 1) == 0 &&
               ::getsockname(ls, reinterpret_cast<sockaddr*>(&sa), &len) == 0,
           "a listening socket");
    std::printf("serving on %s:%d\n", address.substr(0, colon).c_str(), ntohs(sa.sin_port));
    std::fflush(stdout);
    pollfd fds[2] = {{ls, POLLIN, 0}, {0, POLLIN, 0}};
    while (::poll(fds, 2, -1) > 0 && !(fds[1].revents & (POLLIN | POLLHUP))) {
        const int c = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        const int one = 1;
        ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        for (std::int64_t w = 0; spin_read_word(c, w);) write_all(c, reinterpret_cast<const char*>(&w), sizeof w);
        ::close(c);
    }
    return 0;
}

// n round trips of 8 bytes to tcp-echo-serve's `connect` address: the most calls a second that
// wait for their reply, as a manager queue's get() does.
double tcp_rtt(const Args& a) {
    const auto n = arg(a, "n");
    const std::string address = arg_text(a, "connect");
    const auto colon = address.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
    expect(::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr) == 1, "an IPv4 address");
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    expect(s >= 0 && ::connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0, "a connection to the echo");
    const int one = 1;
    ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const double t0 = now();
    for (std::int64_t i = 0; i < n; ++i) {
        std::int64_t back = -1;
        write_all(s, reinterpret_cast<const char*>(&i), sizeof i);
        expect(spin_read_word(s, back) && back == i, "the echo of a word");
    }
    const double t1 = now();
    ::close(s);
    return static_cast<double>(n) / (t1 - t0);
}

const std::map<std::string, std::function<double(const Args&)>> kWorkloads{
    {"pipe-rtt", pipe_rtt},
    {"pipe-throughput", pipe_throughput},
    {"start", start},
    {"queue", queue},
    {"lock", lock},
    {"counter", counter},
    {"value-rw", value_rw},
    {"pool-map", pool_map},
    {"pool-apply", pool_apply},
    {"pool-cpu", pool_cpu},
    {"imap-lazy", imap_lazy},
    {"net-rtt", net_rtt},
    {"manager-queue", manager_queue},
    {"latency", latency},
    {"manager-serve", manager_serve},
    {"queue-limit", queue_limit},
    {"pool-map-limit", pool_map_limit},
    {"tcp-echo-serve", tcp_echo_serve},
    {"tcp-rtt", tcp_rtt},
};

}  // namespace

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    if (argc < 2 || !kWorkloads.count(argv[1])) {
        std::fprintf(stderr, "usage: fair_cpp WORKLOAD key=value...; workloads:");
        for (const auto& [name, fn] : kWorkloads) std::fprintf(stderr, " %s", name.c_str());
        std::fprintf(stderr, "\n");
        return 2;
    }
    Args args;
    for (int i = 2; i < argc; ++i) {
        const std::string kv = argv[i];
        const auto eq = kv.find('=');
        if (eq == std::string::npos) {
            std::fprintf(stderr, "not key=value: %s\n", kv.c_str());
            return 2;
        }
        args[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    try {
        mp::set_start_method(args.count("method") && argv[1] != std::string("start") ? args["method"] : "fork", true);
        std::printf("{\"value\": %.9g}\n", kWorkloads.at(argv[1])(args));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", argv[1], e.what());
        return 1;
    }
}
