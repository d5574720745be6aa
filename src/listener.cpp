// SPDX-License-Identifier: Apache-2.0
// Listener and Client. The handshake itself is in handshake.cpp; here, the listener's side of
// running many at once: the connections accepted whose handshake is under way, each with its own
// deadline, in arrival order, driven from one poll loop.
#include "mprocess/listener.hpp"

#include <algorithm>
#include <iterator>
#include <list>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "channel/handshake.hpp"
#include "platform/socket.hpp"
#include "channel/socket_channel.hpp"

namespace mprocess {

namespace {

using detail::Handshake;

// New connections taken from the kernel's queue in one go, before the handshakes under way are
// looked at again: a flood of connections cannot starve them.
constexpr int kAcceptBatch = 64;
// A handshake whose peer has owed it a message this long is stalled: a client that means it
// answers within a round trip and an HMAC, even across the world on a loaded machine.
constexpr auto kStalled = std::chrono::seconds(1);

// A connection accepted, its handshake under way.
struct Pending {
    Pending(platform::Fd f, std::string_view key, platform::Clock::time_point now, const Timeout& timeout,
            std::string from)
        : fd(std::move(f)),
          handshake(fd.get(), Handshake::Side::listener, key),
          deadline(*timeout.deadline_from(now)),  // finite: the Listener checked
          waiting_since(now),
          source(std::move(from)) {}
    platform::Fd fd;
    Handshake handshake;
    platform::Clock::time_point deadline;
    platform::Clock::time_point waiting_since;  // for the peer's next message
    std::string source;
};

}  // namespace

struct Listener::State {
    platform::Fd fd;
    std::string address;
    std::string unix_path;     // a socket file to remove at close
    bool unix_socket = false;  // a path or an abstract name: its peers come from users
    bool check_users = false;  // and only ours and allowed_uids are let in
    ListenerOptions options;
    std::timed_mutex accepting;  // one accept() at a time: the pending handshakes are its own
    std::list<Pending> pending;  // oldest first
    // For the TimeoutError of an accept() that found no client: the connections that failed
    // meanwhile, and why the last did.
    std::size_t failed = 0;
    std::string last_failure;

    void drop(std::list<Pending>::iterator it, std::string why) {
        ++failed;
        last_failure = std::move(why);
        pending.erase(it);
    }

    // Where a new connection comes from (its IP address, or on a Unix socket its user), or
    // nullopt if it is refused: on a Unix socket, a user neither ours nor allowed, or unknown.
    std::optional<std::string> admit(int conn) {
        if (!unix_socket) return platform::peer_address(conn);
        const auto uid = platform::peer_uid(conn);
        const auto& allowed = options.allowed_uids;
        if (uid && (!check_users || *uid == platform::own_uid() ||
                    std::find(allowed.begin(), allowed.end(), *uid) != allowed.end()))
            return "user " + std::to_string(*uid);
        ++failed;
        last_failure = uid ? "a client of user " + std::to_string(*uid) +
                                 " was refused (only this process's user and allowed_uids may connect)"
                           : "a client whose user could not be known was refused";
        return std::nullopt;
    }

    Connection wrap(platform::Fd fd) const {
        return detail::ConnectionAccess::wrap(
            detail::as_channel(detail::make_socket_channel(std::move(fd), options.max_message)));
    }

    // Moves a handshake on with what has arrived: the connection, if that completed it.
    std::optional<Connection> progress(std::list<Pending>::iterator it) {
        const std::size_t heard = it->handshake.received();
        try {
            const bool done = it->handshake.advance();
            if (it->handshake.received() != heard) it->waiting_since = platform::Clock::now();
            if (!done) return std::nullopt;
        } catch (const Error& e) {
            // As Python's accept(): a client that fails its handshake is an AuthenticationError.
            // The listener is unharmed: the handshakes under way go on at the next accept().
            std::string why = e.what();
            drop(it, why);
            throw AuthenticationError(why);
        }
        Connection c = wrap(std::move(it->fd));
        pending.erase(it);
        return c;
    }

    // The handshake that has waited longest for its peer, among those from `source` (or all).
    std::list<Pending>::iterator longest_waiting(const std::string* source) {
        auto best = pending.end();
        for (auto it = pending.begin(); it != pending.end(); ++it)
            if ((!source || it->source == *source) &&
                (best == pending.end() || it->waiting_since < best->waiting_since))
                best = it;
        return best;
    }

    // Room for one more from `source`. Decision: past max_pending_per_source, the one of that
    // source that has waited longest goes, but only if it is stalled: so a flood from one address
    // costs that address its own old connections, while a burst of real clients from one host
    // (a pool's workers connecting at once) is not cut down. Past max_pending, the one that has
    // waited longest of all goes, stalled or not: a client that answers promptly is the last to.
    void make_room(const std::string& source, platform::Clock::time_point now) {
        const auto same = static_cast<std::size_t>(
            std::count_if(pending.begin(), pending.end(), [&](const Pending& p) { return p.source == source; }));
        if (same >= options.max_pending_per_source) {
            auto it = longest_waiting(&source);
            if (now - it->waiting_since >= kStalled)
                drop(it, "dropped: its client stalled while more than " +
                             std::to_string(options.max_pending_per_source) + " handshakes were under way from " +
                             source);
        }
        if (pending.size() >= options.max_pending)
            drop(longest_waiting(nullptr), "dropped: it waited longest while more than " +
                                               std::to_string(options.max_pending) + " handshakes were under way");
    }

    // Takes the connections waiting in the kernel's queue and starts their handshakes; a
    // connection whose handshake is already complete (a key-less client's hello came with it).
    std::optional<Connection> take_new() {
        for (int i = 0; i < kAcceptBatch; ++i) {
            platform::Fd fd = platform::accept_now(this->fd.get());
            if (!fd.valid()) return std::nullopt;
            auto source = admit(fd.get());
            if (!source) continue;  // closed at once, before the handshake
            const auto now = platform::Clock::now();
            make_room(*source, now);
            pending.emplace_back(std::move(fd), options.authkey, now, options.handshake_timeout, std::move(*source));
            if (auto c = progress(std::prev(pending.end()))) return c;
        }
        return std::nullopt;
    }

    void drop_late(platform::Clock::time_point now) {
        for (auto it = pending.begin(); it != pending.end();) {
            auto cur = it++;
            if (cur->deadline <= now)
                drop(cur, "the authentication handshake took too long: the client did not answer");
        }
    }

    std::string timed_out() const {
        std::string why = "timed out waiting for a client to connect and authenticate";
        if (failed != 0)
            why += "; meanwhile " + std::to_string(failed) + (failed == 1 ? " connection" : " connections") +
                   " failed, the last because " + last_failure;
        return why;
    }
};

Listener::Listener(const std::string& address, ListenerOptions options) : st_(std::make_unique<State>()) {
    if (options.max_pending == 0 || options.max_pending_per_source == 0)
        throw ValueError("max_pending and max_pending_per_source must be at least 1");
    if (options.handshake_timeout.infinite())
        throw ValueError("handshake_timeout must be finite: a client that never answers would hold its place for good");
    const auto parsed = platform::parse_address(address);
    st_->fd = platform::listen_on(parsed, options.backlog, options.mode, st_->address);
    if (parsed.kind == platform::SocketAddress::Kind::unix_path) st_->unix_path = parsed.path;
    st_->unix_socket = parsed.kind != platform::SocketAddress::Kind::tcp;
    // A socket file whose mode lets its group or others connect says who may: the file decides.
    st_->check_users = parsed.kind == platform::SocketAddress::Kind::unix_abstract ||
                       (parsed.kind == platform::SocketAddress::Kind::unix_path && (options.mode & 077) == 0);
    st_->options = std::move(options);
}

Listener::~Listener() {
    close();
}
Listener::Listener(Listener&&) noexcept = default;
Listener& Listener::operator=(Listener&& o) noexcept {
    if (this != &o) {
        close();
        st_ = std::move(o.st_);
    }
    return *this;
}

Connection Listener::accept(Timeout timeout) {
    if (closed()) throw ValueError("the Listener is closed");
    const auto deadline = timeout.deadline();
    State& st = *st_;
    std::unique_lock lock(st.accepting, std::defer_lock);
    if (!deadline)
        lock.lock();
    else if (!lock.try_lock_until(*deadline))
        throw TimeoutError("timed out waiting for a client: another thread was accepting");
    st.failed = 0;
    st.last_failure.clear();
    std::vector<pollfd> fds;
    for (;;) {
        st.drop_late(platform::Clock::now());
        fds.assign(1, pollfd{st.fd.get(), POLLIN, 0});
        platform::Deadline wake = deadline;
        for (const auto& p : st.pending) {
            fds.push_back({p.fd.get(), POLLIN, 0});
            if (!wake || p.deadline < *wake) wake = p.deadline;
        }
        platform::poll_until(fds.data(), fds.size(), wake);
        auto it = st.pending.begin();
        for (std::size_t i = 1; i < fds.size(); ++i) {
            auto cur = it++;
            if (fds[i].revents == 0) continue;
            if (auto c = st.progress(cur)) return *c;
        }
        if (fds[0].revents != 0)
            if (auto c = st.take_new()) return *c;
        if (deadline && platform::Clock::now() >= *deadline) throw TimeoutError(st.timed_out());
    }
}

void Listener::close() {
    if (!st_ || !st_->fd.valid()) return;
    st_->pending.clear();
    st_->fd.reset();
    if (!st_->unix_path.empty()) platform::unlink_socket_path(st_->unix_path);
}

bool Listener::closed() const noexcept {
    return !st_ || !st_->fd.valid();
}

const std::string& Listener::address() const noexcept {
    static const std::string none;
    return st_ ? st_->address : none;
}

int Listener::fileno() const {
    if (closed()) throw ValueError("the Listener is closed");
    return st_->fd.get();
}

Connection Client(const std::string& address, const ClientOptions& options) {
    const auto deadline = options.timeout.deadline();
    platform::Fd fd = platform::connect_to(platform::parse_address(address), deadline);
    detail::run_handshake(fd.get(), Handshake::Side::client, options.authkey, deadline);
    auto ch = detail::make_socket_channel(std::move(fd), options.max_message);
    if (options.authkey.empty()) detail::expect_welcome(*ch);
    return detail::ConnectionAccess::wrap(detail::as_channel(std::move(ch)));
}

}  // namespace mprocess
