// SPDX-License-Identifier: Apache-2.0
// Frames on a stream socket. Reads go through a buffer, so that small messages cost one system
// call for many; a large message's body is read straight into its destination, whose room grows
// as the bytes arrive (a length is only a peer's word: it bounds the read, it sizes nothing).
//
// A frame's header and first bytes are read before the receiver decides (its type, its room): if
// it declines, the frame stays pending here and the next recv() starts from it. A receive that
// times out half way through a body puts what came back here, in front of the buffer, and the
// frame stays pending too: the next receive goes on from it. Anything that breaks the framing (a
// length over the maximum, the peer gone mid-frame) ends the connection: the stream cannot be
// trusted past it.
#include "channel/socket_channel.hpp"

#include <endian.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <tuple>

#include "platform/socket.hpp"
#include "wait/spin.hpp"

namespace mprocess::detail {

namespace {

constexpr std::size_t kHeader = sizeof(std::uint64_t);
constexpr std::size_t kPrefix = 8;            // what a sink sees before it decides
constexpr std::size_t kReadChunk = 64 << 10;  // one read for many small messages
// A reader looks without blocking for a while before it sleeps in the kernel, as a Pipe does: an
// answer on its way arrives sooner than a sleeping reader is woken (tens of microseconds on a
// virtual machine). Each look is a system call, longer than any pause.
constexpr Pace kLookBySystemCall{.pauses_per_look = 0};

// ("socket", fd index, max message, bytes read ahead, welcome still due): what this end has read
// from the socket but not yet handed out travels with it, or a child given the connection would
// never see it.
using SocketExport = std::tuple<std::string, int, std::uint64_t, std::string, bool>;

}  // namespace

class SocketChannel final : public Channel {
public:
    SocketChannel(platform::Fd fd, std::size_t max_message, std::string read_ahead = {}, bool welcome_due = false)
        : fd_(std::move(fd)), max_(max_message), buf_(std::move(read_ahead)), welcome_due_(welcome_due) {}

    void expect_welcome() noexcept { welcome_due_ = true; }
    void settle_welcome(const platform::Deadline& deadline) {
        std::lock_guard rx(rx_m_);
        if (welcome_due_) take_welcome(deadline);
    }

    void send(std::string_view head, std::string_view body) override {
        check_open();
        const std::uint64_t n = htole64(head.size() + body.size());  // one byte order between machines
        std::lock_guard lock(send_m_);                               // frames from two threads must not interleave
        platform::send_all(fd_.get(), reinterpret_cast<const char*>(&n), kHeader, head.data(), head.size(), body.data(),
                           body.size());
    }

    bool recv(FrameSink& sink, const platform::Deadline& deadline) override {
        check_open();
        std::lock_guard rx(rx_m_);
        if (welcome_due_) take_welcome(deadline);
        return recv_frame(sink, deadline);
    }

    bool poll(const platform::Deadline& deadline) override {
        check_open();
        std::lock_guard rx(rx_m_);
        if (welcome_due_) {
            try {
                take_welcome(deadline);
            } catch (const TimeoutError&) {
                return false;  // not all of it is here yet: nothing to read either
            }
        }
        if (has_data()) return true;
        return wait_readable(deadline);
    }
    bool ready_now() override { return poll(platform::Clock::now()); }
    bool has_data() override { return pending_ || avail() != 0; }

private:
    // The receiving side's work, under rx_m_.
    bool recv_frame(FrameSink& sink, const platform::Deadline& deadline) {
        if (!pending_) {
            fill(kHeader, deadline, false);
            std::uint64_t n = 0;
            std::memcpy(&n, buf_.data() + pos_, kHeader);
            n = le64toh(n);
            if (n > max_) {
                const std::string why = "a message of " + std::to_string(n) +
                                        " bytes exceeds this connection's maximum of " + std::to_string(max_) +
                                        " bytes";
                fail(why);
                throw DecodeError(why + "; the connection is closed");
            }
            pos_ += kHeader;
            pending_ = n;
        }
        const std::size_t length = *pending_;
        const std::size_t prefix = std::min(length, kPrefix);
        fill(prefix, deadline, true);
        if (!sink.take(length, std::string_view(buf_.data() + pos_, prefix))) return false;
        // The body goes into the sink as it arrives, its room growing with it.
        GrowingRoom room(sink, length);
        std::size_t got = std::min(length, avail());
        if (got != 0) std::memcpy(room.at_least(got), buf_.data() + pos_, got);
        pos_ += got;
        try {
            while (got < length) {
                char* to = room.at_least(got + 1);
                const std::size_t n = platform::read_some(fd_.get(), to + got, room.size() - got, deadline);
                if (n == 0) {
                    fail("the other end closed the connection in the middle of a message");
                    throw EOFError(broken_why_);
                }
                got += n;
            }
        } catch (const TimeoutError&) {
            // Kept for the next receive, as if not read yet: the frame is still pending.
            buf_.assign(got != 0 ? room.at_least(got) : "", got);
            pos_ = 0;
            throw;
        } catch (const EOFError&) {
            throw;
        } catch (...) {
            fail("a message could not be received whole (out of memory?)");
            throw;
        }
        pending_.reset();
        if (avail() == 0) release_buffer();
        return true;
    }

public:
    void arm(std::vector<pollfd>& fds) override { fds.push_back({fd_.get(), POLLIN, 0}); }
    void disarm() override {}

    // As Python's: the descriptor is closed, so a child given the connection keeps it. Only a
    // thread of ours blocked receiving on it is woken by shutting the socket down, which ends it
    // for every process (the descriptor cannot be closed under that thread).
    void close() override {
        if (closed_.exchange(true)) return;
        std::unique_lock rx(rx_m_, std::try_to_lock);
        if (!rx.owns_lock()) {
            platform::shutdown(fd_.get());
            return;
        }
        std::lock_guard tx(send_m_);
        fd_.reset();
        release_buffer();
    }
    bool closed() const noexcept override { return closed_.load(); }
    bool readable() const noexcept override { return true; }
    bool writable() const noexcept override { return true; }
    int fileno() const noexcept override { return fd_.get(); }

    std::string export_to(SpawnArgs& args) const override {
        check_open();
        std::unique_lock rx(rx_m_, std::try_to_lock);
        if (!rx.owns_lock())
            throw ProcessError("a socket connection cannot be handed to a child while a thread receives on it");
        std::string ahead;
        if (pending_) {  // the header of the next frame is consumed here: put it back in front
            const std::uint64_t n = htole64(*pending_);
            ahead.append(reinterpret_cast<const char*>(&n), kHeader);
        }
        ahead.append(buf_, pos_, std::string::npos);
        return encode(SocketExport{"socket", args.add_fd(fd_.get()), max_, std::move(ahead), welcome_due_});
    }

private:
    bool wait_readable(const platform::Deadline& deadline) {
        if (avail() != 0) return true;
        pollfd p{fd_.get(), POLLIN, 0};
        if (spin_until([&] { return platform::readable_now(fd_.get()); }, deadline, kLookBySystemCall)) return true;
        return platform::poll_until(&p, 1, deadline) > 0;
    }

    // The listener's answer to a key-less hello, owed before the first message. Both answers are
    // frames of the same size, taken only once whole: a timeout leaves everything as it was.
    void take_welcome(const platform::Deadline& deadline) {
        static_assert(kWelcome.size() == kNeedKey.size());
        constexpr std::size_t frame = kHeader + kWelcome.size();
        try {
            fill(frame, deadline, true);
        } catch (const TimeoutError&) {
            throw;
        } catch (const Error&) {
            fail("the listener closed the connection before accepting it");
            throw AuthenticationError("the listener closed the connection before accepting it");
        }
        welcome_due_ = false;
        std::uint64_t n = 0;
        std::memcpy(&n, buf_.data() + pos_, kHeader);
        const std::string_view answer(buf_.data() + pos_ + kHeader, kWelcome.size());
        if (le64toh(n) == kWelcome.size() && answer == kWelcome) {
            pos_ += frame;
            return;
        }
        const bool need_key = le64toh(n) == kNeedKey.size() && answer == kNeedKey;
        fail("the listener refused the connection");
        throw AuthenticationError(need_key ? "the listener requires an authkey and this client has none"
                                           : "the listener did not welcome this client (an authkey on one end only, "
                                             "or not an mprocess listener?)");
    }

    // An empty read buffer whose memory goes back, if it grew past what small messages need
    // (it held a message's first part across a timeout, say).
    void release_buffer() noexcept {
        pos_ = 0;
        if (buf_.capacity() > 2 * kReadChunk)
            std::string().swap(buf_);
        else
            buf_.clear();
    }

    void check_open() const {
        if (closed_.load()) throw ValueError("connection is closed");
        if (broken_) throw EOFError("the connection was ended: " + broken_why_);
    }
    // Under rx_m_: nothing more will be read, and what was is dropped.
    void fail(std::string why) {
        if (!broken_.load()) {
            broken_why_ = std::move(why);
            broken_.store(true);
        }
        platform::shutdown(fd_.get());
        pending_.reset();
        release_buffer();
    }
    std::size_t avail() const noexcept { return buf_.size() - pos_; }

    // Makes at least n bytes available in the buffer. At end of file: EOFError, a clean one if no
    // frame has begun (`in_frame` false and nothing buffered).
    void fill(std::size_t n, const platform::Deadline& deadline, bool in_frame) {
        if (avail() >= n) return;
        buf_.erase(0, pos_);
        pos_ = 0;
        while (buf_.size() < n) {
            const std::size_t at = buf_.size();
            buf_.resize(at + kReadChunk);
            char* into = buf_.data() + at;
            std::size_t got = 0;
            auto arrived = [&] {
                const auto r = platform::recv_now(fd_.get(), into, kReadChunk);
                got = r.value_or(0);
                return r.has_value();
            };
            try {
                if (!spin_until(arrived, deadline, kLookBySystemCall))
                    got = platform::read_some(fd_.get(), into, kReadChunk, deadline);
            } catch (...) {
                buf_.resize(at);  // no room left looking like bytes read
                throw;
            }
            buf_.resize(at + got);
            if (got == 0) {
                if (!in_frame && buf_.empty()) throw EOFError("the other end closed the connection");
                fail("the other end closed the connection in the middle of a message");
                throw EOFError(broken_why_);
            }
        }
    }

    platform::Fd fd_;
    const std::size_t max_;
    std::atomic<bool> closed_{false};
    std::mutex send_m_;
    // The receiving side. Held while receiving (one thread at a time does), so that an export
    // never copies a buffer being filled, and close() knows whether a receiver must be woken.
    mutable std::mutex rx_m_;
    std::string buf_;
    std::size_t pos_ = 0;
    std::optional<std::uint64_t> pending_;  // a frame whose header is read
    bool welcome_due_ = false;              // see expect_welcome()
    std::atomic<bool> broken_{false};       // set by the receiving thread, read by senders too
    std::string broken_why_;                // written before broken_ is set, never after
};

std::shared_ptr<SocketChannel> make_socket_channel(platform::Fd fd, std::size_t max_message) {
    return std::make_shared<SocketChannel>(std::move(fd), max_message);
}

std::shared_ptr<Channel> as_channel(std::shared_ptr<SocketChannel> ch) {
    return ch;
}

SocketChannel* as_socket_channel(Channel& ch) noexcept {
    return dynamic_cast<SocketChannel*>(&ch);
}

void expect_welcome(SocketChannel& ch) noexcept {
    ch.expect_welcome();
}

void take_welcome(SocketChannel& ch, const platform::Deadline& deadline) {
    ch.settle_welcome(deadline);
}

bool is_socket_export(const std::string& blob) {
    return blob.size() >= tag_size && read_tag(blob) == type_tag<SocketExport>;
}

std::shared_ptr<Channel> import_socket_channel(const SpawnArgs& args, const std::string& blob) {
    auto [kind, index, max, ahead, welcome_due] = decode<SocketExport>(blob);
    if (kind != "socket" || index < 0 || static_cast<std::size_t>(index) >= args.fds.size())
        throw DecodeError("exported connection: bad socket description");
    platform::Fd borrowed(args.fds[static_cast<std::size_t>(index)]);
    platform::Fd own = platform::dup_fd(borrowed);
    borrowed.release();
    return std::make_shared<SocketChannel>(std::move(own), static_cast<std::size_t>(max), std::move(ahead),
                                           welcome_due);
}

}  // namespace mprocess::detail
