// The shared-memory transport of Pipe(): one ring per direction in a memfd.
#pragma once

#include <memory>

#include "channel.hpp"

namespace mprocess::detail {

// Creates the two connected ends of a pipe.
std::pair<std::shared_ptr<Channel>, std::shared_ptr<Channel>> make_shm_pipe(bool duplex, std::size_t capacity);

// Rebuilds an end exported by Channel::export_to() in another process (with its own fd copies).
std::shared_ptr<Channel> import_shm_channel(const SpawnArgs& args, const std::string& blob);

}  // namespace mprocess::detail
