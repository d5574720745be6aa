// SPDX-License-Identifier: Apache-2.0
#include "mprocess/connection.hpp"

#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "channel/channel.hpp"
#include "mprocess/process.hpp"
#include "channel/shm_channel.hpp"
#include "channel/socket_channel.hpp"

namespace mprocess {

TypeMismatch TypeMismatch::for_message(std::string_view type, std::uint64_t tag, std::string_view bytes) {
    char buf[160];
    if (bytes.size() < tag_size) {
        std::snprintf(buf, sizeof buf, "a message of %zu bytes is too short to carry a type tag", bytes.size());
    } else {
        std::snprintf(buf, sizeof buf, "the message carries type tag %016" PRIx64 ", not %016" PRIx64,
                      detail::read_tag(bytes), tag);
    }
    return TypeMismatch("cannot receive a " + std::string(type) + ": " + buf +
                        " (it was sent as another type, or with send_bytes)");
}

DecodeError DecodeError::wrong_size(std::string_view type, std::size_t want, std::size_t got) {
    return DecodeError("a " + std::string(type) + " is " + std::to_string(want) + " bytes, the message holds " +
                       std::to_string(got));
}

detail::Channel& Connection::channel() const {
    if (!ch_ || ch_->closed()) throw ValueError("connection is closed");
    return *ch_;
}

void Connection::send_parts(std::string_view head, std::string_view body) {
    channel().send(head, body);
}

void Connection::recv_frame(FrameSink& sink, Timeout timeout) {
    channel().recv(sink, timeout.deadline());
}

void Connection::send_bytes(std::string_view data) {
    channel().send(data, {});
}

void Connection::send_bytes(std::string_view data, std::size_t offset, std::optional<std::size_t> size) {
    if (offset > data.size()) throw ValueError("offset is larger than the buffer");
    std::size_t n = size.value_or(data.size() - offset);
    if (n > data.size() - offset) throw ValueError("offset + size is larger than the buffer");
    channel().send(data.substr(offset, n), {});
}

std::string Connection::recv_bytes(std::optional<std::size_t> maxlength, Timeout timeout) {
    struct Sink final : FrameSink {
        std::optional<std::size_t> max;
        std::string out;
        bool take(std::size_t length, std::string_view) override {
            if (max && length > *max)
                throw OSError(EMSGSIZE, "message of " + std::to_string(length) + " bytes exceeds maxlength " +
                                            std::to_string(*max) + "; it was left unread");
            return true;
        }
        char* room(std::size_t n) override {
            if (out.size() < n) out.resize(n);
            return out.data();
        }
    } sink;
    sink.max = maxlength;
    recv_frame(sink, timeout);
    return std::move(sink.out);
}

std::size_t Connection::recv_bytes_into(std::span<char> buffer, std::size_t offset) {
    if (offset > buffer.size()) throw ValueError("offset is larger than the buffer");
    struct Sink final : FrameSink {
        std::span<char> buffer;
        std::string overflow;
        std::size_t length = 0;
        bool too_short = false;
        bool take(std::size_t n, std::string_view) override {
            length = n;
            too_short = n > buffer.size();
            return true;
        }
        char* room(std::size_t n) override {
            if (!too_short) return buffer.data();
            if (overflow.size() < n) overflow.resize(n);
            return overflow.data();
        }
    } sink;
    sink.buffer = buffer.subspan(offset);
    recv_frame(sink);
    if (sink.too_short) throw BufferTooShort(std::move(sink.overflow), sink.buffer.size());
    return sink.length;
}

std::size_t Connection::recv_bytes_into(std::span<std::byte> buffer, std::size_t offset) {
    return recv_bytes_into(std::span<char>(reinterpret_cast<char*>(buffer.data()), buffer.size()), offset);
}

bool Connection::poll(Timeout timeout) {
    return channel().poll(timeout.deadline());
}

void Connection::close() {
    if (ch_) ch_->close();
}

bool Connection::closed() const noexcept {
    return !ch_ || ch_->closed();
}
bool Connection::readable() const {
    return channel().readable();
}
bool Connection::writable() const {
    return channel().writable();
}
int Connection::fileno() const {
    return channel().fileno();
}

std::pair<Connection, Connection> Pipe(bool duplex, PipeOptions options) {
    auto [a, b] = detail::make_shm_pipe(duplex, options.capacity);
    return {Connection(a), Connection(b)};
}

std::string Connection::export_to(SpawnArgs& args) const {
    return channel().export_to(args);
}

Connection Connection::import_from(const SpawnArgs& args, const std::string& blob) {
    if (detail::is_socket_export(blob)) return Connection(detail::import_socket_channel(args, blob));
    return Connection(detail::import_shm_channel(args, blob));
}

Waitable::Waitable(const Process& p) : fd_(p.sentinel()) {}

std::vector<Waitable> wait(const std::vector<Waitable>& objects, Timeout timeout) {
    const auto deadline = timeout.deadline();
    std::vector<Waitable> ready;
    std::vector<pollfd> fds;
    for (;;) {
        // Look at everything without blocking.
        fds.clear();
        for (const auto& o : objects) {
            if (!o.is_connection())
                fds.push_back({o.fd(), POLLIN, 0});
            else if (o.connection().channel().ready_now())
                ready.push_back(o);
        }
        if (!fds.empty() && platform::poll_until(fds.data(), fds.size(), platform::Clock::now()) > 0) {
            std::size_t i = 0;
            for (const auto& o : objects)
                if (!o.is_connection() && fds[i++].revents != 0) ready.push_back(o);
        }
        if (!ready.empty() || (deadline && platform::Clock::now() >= *deadline)) return ready;

        // Sleep on everything at once. Connections announce a sleeper and are checked again
        // before the sleep, so a message sent in between is not missed.
        fds.clear();
        std::vector<detail::Channel*> armed;
        for (const auto& o : objects) {
            if (!o.is_connection()) {
                fds.push_back({o.fd(), POLLIN, 0});
                continue;
            }
            auto& ch = o.connection().channel();
            ch.arm(fds);
            armed.push_back(&ch);
        }
        bool any = false;
        for (auto* ch : armed) any = any || ch->ready_now();
        if (!any) platform::poll_until(fds.data(), fds.size(), deadline);
        for (auto* ch : armed) ch->disarm();
    }
}

}  // namespace mprocess
