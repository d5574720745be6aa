// SPDX-License-Identifier: Apache-2.0
// The shared-memory transport of Pipe(): one ring per direction in a memfd.
#pragma once

#include <memory>
#include <optional>

#include "channel/channel.hpp"

namespace mprocess::detail {

// Creates the two connected ends of a pipe.
std::pair<std::shared_ptr<Channel>, std::shared_ptr<Channel>> make_shm_pipe(bool duplex, std::size_t capacity);

// Rebuilds an end exported by Channel::export_to() in another process (with its own fd copies).
std::shared_ptr<Channel> import_shm_channel(const SpawnArgs& args, const std::string& blob);

// Hands a Pipe end to the process at the other end of the Unix socket `sock`: its export, and its
// descriptors attached (SCM_RIGHTS). recv_pipe_end() rebuilds it there: nullopt if the socket
// ended first, DecodeError if what came is not a Pipe end. (A manager moves its clients on this
// machine to shared memory this way.)
void send_pipe_end(int sock, const Connection& end);
std::optional<Connection> recv_pipe_end(int sock);

}  // namespace mprocess::detail
