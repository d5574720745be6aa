// SPDX-License-Identifier: Apache-2.0
// The authentication handshake of Listener and Client, as a small state machine fed by whatever
// bytes have arrived: a listener runs many at once from one poll loop, so that a peer that is slow,
// silent or hostile holds up nobody but itself; a client runs its one to the end.
//
// The protocol. The client speaks first: a hello that says whether it has an authkey. The
// listener answers a key-less hello with "#WELCOME#", or "#NEEDKEY#" if it has a key (the client
// reads that answer with its first recv: see expect_welcome), and a hello with a key with
// "#NOKEY#" if it has none; so a key on one end only fails at once on both. With an authkey on both
// sides (listener first, then the client in turn):
//   challenger -> "#CHALLENGE#sha256:" + 32 fresh random bytes
//   answerer   -> HMAC-SHA256(authkey, its role ("server" or "client") + those 32 bytes)
//   challenger -> "#WELCOME#" or "#FAILURE#" (the digest compared in constant time)
// The role in the digest stops a fake server from bouncing a client's own challenge to another
// connection of the same client and using the answer.
//
// Every message is a frame (8-byte length, then the bytes) of at most 256 bytes, read exactly:
// never a byte past the handshake, which belongs to the connection's first message. Sends are
// a few dozen bytes on a fresh socket, which always has room for them: one that cannot go at once
// means a peer that does not read, and fails the handshake instead of waiting.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "platform/posix.hpp"

namespace mprocess::detail {

// HMAC-SHA256 of data under key: the authkey handshake's, and the keys derived from an authkey.
std::string hmac_sha256(const std::string& key, std::string_view data);

inline constexpr std::size_t kHandshakeLimit = 256;  // no handshake message is longer

class Handshake {
public:
    enum class Side { listener, client };

    // On a connected socket (borrowed, as is the key: both must outlive the handshake). A client
    // sends its hello here.
    Handshake(int fd, Side side, std::string_view key);

    // Goes as far as the bytes that have arrived allow, never waiting: true once it is done.
    // AuthenticationError if the peer fails it, breaks the protocol, or leaves.
    bool advance();
    // Messages received whole so far: a peer that sends them is getting somewhere.
    std::size_t received() const noexcept { return received_; }

private:
    enum class Expect { hello, challenge, answer, verdict, nothing };

    // The next whole message, read exactly, if it has all arrived.
    bool next_message(std::string_view& message);
    void on_message(std::string_view m);
    void greet(std::string_view hello);
    void challenge();
    void judge(std::string_view answer);
    void answer(std::string_view challenge);
    void hear(std::string_view verdict);
    // `must`: a send that cannot go fails the handshake; otherwise it is a last word, sent if it can.
    void send(std::string_view message, bool must = true);

    int fd_;
    Side side_;
    std::string_view key_;
    Expect expect_;
    std::array<char, 32> nonce_{};                // of our challenge
    std::array<char, 8 + kHandshakeLimit> in_{};  // the message being read
    std::size_t have_ = 0;                        // bytes of it read so far
    std::size_t received_ = 0;
};

// A whole handshake on a blocking socket, within the deadline; every failure, the deadline's
// passing included, is an AuthenticationError.
void run_handshake(int fd, Handshake::Side side, std::string_view key, const platform::Deadline& deadline);

}  // namespace mprocess::detail
