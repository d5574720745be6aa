// SPDX-License-Identifier: Apache-2.0
// The socket transport of Listener and Client: a stream socket carrying frames, each an 8-byte
// length and the message.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "channel/channel.hpp"

namespace mprocess::detail {

class SocketChannel;

// A connected socket as a Channel. A frame longer than max_message ends the connection with a
// clear error before anything is allocated for it.
std::shared_ptr<SocketChannel> make_socket_channel(platform::Fd fd, std::size_t max_message);
std::shared_ptr<Channel> as_channel(std::shared_ptr<SocketChannel> ch);
// The socket channel behind a Channel, or null if it is another kind.
SocketChannel* as_socket_channel(Channel& ch) noexcept;

// The handshake's first exchange: every client says whether it has a key; the listener answers
// a key-less client with kWelcome, or with kNeedKey if it has a key itself.
inline constexpr std::string_view kHelloWithKey = "#HELLO#authkey";
inline constexpr std::string_view kHelloWithoutKey = "#HELLO#nokey";
inline constexpr std::string_view kWelcome = "#WELCOME#";
inline constexpr std::string_view kNeedKey = "#NEEDKEY#";
// A key-less Client() returns without waiting for that answer, as Python's does (so that one
// thread may connect, then accept): the answer is the first frame on the connection, checked by
// the first recv() or poll(), which throw AuthenticationError if the listener wanted a key.
void expect_welcome(SocketChannel& ch) noexcept;
// Takes that answer now, if it is still due: for a caller that next reads the socket itself.
void take_welcome(SocketChannel& ch, const platform::Deadline& deadline);

// Rebuilds an end exported by export_to() in another process; false if the blob is not a socket's.
bool is_socket_export(const std::string& blob);
std::shared_ptr<Channel> import_socket_channel(const SpawnArgs& args, const std::string& blob);

}  // namespace mprocess::detail
