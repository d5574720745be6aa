// SPDX-License-Identifier: Apache-2.0
#include "channel/handshake.hpp"

#include <endian.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdint>
#include <cstring>

#include "mprocess/error.hpp"
#include "platform/socket.hpp"
#include "channel/socket_channel.hpp"

namespace mprocess::detail {

std::string hmac_sha256(const std::string& key, std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &n))
        throw AuthenticationError("HMAC-SHA256 failed");
    return std::string(reinterpret_cast<const char*>(out), n);
}

namespace {

constexpr std::string_view kChallenge = "#CHALLENGE#sha256:";
constexpr std::string_view kNoKey = "#NOKEY#";
constexpr std::string_view kFailure = "#FAILURE#";
constexpr std::size_t kHeader = sizeof(std::uint64_t);

std::string_view role(Handshake::Side side) {
    return side == Handshake::Side::listener ? "server" : "client";
}

Handshake::Side other(Handshake::Side side) {
    return side == Handshake::Side::listener ? Handshake::Side::client : Handshake::Side::listener;
}

// What the answerer on `side` proves with: HMAC(key, its role + the challenge's random bytes).
std::string digest(std::string_view key, Handshake::Side side, std::string_view nonce) {
    return hmac_sha256(std::string(key), std::string(role(side)) + std::string(nonce));
}

}  // namespace

Handshake::Handshake(int fd, Side side, std::string_view key)
    : fd_(fd), side_(side), key_(key), expect_(side == Side::listener ? Expect::hello : Expect::challenge) {
    if (side_ == Side::listener) return;
    send(key_.empty() ? kHelloWithoutKey : kHelloWithKey);
    // A key-less client does not wait for the listener's answer: its first recv takes it.
    if (key_.empty()) expect_ = Expect::nothing;
}

bool Handshake::advance() {
    std::string_view m;
    while (expect_ != Expect::nothing) {
        if (!next_message(m)) return false;
        on_message(m);
    }
    return true;
}

bool Handshake::next_message(std::string_view& message) {
    for (;;) {
        std::size_t want = kHeader;
        if (have_ >= kHeader) {
            std::uint64_t n = 0;
            std::memcpy(&n, in_.data(), kHeader);
            n = le64toh(n);
            if (n > kHandshakeLimit)
                throw AuthenticationError("the handshake got a message of " + std::to_string(n) +
                                          " bytes, more than the " + std::to_string(kHandshakeLimit) + " it allows");
            want = kHeader + n;
            if (have_ == want) {
                have_ = 0;  // the bytes stay in in_ until the next read, after the message is used
                ++received_;
                message = std::string_view(in_.data() + kHeader, n);
                return true;
            }
        }
        const auto got = platform::recv_now(fd_, in_.data() + have_, want - have_);
        if (!got) return false;
        if (*got == 0)
            throw AuthenticationError(side_ == Side::listener
                                          ? "the client closed the connection during the authentication handshake"
                                          : "the listener closed the connection during the authentication handshake");
        have_ += *got;
    }
}

void Handshake::on_message(std::string_view m) {
    switch (expect_) {
        case Expect::hello:
            return greet(m);
        case Expect::challenge:
            return answer(m);
        case Expect::answer:
            return judge(m);
        case Expect::verdict:
            return hear(m);
        case Expect::nothing:
            return;
    }
}

// The listener's side of the hello.
void Handshake::greet(std::string_view hello) {
    const bool client_has_key = hello == kHelloWithKey;
    if (!client_has_key && hello != kHelloWithoutKey)
        throw AuthenticationError("the client did not begin with the mprocess handshake");
    if (client_has_key != key_.empty()) {
        if (!key_.empty()) return challenge();
        // A client that sent and left at once (as Python's may) cannot be welcomed, but what it
        // sent is here to be read, then its end of file.
        send(kWelcome, false);
        expect_ = Expect::nothing;
        return;
    }
    send(key_.empty() ? kNoKey : kNeedKey, false);
    throw AuthenticationError(key_.empty()
                                  ? "the client has an authkey and this listener has none: both ends need the same key"
                                  : "the client has no authkey and this listener requires one");
}

// Asks the peer to prove that it knows the key.
void Handshake::challenge() {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce_.data()), static_cast<int>(nonce_.size())) != 1)
        throw AuthenticationError("no random bytes for a challenge");
    send(std::string(kChallenge) + std::string(nonce_.data(), nonce_.size()));
    expect_ = Expect::answer;
}

// The peer's answer to our challenge.
void Handshake::judge(std::string_view answer) {
    const std::string want = digest(key_, other(side_), std::string_view(nonce_.data(), nonce_.size()));
    if (answer.size() != want.size() || CRYPTO_memcmp(answer.data(), want.data(), want.size()) != 0) {
        send(kFailure, false);
        throw AuthenticationError("the other end does not know the authkey (its answer to our challenge was wrong)");
    }
    send(kWelcome);
    expect_ = side_ == Side::listener ? Expect::challenge : Expect::nothing;
}

// The peer's challenge: proves to it that we know the key.
void Handshake::answer(std::string_view challenge) {
    if (side_ == Side::client && challenge == kNoKey)
        throw AuthenticationError("the listener has no authkey and this client has one: both ends need the same key");
    if (challenge.size() != kChallenge.size() + nonce_.size() || challenge.substr(0, kChallenge.size()) != kChallenge)
        throw AuthenticationError("the other end did not send an authentication challenge (does it use an authkey?)");
    send(digest(key_, side_, challenge.substr(kChallenge.size())));
    expect_ = Expect::verdict;
}

// The peer's verdict on our answer.
void Handshake::hear(std::string_view verdict) {
    if (verdict == kFailure) throw AuthenticationError("the other end rejected our authkey");
    if (verdict != kWelcome) throw AuthenticationError("the other end broke the authentication protocol");
    if (side_ == Side::listener) {
        expect_ = Expect::nothing;
        return;
    }
    challenge();
}

void Handshake::send(std::string_view message, bool must) {
    const std::uint64_t n = htole64(message.size());
    std::string frame(reinterpret_cast<const char*>(&n), kHeader);
    frame += message;
    if (!platform::send_now(fd_, frame) && must)
        throw AuthenticationError("the other end does not take the handshake's messages (it left, or does not read)");
}

void run_handshake(int fd, Handshake::Side side, std::string_view key, const platform::Deadline& deadline) {
    try {
        Handshake handshake(fd, side, key);
        while (!handshake.advance()) {
            pollfd p{fd, POLLIN, 0};
            if (platform::poll_until(&p, 1, deadline) == 0)
                throw AuthenticationError(
                    side == Handshake::Side::listener
                        ? "the authentication handshake took too long: the client did not answer"
                        : "the authentication handshake took too long: the listener did not answer");
        }
    } catch (const AuthenticationError&) {
        throw;
    } catch (const Error& e) {
        throw AuthenticationError(std::string("the authentication handshake failed: ") + e.what());
    }
}

}  // namespace mprocess::detail
