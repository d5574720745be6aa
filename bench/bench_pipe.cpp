// SPDX-License-Identifier: Apache-2.0
// Pipe latency and throughput between two processes, beside the raw kernel pipe, so that
// bench/compare.py can put mprocess, Python's multiprocessing and the machine's limit in one table.
//
//     build/bench/bench_pipe                       # all of them, about 5 s
//     build/bench/bench_pipe --benchmark_format=json
//
// Every benchmark starts its peer process before the timed loop and stops it after, so a run
// measures only messages exchanged while both processes are running (as the Python workloads
// do). Times are wall-clock (UseRealTime): the parent may sleep while the child works, and CPU
// time would hide that.
#include <benchmark/benchmark.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mprocess/mprocess.hpp"
#include "bench_common.hpp"

namespace mp = mprocess;

namespace {

using namespace bench;

// ---------------------------------------------------------------------------------------------
// mprocess

// A child at the other end of an mp::Pipe for the length of one benchmark run. However the run
// ends (normally, SkipWithError, an exception), the child has ended and been reaped once this is
// destroyed: closing our end makes its recv() throw EOFError, and a child that still hangs is
// killed.
class Peer {
public:
    template <class Body>
    explicit Peer(Body body) {
        auto [here, there] = mp::Pipe();
        conn_ = here;
        proc_.emplace(
            [body, inherited = here](mp::Connection c) mutable {
                // fork() copied our end into the child too; while the child holds it, it could
                // never see this process go away (same as Python's fork: close the unused end).
                inherited.close();
                try {
                    body(c);
                } catch (const mp::EOFError&) {
                    mp::exit(3);  // the parent went away mid-run; it already reports why
                } catch (const mp::BrokenPipeError&) {
                    mp::exit(3);
                }
            },
            there);
        proc_->start();
        there.close();  // as in Python: only the child holds its end, so its death is seen here
    }
    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;
    ~Peer() { reap(); }

    mp::Connection& conn() { return conn_; }

    // The normal end of a run: the child has been sent its sentinel and returns by itself.
    // Returns an error message, empty if the child exited cleanly.
    std::string join() {
        if (!proc_->join(kReapGrace)) return "child did not stop after the sentinel";
        auto code = proc_->exitcode();
        proc_.reset();
        conn_.close();
        if (code != 0) return "child exited with code " + std::to_string(code.value_or(-999));
        return {};
    }

private:
    void reap() noexcept {
        if (!proc_) return;
        try {
            conn_.close();
            if (!proc_->join(kReapGrace)) {
                proc_->kill();
                proc_->join();
            }
        } catch (...) {
            // Nothing better to do in a destructor; mprocess still joins it at exit.
        }
        proc_.reset();
    }

    mp::Connection conn_;
    std::optional<mp::Process> proc_;
};

void finish(benchmark::State& state, Peer& peer) {
    if (auto err = peer.join(); !err.empty() && !state.error_occurred()) state.SkipWithError(err.c_str());
}

void roundtrip_object(benchmark::State& state) {
    Peer peer([](mp::Connection& c) {
        for (;;) {
            auto v = c.recv<std::int64_t>();
            if (v == kStop) return;
            c.send(v);
        }
    });
    auto& conn = peer.conn();
    std::int64_t i = 0;
    for (auto _ : state) {
        conn.send(i);
        if (conn.recv<std::int64_t>() != i) {
            state.SkipWithError("echo returned another value");
            break;
        }
        ++i;
    }
    conn.send(kStop);
    finish(state, peer);
    state.SetItemsProcessed(state.iterations());
}

void roundtrip_bytes(benchmark::State& state, std::size_t size) {
    Peer peer([](mp::Connection& c) {
        for (;;) {
            auto m = c.recv_bytes();
            if (m.empty()) return;  // the sentinel: no payload is empty
            c.send_bytes(m);
        }
    });
    auto& conn = peer.conn();
    std::string payload(size, 'x');
    for (auto _ : state) {
        conn.send_bytes(payload);
        auto reply = conn.recv_bytes();
        if (reply.size() != size) {
            state.SkipWithError("echo returned another size");
            break;
        }
        benchmark::DoNotOptimize(reply.data());
    }
    conn.send_bytes("");
    finish(state, peer);
    state.SetItemsProcessed(state.iterations());
    // Both directions: the payload crosses the pipe twice per round trip.
    state.SetBytesProcessed(state.iterations() * 2 * static_cast<std::int64_t>(size));
}

// Round trip of one message: arg 8 sends an std::int64_t object, any other size raw bytes.
void BM_PipeRoundTrip(benchmark::State& state) {
    guarded(state, "BM_PipeRoundTrip", [&] {
        auto size = static_cast<std::size_t>(state.range(0));
        if (size == sizeof(std::int64_t)) {
            roundtrip_object(state);
        } else {
            roundtrip_bytes(state, size);
        }
    });
}

// One-way stream of std::int64_t objects; the child verifies every batch and answers once.
void BM_PipeThroughput(benchmark::State& state) {
    guarded(state, "BM_PipeThroughput", [&] {
        Peer peer([](mp::Connection& c) {
            Tally t;
            std::int64_t expected = 0;
            for (;;) {
                auto v = c.recv<std::int64_t>();
                if (v == kStop) return;
                tally(t, expected, v, [&](const Tally& r) { c.send(r); });
            }
        });
        auto& conn = peer.conn();
        std::int64_t seq = 0;
        for (auto _ : state) {
            const std::int64_t first = seq;
            for (std::int64_t i = 0; i < kBatch; ++i) conn.send(seq++);
            if (auto err = check_tally(conn.recv<Tally>(), first); !err.empty()) {
                state.SkipWithError(err.c_str());
                break;
            }
        }
        conn.send(kStop);
        finish(state, peer);
        state.SetItemsProcessed(state.iterations() * kBatch);
    });
}

// ---------------------------------------------------------------------------------------------
// Raw kernel pipes: the floor any pipe-based design sits on, measured the same way.

bool write_full(int fd, const void* data, std::size_t n) {
    auto* p = static_cast<const char*>(data);
    while (n > 0) {
        ssize_t r = ::write(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

// False on end of file or error before n bytes arrived.
bool read_full(int fd, void* data, std::size_t n) {
    auto* p = static_cast<char*>(data);
    while (n > 0) {
        ssize_t r = ::read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

// A forked child joined to us by two plain pipes. Closing our ends is its sentinel (it reads end
// of file); the destructor closes them and reaps the child, killing it if it hangs.
class RawPeer {
public:
    // body(read_fd, write_fd) runs in the child and returns its exit code.
    template <class Body>
    explicit RawPeer(Body body) {
        int down[2];
        int up[2];
        if (::pipe2(down, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
        if (::pipe2(up, O_CLOEXEC) != 0) {
            int e = errno;
            ::close(down[0]);
            ::close(down[1]);
            throw std::system_error(e, std::generic_category(), "pipe2");
        }
        pid_ = ::fork();
        if (pid_ == 0) {
            ::close(down[1]);
            ::close(up[0]);
            // _exit: the parent's stdio buffers and atexit handlers are not ours to run.
            ::_exit(body(down[0], up[1]));
        }
        int fork_errno = errno;
        ::close(down[0]);
        ::close(up[1]);
        to_child_ = down[1];
        from_child_ = up[0];
        if (pid_ < 0) {
            close_fds();
            throw std::system_error(fork_errno, std::generic_category(), "fork");
        }
    }
    RawPeer(const RawPeer&) = delete;
    RawPeer& operator=(const RawPeer&) = delete;
    ~RawPeer() { reap(); }

    int out() const { return to_child_; }
    int in() const { return from_child_; }

    // Closes the pipes and waits for the child; returns its exit status as waitpid gives it, or
    // -1 if it had to be killed.
    int reap() noexcept {
        close_fds();
        if (pid_ <= 0) return status_;
        const timespec pause{0, 1'000'000};
        for (int waited = 0;; ++waited) {
            int st = 0;
            pid_t r = ::waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                status_ = st;
                break;
            }
            if (r < 0 && errno != EINTR) break;
            if (waited >= static_cast<int>(kReapGrace * 1000)) {
                ::kill(pid_, SIGKILL);
                while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
                }
                status_ = -1;
                break;
            }
            ::nanosleep(&pause, nullptr);
        }
        pid_ = 0;
        return status_;
    }

private:
    void close_fds() noexcept {
        if (to_child_ >= 0) ::close(to_child_);
        if (from_child_ >= 0) ::close(from_child_);
        to_child_ = from_child_ = -1;
    }

    pid_t pid_ = 0;
    int to_child_ = -1;
    int from_child_ = -1;
    int status_ = -1;
};

void finish(benchmark::State& state, RawPeer& peer) {
    int st = peer.reap();
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && !state.error_occurred())
        state.SkipWithError(("raw child ended with wait status " + std::to_string(st)).c_str());
}

void BM_RawKernelPipeRoundTrip(benchmark::State& state) {
    guarded(state, "BM_RawKernelPipeRoundTrip", [&] {
        RawPeer peer([](int in, int out) {
            char buf[8];
            while (read_full(in, buf, sizeof buf)) {
                if (!write_full(out, buf, sizeof buf)) return 1;
            }
            return 0;
        });
        std::int64_t i = 0;
        for (auto _ : state) {
            std::int64_t reply = -1;
            if (!write_full(peer.out(), &i, sizeof i) || !read_full(peer.in(), &reply, sizeof reply) || reply != i) {
                state.SkipWithError("raw echo failed");
                break;
            }
            ++i;
        }
        finish(state, peer);
        state.SetItemsProcessed(state.iterations());
    });
}

// One write() and one read() per 8-byte message, as a message-at-a-time pipe design would do.
void BM_RawKernelPipeThroughput(benchmark::State& state) {
    guarded(state, "BM_RawKernelPipeThroughput", [&] {
        RawPeer peer([](int in, int out) {
            Tally t;
            std::int64_t expected = 0;
            std::int64_t v = 0;
            bool ok = true;
            while (ok && read_full(in, &v, sizeof v))
                tally(t, expected, v, [&](const Tally& r) { ok = write_full(out, &r, sizeof r); });
            return ok ? 0 : 1;
        });
        std::int64_t seq = 0;
        for (auto _ : state) {
            const std::int64_t first = seq;
            bool ok = true;
            for (std::int64_t i = 0; ok && i < kBatch; ++i, ++seq) ok = write_full(peer.out(), &seq, sizeof seq);
            Tally t;
            if (!ok || !read_full(peer.in(), &t, sizeof t)) {
                state.SkipWithError("raw pipe write or read failed");
                break;
            }
            if (auto err = check_tally(t, first); !err.empty()) {
                state.SkipWithError(err.c_str());
                break;
            }
        }
        finish(state, peer);
        state.SetItemsProcessed(state.iterations() * kBatch);
    });
}

}  // namespace

BENCHMARK(BM_PipeRoundTrip)->Arg(8)->Arg(65536)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PipeThroughput)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RawKernelPipeRoundTrip)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RawKernelPipeThroughput)->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
    return bench::run_benchmarks(argc, argv);
}
