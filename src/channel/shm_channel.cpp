// SPDX-License-Identifier: Apache-2.0
// Ring layout: a stream of records [u64 length][payload][pad to 8]. Positions only grow; a
// record that fits in the ring is published whole (one store of `tail`), so a sender that dies
// mid-write leaves nothing visible. A larger record is streamed through the ring in chunks and
// flagged, so that a death mid-stream marks the ring broken instead of leaving half a message.
//
// Waiting (wait/wait.hpp): spin for a bounded time, then announce a sleeper (`*sleepers`) and
// sleep on an eventfd. The other side rings the eventfd only when someone sleeps and nobody rang
// since (`*rung`). Store-then-load on both sides is sequentially consistent, so no wake-up is
// missed. A sleeper that takes a ring meant for several passes it on if work remains.
#include "channel/shm_channel.hpp"
#include "wait/shm_lock.hpp"
#include "wait/wait.hpp"

#include "mprocess/connection.hpp"
#include "platform/socket.hpp"

#include <algorithm>
#include <array>
#include <tuple>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace mprocess::detail {
namespace {

using platform::Clock;
using platform::Deadline;
using platform::drain_efd;
using platform::dup_fd;
using platform::Fd;
using platform::make_eventfd;
using platform::signal_efd;

constexpr std::size_t kHeaderBytes = 4096;
constexpr std::uint64_t kMaxMessage = std::uint64_t{1} << 46;
constexpr std::uint64_t kStreamPrefix = 64;  // a streamed record starts with its header and this much payload
constexpr unsigned kPeerCheckEvery = 256;    // sends between liveness checks of the peer

struct RingCtl {
    alignas(64) std::atomic<std::uint64_t> tail;
    alignas(64) std::atomic<std::uint64_t> head;
    std::atomic<std::uint64_t> received;               // whole messages taken; on head's line, the receiver's
    alignas(64) std::atomic<std::uint32_t> rsleepers;  // receivers asleep, waiting for data
    std::atomic<std::uint32_t> rrung;
    alignas(64) std::atomic<std::uint32_t> wsleepers;  // senders asleep, waiting for space
    std::atomic<std::uint32_t> wrung;
    alignas(64) std::atomic<std::uint32_t> broken;
    std::atomic<std::uint32_t> wpartial;  // a streamed record is being written
    std::atomic<std::uint32_t> rpartial;  // a streamed record is being read
    std::uint64_t capacity;
    alignas(64) ShmLock wlock;
    alignas(64) ShmLock rlock;
};
static_assert(2 * sizeof(RingCtl) <= kHeaderBytes);

constexpr std::uint64_t align8(std::uint64_t n) {
    return (n + 7) & ~std::uint64_t{7};
}

struct Mapping {
    Fd memfd;
    void* base = nullptr;
    std::size_t size = 0;
    ~Mapping() { platform::unmap(base, size); }
};

// One direction as seen by one end.
struct Dir {
    RingCtl* ctl = nullptr;
    char* data = nullptr;
    std::uint64_t cap = 0;
    Fd data_efd;   // rung for receivers
    Fd space_efd;  // rung for senders
    explicit operator bool() const noexcept { return ctl != nullptr; }

    void put(std::uint64_t pos, const char* src, std::size_t n) const noexcept {
        if (n == 0) return;  // src may be null then
        std::size_t off = pos & (cap - 1);
        std::size_t first = std::min<std::size_t>(n, cap - off);
        std::memcpy(data + off, src, first);
        std::memcpy(data, src + first, n - first);
    }
    void get(std::uint64_t pos, char* dst, std::size_t n) const noexcept {
        if (n == 0) return;
        std::size_t off = pos & (cap - 1);
        std::size_t first = std::min<std::size_t>(n, cap - off);
        std::memcpy(dst, data + off, first);
        std::memcpy(dst + first, data, n - first);
    }
    std::uint64_t used() const noexcept {
        return ctl->tail.load(std::memory_order_seq_cst) - ctl->head.load(std::memory_order_seq_cst);
    }
};

enum class WaitResult { ready, timeout, peer_gone };

class ShmChannel final : public Channel {
public:
    ShmChannel(std::shared_ptr<Mapping> map, Dir in, Dir out, Fd sock)
        : map_(std::move(map)), in_(std::move(in)), out_(std::move(out)), sock_(std::move(sock)) {}

    void send(std::string_view head, std::string_view body) override;
    bool recv(FrameSink& sink, const Deadline& deadline) override;
    bool poll(const Deadline& deadline) override;
    bool ready_now() override;
    bool has_data() override { return in().used() != 0; }
    void arm(std::vector<pollfd>& fds) override;
    void disarm() override;

    // Other threads may be inside a call on this end: the mapping and the eventfds stay until the
    // last handle goes; the liveness socket is dropped now (the peer sees EOF if no other process
    // holds this end), and sleepers are woken to find the end closed.
    void close() override {
        if (closed_.exchange(true)) return;
        if (in_) signal_efd(in_.data_efd);
        if (out_) signal_efd(out_.space_efd);
        platform::retire_fd(sock_.get());
    }
    bool closed() const noexcept override { return closed_; }
    bool readable() const noexcept override { return !closed_ && in_; }
    bool writable() const noexcept override { return !closed_ && out_; }
    int fileno() const noexcept override { return sock_.get(); }
    std::optional<std::uint64_t> delivered() const noexcept override {
        if (!out_) return std::nullopt;
        return out_.ctl->received.load(std::memory_order_seq_cst);
    }
    std::string export_to(SpawnArgs& args) const override;

private:
    Dir& in() {
        check_open();
        // OSError, as Python's: the end is usable, only not in this direction (EBADF, as a
        // read from a write-only descriptor).
        if (!in_) throw OSError(EBADF, "connection is write-only");
        return in_;
    }
    Dir& out() {
        check_open();
        if (!out_) throw OSError(EBADF, "connection is read-only");
        return out_;
    }
    void check_open() const {
        if (closed_) throw ValueError("connection is closed");
    }

    // Checks the liveness socket without blocking.
    bool peer_gone_now() {
        if (peer_gone_) return true;
        if (platform::readable_now(sock_.get())) peer_gone_ = true;
        return peer_gone_;
    }

    template <class Ready>
    WaitResult wait_for(Ready ready, std::atomic<std::uint32_t>& sleepers, std::atomic<std::uint32_t>& rung,
                        const Fd& efd, const Deadline& deadline);

    void publish(std::uint64_t tail) {
        RingCtl& c = *out_.ctl;
        c.tail.store(tail, std::memory_order_seq_cst);
        EventfdSleeper(c.rsleepers, c.rrung, out_.data_efd).ring();
    }
    void release(std::uint64_t head) {
        RingCtl& c = *in_.ctl;
        c.head.store(head, std::memory_order_seq_cst);
        EventfdSleeper(c.wsleepers, c.wrung, in_.space_efd).ring();
    }
    void wait_space(std::uint64_t pos, std::uint64_t need);
    WaitResult wait_data(std::uint64_t pos, std::uint64_t need, const Deadline& deadline) {
        RingCtl& c = *in_.ctl;
        return wait_for([&] { return c.tail.load(std::memory_order_seq_cst) - pos >= need || c.broken.load() != 0; },
                        c.rsleepers, c.rrung, in_.data_efd, deadline);
    }
    [[noreturn]] void throw_broken() const {
        throw BrokenPipeError("connection is broken: a process died in the middle of a large message on it");
    }

    std::shared_ptr<Mapping> map_;
    Dir in_, out_;
    Fd sock_;
    std::atomic<bool> peer_gone_{false};  // sticky; written by whichever thread notices
    std::atomic<bool> closed_{false};
    unsigned sends_ = 0;
    std::uint64_t head_seen_ = 0;  // of the ring we send on
    std::uint64_t tail_seen_ = 0;  // of the ring we receive on
};

// Sleeps on the eventfd, watching the liveness socket too. Asleep, the end's closing comes first
// (close() rings the eventfd), and the peer's going ends the wait (a receiver then gets what is
// left).
template <class Ready>
WaitResult ShmChannel::wait_for(Ready ready, std::atomic<std::uint32_t>& sleepers, std::atomic<std::uint32_t>& rung,
                                const Fd& efd, const Deadline& deadline) {
    EventfdSleeper sleeper(sleepers, rung, efd, sock_.get());
    auto look = [&](bool asleep) {
        if (!asleep) return ready();
        if (closed_.load()) throw ValueError("connection was closed while waiting on it");
        return ready() || sleeper.watch_readable();
    };
    if (!wait_until(look, sleeper, deadline)) return WaitResult::timeout;
    if (sleeper.watch_readable()) {
        peer_gone_ = true;
        if (!ready()) return WaitResult::peer_gone;
    }
    return WaitResult::ready;
}

void ShmChannel::wait_space(std::uint64_t pos, std::uint64_t need) {
    RingCtl& c = *out_.ctl;
    const std::uint64_t cap = out_.cap;
    auto r =
        wait_for([&] { return cap - (pos - c.head.load(std::memory_order_seq_cst)) >= need || c.broken.load() != 0; },
                 c.wsleepers, c.wrung, out_.space_efd, std::nullopt);
    if (c.broken.load() != 0) throw_broken();
    if (r == WaitResult::peer_gone) throw BrokenPipeError("the other end of the connection is closed");
}

void ShmChannel::send(std::string_view head, std::string_view body) {
    Dir& d = out();
    RingCtl& c = *d.ctl;
    const std::uint64_t len = head.size() + body.size();
    if (len > kMaxMessage) throw ValueError("message too large: " + std::to_string(len) + " bytes");
    const std::uint64_t rec = align8(8 + len);

    ShmLockGuard lock(c.wlock);
    if (lock.owner_died && c.wpartial.load() != 0) {
        c.broken.store(1);
        c.wpartial.store(0);
        signal_efd(d.data_efd);
    }
    if (c.broken.load() != 0) throw_broken();
    if ((++sends_ % kPeerCheckEvery == 0 || peer_gone_) && peer_gone_now())
        throw BrokenPipeError("the other end of the connection is closed");

    std::uint64_t tail = c.tail.load(std::memory_order_relaxed);
    if (rec <= d.cap) {
        // The head we saw last is a lower bound (it only grows): trust it while it shows room,
        // and leave the receiver's cache line alone.
        // (Other senders may have moved `tail` far past our stale view, so compare used space.)
        if (tail - head_seen_ > d.cap - rec) {
            wait_space(tail, rec);
            head_seen_ = c.head.load(std::memory_order_acquire);
        }
        d.put(tail, reinterpret_cast<const char*>(&len), 8);
        d.put(tail + 8, head.data(), head.size());
        d.put(tail + 8 + head.size(), body.data(), body.size());
        publish(tail + rec);
        return;
    }
    // Larger than the ring: stream it.
    c.wpartial.store(1);
    wait_space(tail, 8 + kStreamPrefix);
    d.put(tail, reinterpret_cast<const char*>(&len), 8);
    std::uint64_t pos = tail + 8;
    for (std::string_view part : {head, body}) {
        while (!part.empty()) {
            std::uint64_t room = d.cap - (pos - c.head.load(std::memory_order_acquire));
            if (room == 0) {
                publish(pos);
                wait_space(pos, std::min<std::uint64_t>(part.size(), d.cap / 4));
                continue;
            }
            std::size_t n = std::min<std::uint64_t>(room, part.size());
            d.put(pos, part.data(), n);
            pos += n;
            part.remove_prefix(n);
        }
    }
    std::uint64_t end = align8(pos);
    wait_space(pos, end - pos);
    publish(end);  // then clear: a death in between must still read as "died mid-message"
    c.wpartial.store(0);
}

// The deadline bounds the wait for a message to begin. Once it has, it is read to its end: the
// sender is writing it now (one that dies half way breaks the ring, and the wait ends).
bool ShmChannel::recv(FrameSink& sink, const Deadline& deadline) {
    Dir& d = in();
    RingCtl& c = *d.ctl;
    ShmLockGuard lock(c.rlock);
    if (lock.owner_died && c.rpartial.load() != 0) {
        c.broken.store(1);
        c.rpartial.store(0);
        signal_efd(d.space_efd);  // a sender may sleep waiting for room the dead reader never made
    }
    if (c.broken.load() != 0) throw_broken();

    const std::uint64_t head = c.head.load(std::memory_order_relaxed);
    // Likewise the tail we saw last: everything before it is published.
    if (tail_seen_ < head + 8) {
        const WaitResult r = wait_data(head, 8, deadline);
        if (r == WaitResult::timeout) throw TimeoutError("timed out waiting for a message");
        if (r == WaitResult::peer_gone)
            throw EOFError("the other end of the connection is closed and no message is left");
        if (c.broken.load() != 0) throw_broken();
        tail_seen_ = c.tail.load(std::memory_order_acquire);
    }

    std::uint64_t len = 0;
    d.get(head, reinterpret_cast<char*>(&len), 8);
    const std::uint64_t rec = align8(8 + len);
    if (len > kMaxMessage || (rec <= d.cap && tail_seen_ - head < rec)) {
        c.broken.store(1);
        throw DecodeError("corrupt frame in shared memory (length " + std::to_string(len) + ")");
    }
    char prefix[8];
    const std::size_t plen = std::min<std::uint64_t>(len, 8);
    d.get(head + 8, prefix, plen);
    if (!sink.take(len, std::string_view(prefix, plen))) return false;

    std::uint64_t end = head + rec;
    // Room for all of it at once, unlike a socket's: a Pipe's peer is a process this program
    // started or handed the end to (or a manager's authenticated client), and a message longer
    // than the ring is streamed by a sender writing it now. Growing with the bytes would copy a
    // large message once more (a quarter gigabyte took 40% longer).
    GrowingRoom room(sink, len, len);
    if (rec <= d.cap) {
        d.get(head + 8, room.at_least(len), len);
        release(end);
    } else {
        c.rpartial.store(1);
        std::uint64_t pos = head + 8;
        std::uint64_t left = len;
        while (left > 0) {
            std::uint64_t avail = c.tail.load(std::memory_order_acquire) - pos;
            if (avail == 0) {
                if (wait_data(pos, 1, std::nullopt) == WaitResult::peer_gone || c.broken.load() != 0) {
                    c.broken.store(1);
                    throw EOFError("the other end closed in the middle of a message (" + std::to_string(len - left) +
                                   " of " + std::to_string(len) + " bytes received)");
                }
                continue;
            }
            std::size_t n = std::min(avail, left);
            const std::size_t got = len - left;
            d.get(pos, room.at_least(got + n) + got, n);
            pos += n;
            left -= n;
            release(pos);
        }
        if (wait_data(pos, end - pos, std::nullopt) == WaitResult::peer_gone) c.broken.store(1);
        release(end);  // then clear, as in send()
        c.rpartial.store(0);
    }
    // Counted (under the reader lock) before the caller sees the message: a receiver that dies
    // after this may have acted on it; one that dies before cannot have.
    c.received.store(c.received.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    // Sleepers first: that line is rarely written, while `tail` is the sender's hot line.
    if (c.rsleepers.load() != 0 && c.tail.load() != end) signal_efd(d.data_efd);
    return true;
}

bool ShmChannel::ready_now() {
    Dir& d = in();
    // After the peer is gone recv() does not block either: it returns what is left, then EOFError.
    return d.used() != 0 || d.ctl->broken.load() != 0 || peer_gone_now();
}

bool ShmChannel::poll(const Deadline& deadline) {
    Dir& d = in();
    if (deadline && *deadline <= Clock::now()) return ready_now();
    auto r = wait_data(d.ctl->head.load(std::memory_order_acquire), 8, deadline);
    return r != WaitResult::timeout;
}

void ShmChannel::arm(std::vector<pollfd>& fds) {
    Dir& d = in();
    d.ctl->rsleepers.fetch_add(1, std::memory_order_seq_cst);
    fds.push_back({d.data_efd.get(), POLLIN, 0});
    fds.push_back({sock_.get(), POLLIN, 0});
}

void ShmChannel::disarm() {
    RingCtl& c = *in_.ctl;
    c.rsleepers.fetch_sub(1, std::memory_order_seq_cst);
    drain_efd(in_.data_efd);
    c.rrung.store(0, std::memory_order_seq_cst);
    if (in_.used() != 0 && c.rsleepers.load() != 0) signal_efd(in_.data_efd);
}

// What an exported end carries: the mapping's shape, which ring it reads and writes, and the
// indices of its descriptors in SpawnArgs::fds (-1 for none).
using ExportedEnd = std::tuple<std::uint64_t, std::uint64_t, int, int, std::array<int, 6>>;

std::string ShmChannel::export_to(SpawnArgs& args) const {
    check_open();
    auto* base = static_cast<RingCtl*>(map_->base);
    auto index = [&](const Dir& d) { return d ? static_cast<int>(d.ctl - base) : -1; };
    auto fd = [&](const Fd& f) { return f.valid() ? args.add_fd(f.get()) : -1; };
    std::array<int, 6> fds{fd(map_->memfd),   fd(sock_),         fd(in_.data_efd),
                           fd(in_.space_efd), fd(out_.data_efd), fd(out_.space_efd)};
    return encode(ExportedEnd{map_->size, in_ ? in_.cap : out_.cap, index(in_), index(out_), fds});
}

std::uint64_t round_capacity(std::size_t want) {
    std::uint64_t cap = 4096;
    while (cap < want) cap <<= 1;
    return cap;
}

}  // namespace

std::shared_ptr<Channel> import_shm_channel(const SpawnArgs& args, const std::string& blob) {
    auto [size, cap_, in_idx, out_idx, fds] = decode<ExportedEnd>(blob);
    const std::uint64_t cap = cap_;  // a plain variable: lambdas below use it
    auto take = [&](int i) {
        if (i < 0) return Fd();
        const auto at = static_cast<std::size_t>(i);
        if (at >= args.fds.size()) throw DecodeError("exported connection: bad descriptor index");
        Fd borrowed(args.fds[at]);
        Fd own = dup_fd(borrowed);
        borrowed.release();
        return own;
    };
    const bool shape_ok = in_idx >= -1 && in_idx <= 1 && out_idx >= -1 && out_idx <= 1 && in_idx + out_idx > -2 &&
                          cap >= 4096 && (cap & (cap - 1)) == 0 &&
                          size >= kHeaderBytes + cap * static_cast<std::uint64_t>(std::max(in_idx, out_idx) + 1);
    if (!shape_ok) throw DecodeError("exported connection: inconsistent shape");
    auto map = std::make_shared<Mapping>();
    map->size = size;
    map->memfd = take(fds[0]);
    map->base = platform::map_shared(map->memfd.get(), size);
    auto dir = [&](int idx, int data_fd, int space_fd) {
        Dir d;
        if (idx < 0) return d;
        d.ctl = static_cast<RingCtl*>(map->base) + idx;
        d.data = static_cast<char*>(map->base) + kHeaderBytes + static_cast<std::uint64_t>(idx) * cap;
        d.cap = cap;
        d.data_efd = take(data_fd);
        d.space_efd = take(space_fd);
        return d;
    };
    Dir in = dir(in_idx, fds[2], fds[3]);
    Dir out = dir(out_idx, fds[4], fds[5]);
    return std::make_shared<ShmChannel>(std::move(map), std::move(in), std::move(out), take(fds[1]));
}

std::pair<std::shared_ptr<Channel>, std::shared_ptr<Channel>> make_shm_pipe(bool duplex, std::size_t capacity) {
    const std::uint64_t cap = round_capacity(capacity);
    const std::size_t ndirs = duplex ? 2 : 1;
    auto map = std::make_shared<Mapping>();
    map->size = kHeaderBytes + cap * ndirs;
    map->memfd = platform::make_memfd("mprocess-pipe", map->size);
    map->base = platform::map_shared(map->memfd.get(), map->size);

    Dir dirs[2];
    for (std::size_t i = 0; i < ndirs; ++i) {
        auto* ctl = new (static_cast<char*>(map->base) + i * sizeof(RingCtl)) RingCtl{};
        ctl->capacity = cap;
        dirs[i].ctl = ctl;
        dirs[i].data = static_cast<char*>(map->base) + kHeaderBytes + i * cap;
        dirs[i].cap = cap;
        dirs[i].data_efd = make_eventfd();
        dirs[i].space_efd = make_eventfd();
    }
    auto copy = [](const Dir& d) {
        Dir c;
        c.ctl = d.ctl;
        c.data = d.data;
        c.cap = d.cap;
        c.data_efd = dup_fd(d.data_efd);
        c.space_efd = dup_fd(d.space_efd);
        return c;
    };
    auto [sa, sb] = platform::make_socketpair();
    // End 1 sends on ring 0; end 2 receives on it. In a duplex pipe ring 1 runs the other way.
    if (duplex) {
        Dir ring0_for_2 = copy(dirs[0]);
        Dir ring1_for_2 = copy(dirs[1]);
        auto a = std::make_shared<ShmChannel>(map, std::move(dirs[1]), std::move(dirs[0]), std::move(sa));
        auto b = std::make_shared<ShmChannel>(map, std::move(ring0_for_2), std::move(ring1_for_2), std::move(sb));
        return {a, b};
    }
    Dir ring0_for_w = copy(dirs[0]);
    auto r = std::make_shared<ShmChannel>(map, std::move(dirs[0]), Dir{}, std::move(sa));
    auto w = std::make_shared<ShmChannel>(map, Dir{}, std::move(ring0_for_w), std::move(sb));
    return {r, w};
}

void send_pipe_end(int sock, const Connection& end) {
    SpawnArgs args;
    const std::string blob = ConnectionAccess::channel(end).export_to(args);
    const std::uint64_t n = blob.size();
    const std::string msg = std::string(reinterpret_cast<const char*>(&n), sizeof n) + blob;
    platform::send_with_fds(sock, msg.data(), msg.size(), args.fds);
}

std::optional<Connection> recv_pipe_end(int sock) {
    std::uint64_t n = 0;
    std::vector<int> fds;
    std::string blob;
    bool ok = platform::recv_with_fds(sock, &n, sizeof n, fds) && n <= (1u << 16);
    if (ok) {
        blob.resize(n);
        ok = platform::recv_with_fds(sock, blob.data(), n, fds);
    }
    std::vector<Fd> owned;
    owned.reserve(fds.size());
    for (int fd : fds) owned.emplace_back(fd);  // closed when done: the channel keeps its own copies
    if (!ok) return std::nullopt;
    SpawnArgs args;
    args.fds = fds;
    return ConnectionAccess::wrap(import_shm_channel(args, blob));
}

}  // namespace mprocess::detail
