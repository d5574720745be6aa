// The socket transport of Listener and Client: a stream socket carrying frames, each an 8-byte
// length and the message.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "channel.hpp"

namespace mprocess::detail {

class SocketChannel;

// A connected socket as a Channel. A frame longer than max_message ends the connection with a
// clear error before anything is allocated for it.
std::shared_ptr<SocketChannel> make_socket_channel(platform::Fd fd, std::size_t max_message);
std::shared_ptr<Channel> as_channel(std::shared_ptr<SocketChannel> ch);
// The socket channel behind a Channel, or null if it is another kind.
SocketChannel* as_socket_channel(Channel& ch) noexcept;

// For the handshake: one frame of at most `limit` bytes, read before the deadline (TimeoutError),
// and a frame sent.
std::string recv_small(SocketChannel& ch, std::size_t limit, const platform::Deadline& deadline);
void send_frame(SocketChannel& ch, std::string_view message);

// Rebuilds an end exported by export_to() in another process; false if the blob is not a socket's.
bool is_socket_export(const std::string& blob);
std::shared_ptr<Channel> import_socket_channel(const SpawnArgs& args, const std::string& blob);

// HMAC-SHA256 of data under key: the authkey handshake's, and the keys derived from an authkey.
std::string hmac_sha256(const std::string& key, std::string_view data);

}  // namespace mprocess::detail
