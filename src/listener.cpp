// Listener, Client, and the authentication handshake.
//
// The handshake. The client speaks first: a hello that says whether it has an authkey. The
// listener answers a key-less hello with "#WELCOME#", or "#NEEDKEY#" if it has a key (the client
// reads that answer with its first recv: see expect_welcome), and a hello with a key with
// "#NOKEY#" if it has none; so a key on one end only fails at once on both. With an authkey on both
// sides (server first, then the client in turn):
//   challenger -> "#CHALLENGE#sha256:" + 32 fresh random bytes
//   answerer   -> HMAC-SHA256(authkey, its role ("server" or "client") + those 32 bytes)
//   challenger -> "#WELCOME#" or "#FAILURE#" (the digest compared in constant time)
// The role in the digest stops a fake server from bouncing a client's own challenge to another
// connection of the same client and using the answer.
// Every handshake message is a small frame read against the handshake's deadline, so a silent or
// babbling peer costs that one connection its timeout, nothing more.
#include "mprocess/listener.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <utility>

#include "platform/socket.hpp"
#include "socket_channel.hpp"

namespace mprocess {

std::string detail::hmac_sha256(const std::string& key, std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &n))
        throw AuthenticationError("HMAC-SHA256 failed");
    return std::string(reinterpret_cast<const char*>(out), n);
}

namespace {

using detail::kHelloWithKey;
using detail::kHelloWithoutKey;
using detail::kNeedKey;
using detail::kWelcome;
constexpr std::string_view kChallenge = "#CHALLENGE#sha256:";
constexpr std::string_view kNoKey = "#NOKEY#";
constexpr std::string_view kFailure = "#FAILURE#";
constexpr std::size_t kNonce = 32;
constexpr std::size_t kHandshakeLimit = 256;  // no handshake message is longer

std::string hmac(const std::string& key, std::string_view data) {
    return detail::hmac_sha256(key, data);
}

std::string_view role(bool server) {
    return server ? "server" : "client";
}

// Asks the peer to prove it knows the key; `server`: which side we are.
void deliver_challenge(detail::SocketChannel& ch, const std::string& key, bool server,
                       const platform::Deadline& deadline) {
    std::string nonce(kNonce, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) != 1)
        throw AuthenticationError("no random bytes for a challenge");
    detail::send_frame(ch, std::string(kChallenge) + nonce);
    const std::string answer = detail::recv_small(ch, kHandshakeLimit, deadline);
    const std::string want = hmac(key, std::string(role(!server)) + nonce);
    if (answer.size() != want.size() || CRYPTO_memcmp(answer.data(), want.data(), want.size()) != 0) {
        try {
            detail::send_frame(ch, kFailure);
        } catch (const Error&) {
        }
        throw AuthenticationError("the other end does not know the authkey (its answer to our challenge was wrong)");
    }
    detail::send_frame(ch, kWelcome);
}

// Proves to the peer that we know the key.
void answer_challenge(detail::SocketChannel& ch, const std::string& key, bool server,
                      const platform::Deadline& deadline) {
    const std::string challenge = detail::recv_small(ch, kHandshakeLimit, deadline);
    if (!server && challenge == kNoKey)
        throw AuthenticationError("the listener has no authkey and this client has one: both ends need the same key");
    if (challenge.size() != kChallenge.size() + kNonce || challenge.compare(0, kChallenge.size(), kChallenge) != 0)
        throw AuthenticationError("the other end did not send an authentication challenge (does it use an authkey?)");
    detail::send_frame(ch, hmac(key, std::string(role(server)) + challenge.substr(kChallenge.size())));
    const std::string verdict = detail::recv_small(ch, kHandshakeLimit, deadline);
    if (verdict == kFailure) throw AuthenticationError("the other end rejected our authkey");
    if (verdict != kWelcome) throw AuthenticationError("the other end broke the authentication protocol");
}

// The listener's side of the hello; true if the key-less exchange is complete.
bool greet_client(detail::SocketChannel& ch, const std::string& key, const platform::Deadline& deadline) {
    const std::string hello = detail::recv_small(ch, kHandshakeLimit, deadline);
    const bool client_has_key = hello == kHelloWithKey;
    if (!client_has_key && hello != kHelloWithoutKey)
        throw AuthenticationError("the client did not begin with the mprocess handshake");
    if (client_has_key == !key.empty()) {
        if (!key.empty()) return false;
        try {
            detail::send_frame(ch, kWelcome);
        } catch (const Error&) {
            // A client that sent and left at once (as Python's may) cannot be welcomed, but what
            // it sent is here to be read, then its end of file.
        }
        return true;
    }
    try {
        detail::send_frame(ch, key.empty() ? kNoKey : kNeedKey);
    } catch (const Error&) {
    }
    throw AuthenticationError(key.empty()
                                  ? "the client has an authkey and this listener has none: both ends need the same key"
                                  : "the client has no authkey and this listener requires one");
}

// Runs the handshake within the deadline; every failure is an AuthenticationError.
void authenticate(detail::SocketChannel& ch, const std::string& key, bool server, const platform::Deadline& deadline) {
    try {
        if (server) {
            if (greet_client(ch, key, deadline)) return;
            deliver_challenge(ch, key, true, deadline);
            answer_challenge(ch, key, true, deadline);
        } else {
            detail::send_frame(ch, key.empty() ? kHelloWithoutKey : kHelloWithKey);
            if (key.empty()) {
                detail::expect_welcome(ch);
                return;
            }
            answer_challenge(ch, key, false, deadline);
            deliver_challenge(ch, key, false, deadline);
        }
    } catch (const AuthenticationError&) {
        throw;
    } catch (const TimeoutError&) {
        throw AuthenticationError(server ? "the authentication handshake took too long: the client did not answer"
                                         : "the authentication handshake took too long: the listener did not answer");
    } catch (const Error& e) {
        throw AuthenticationError(std::string("the authentication handshake failed: ") + e.what());
    }
}

platform::Deadline deadline_in(double seconds) {
    return platform::Clock::now() + std::chrono::duration_cast<platform::Clock::duration>(
                                        std::chrono::duration<double>(seconds > 0 ? seconds : 0));
}

}  // namespace

struct Listener::State {
    platform::Fd fd;
    std::string address;
    std::string unix_path;  // a socket file to remove at close
    ListenerOptions options;
};

Listener::Listener(const std::string& address, ListenerOptions options) : st_(std::make_unique<State>()) {
    const auto parsed = platform::parse_address(address);
    st_->fd = platform::listen_on(parsed, options.backlog, options.mode, st_->address);
    if (parsed.kind == platform::SocketAddress::Kind::unix_path) st_->unix_path = parsed.path;
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
    Connection c = detail::accept_unauthenticated(*this, timeout);
    detail::authenticate_accepted(*this, c);
    return c;
}

Connection detail::accept_unauthenticated(Listener& l, Timeout timeout) {
    if (l.closed()) throw ValueError("the Listener is closed");
    platform::Fd fd = platform::accept_until(l.st_->fd.get(), timeout.deadline());
    return ConnectionAccess::wrap(as_channel(make_socket_channel(std::move(fd), l.st_->options.max_message)));
}

void detail::authenticate_accepted(const Listener& l, Connection& c) {
    auto* ch = as_socket_channel(ConnectionAccess::channel(c));
    if (!ch) throw ValueError("not a socket connection");
    try {
        authenticate(*ch, l.st_->options.authkey, true, deadline_in(l.st_->options.handshake_timeout));
    } catch (...) {
        c.close();
        throw;
    }
}

void Listener::close() {
    if (!st_ || !st_->fd.valid()) return;
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

Connection Client(const std::string& address, ClientOptions options) {
    const auto deadline = deadline_in(options.timeout);
    platform::Fd fd = platform::connect_to(platform::parse_address(address), deadline);
    auto ch = detail::make_socket_channel(std::move(fd), options.max_message);
    authenticate(*ch, options.authkey, false, deadline);
    return detail::ConnectionAccess::wrap(detail::as_channel(std::move(ch)));
}

}  // namespace mprocess
