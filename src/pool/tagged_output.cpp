// SPDX-License-Identifier: Apache-2.0
#include "pool/tagged_output.hpp"

#include <poll.h>

#include <cstdio>
#include <string_view>
#include <utility>

#include "platform/exec.hpp"

namespace mprocess::detail {

TaggedOutput::TaggedOutput(int fd, std::string prefix)
    : fd_(fd), prefix_(std::move(prefix)), original_(platform::dup_above_stdio(fd)) {
    auto [read_end, write_end] = platform::make_pipe();
    if (!platform::install_as(write_end.get(), fd_)) return;  // left as it was: untagged, not lost
    lines_ = std::move(read_end);
    thread_ = std::thread([this] { relay(); });
}

TaggedOutput::~TaggedOutput() {
    std::fflush(fd_ == 1 ? stdout : stderr);
    platform::install_as(original_.get(), fd_);  // the pipe's last write end here closes
    ending_.store(true, std::memory_order_release);
    if (thread_.joinable()) thread_.join();
}

void TaggedOutput::relay() {
    std::string pending;
    char buf[4096];
    auto emit = [&](std::string_view line) {
        std::string out = prefix_;
        out.append(line);
        out += '\n';
        for (std::size_t done = 0; done < out.size();) {  // one write, unless the line is longer than a pipe holds
            const long k = platform::write_some(original_.get(), out.data() + done, out.size() - done);
            if (k <= 0) return;  // the stream is gone: nothing to tell
            done += static_cast<std::size_t>(k);
        }
    };
    for (;;) {
        pollfd p{lines_.get(), POLLIN, 0};
        // Once ending, a quiet pipe is done even if a child of the task still holds its write end.
        if (platform::poll(&p, 1, ending_.load(std::memory_order_acquire) ? 100 : 200) == 0) {
            if (ending_.load(std::memory_order_acquire)) break;
            continue;
        }
        const auto n = platform::read(lines_.get(), buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) continue;
        pending.append(buf, static_cast<std::size_t>(n));
        std::size_t start = 0;
        for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
            emit(std::string_view(pending).substr(start, nl - start));
        pending.erase(0, start);
    }
    if (!pending.empty()) emit(pending);
}

}  // namespace mprocess::detail
