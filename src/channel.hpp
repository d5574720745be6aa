// The transport behind a Connection. One implementation today: the shared-memory ring pair of
// Pipe(). Sockets (Listener/Client) will be a second.
#pragma once

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
    virtual bool recv(FrameSink& sink) = 0;
    // Message waiting or peer gone, waiting up to the deadline.
    virtual bool poll(const platform::Deadline& deadline) = 0;

    // For wait(): ready now? / announce a sleeper and add the fds to watch / withdraw it.
    virtual bool ready_now() = 0;
    // Some of a message is waiting: a look at memory, without a system call (no peer check).
    virtual bool has_data() = 0;
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

struct ConnectionAccess {
    static Channel& channel(const Connection& c) { return c.channel(); }
    static Connection wrap(std::shared_ptr<Channel> ch) { return Connection(std::move(ch)); }
};

}  // namespace mprocess::detail
