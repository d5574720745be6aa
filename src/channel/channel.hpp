// SPDX-License-Identifier: Apache-2.0
// The transport behind a Connection. Two implementations: the shared-memory ring pair of Pipe()
// (shm_channel.cpp) and a stream socket of Listener and Client (socket_channel.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include <poll.h>

#include "mprocess/connection.hpp"
#include "mprocess/detail/spawn.hpp"
#include "platform/posix.hpp"

namespace mprocess::detail {

class Channel {
public:
    virtual ~Channel() = default;

    virtual void send(std::string_view head, std::string_view body) = 0;
    // Receives one message into the sink; false if the sink declined it (left unread).
    // TimeoutError if it has not come by the deadline (see Connection::recv for what is kept).
    virtual bool recv(FrameSink& sink, const platform::Deadline& deadline) = 0;
    // Message waiting or peer gone, waiting up to the deadline.
    virtual bool poll(const platform::Deadline& deadline) = 0;

    // For wait(): ready now?
    virtual bool ready_now() = 0;
    // Some of a message is waiting: a look at memory, without a system call (no peer check).
    virtual bool has_data() = 0;
    // For wait(): announce a sleeper and add the fds to watch / withdraw it.
    virtual void arm(std::vector<pollfd>& fds) = 0;
    virtual void disarm() = 0;

    virtual void close() = 0;
    virtual bool closed() const noexcept = 0;
    virtual bool readable() const noexcept = 0;
    virtual bool writable() const noexcept = 0;
    virtual int fileno() const noexcept = 0;
    // How many messages sent on this end the other end has received whole, where the transport
    // can tell (a Pipe's ring counts them in shared memory; a socket cannot know): a fact that
    // outlives the receiver, so a sender can learn whether a dead peer took its last message.
    virtual std::optional<std::uint64_t> delivered() const noexcept { return std::nullopt; }

    // Describes this end for a child started by spawn or forkserver: descriptors go into `args`.
    virtual std::string export_to(SpawnArgs& args) const = 0;
};

// Room in a sink for a message whose bytes arrive in pieces: it grows with them, from `first`
// bytes, four times larger each time, up to the message's length. So a peer that announces a huge
// message and sends little costs what it sent (four times at most) or 1 MiB, of the order of what
// the kernel buffers for a socket anyway, never what it announced. Decision: 1 MiB and four times,
// not 64 KiB and twice: a message that arrives fast is then copied a third more at most, and
// messages up to 1 MiB not at all (from 64 KiB, doubling, socket throughput for messages of 1 to
// 256 MiB fell to between a fifth and two thirds: the copies, and each new buffer's page faults).
class GrowingRoom {
public:
    static constexpr std::size_t kFirst = 1 << 20;

    GrowingRoom(FrameSink& sink, std::size_t length, std::size_t first = kFirst) noexcept
        : sink_(sink), length_(length), first_(first) {}
    // Where the message's bytes go, with room for at least its first `n` (n <= its length).
    char* at_least(std::size_t n) {
        if (n > size_ || !base_) {
            size_ = std::min(length_, std::max({n, 4 * size_, first_}));
            base_ = sink_.room(size_);
        }
        return base_;
    }
    std::size_t size() const noexcept { return size_; }

private:
    FrameSink& sink_;
    const std::size_t length_;
    const std::size_t first_;
    std::size_t size_ = 0;
    char* base_ = nullptr;
};

struct ConnectionAccess {
    static Channel& channel(const Connection& c) { return c.channel(); }
    static Connection wrap(std::shared_ptr<Channel> ch) { return Connection(std::move(ch)); }
};

}  // namespace mprocess::detail
