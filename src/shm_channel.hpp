// The shared-memory transport of Pipe(): one ring per direction in a memfd.
#pragma once

#include <memory>

#include "channel.hpp"

namespace mprocess::detail {

// Creates the two connected ends of a pipe.
std::pair<std::shared_ptr<Channel>, std::shared_ptr<Channel>> make_shm_pipe(bool duplex, std::size_t capacity);

}  // namespace mprocess::detail
