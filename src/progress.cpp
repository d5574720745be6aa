// SPDX-License-Identifier: Apache-2.0
#include "mprocess/progress.hpp"

#include <cstdio>
#include <utility>

#include "platform/posix.hpp"

namespace mprocess {

ProgressLine::ProgressLine(std::string label, std::FILE* out)
    : ProgressLine(std::move(label), out, out && platform::isatty(::fileno(out))) {}

ProgressLine::ProgressLine(std::string label, std::FILE* out, bool live)
    : label_(std::move(label)), out_(out), live_(live) {}

void ProgressLine::operator()(std::size_t done, std::size_t total) {
    if (!out_) return;
    const int percent = total == 0 ? 100 : static_cast<int>(done * 100 / total);
    if (live_) {
        if (percent == shown_ && done != total) return;
        constexpr std::size_t width = 30;
        const std::size_t filled = static_cast<std::size_t>(percent) * width / 100;  // percent: 0 to 100
        std::fprintf(out_, "\r%s [%s%s] %3d%% %zu/%zu", label_.c_str(), std::string(filled, '#').c_str(),
                     std::string(width - filled, '.').c_str(), percent, done, total);
        if (done == total) std::fputc('\n', out_);
        shown_ = percent;
    } else {
        const int tenth = percent / 10;
        if (tenth == shown_) return;
        std::fprintf(out_, "%s: %d%% (%zu/%zu)\n", label_.c_str(), percent, done, total);
        shown_ = tenth;
    }
    std::fflush(out_);
}

}  // namespace mprocess
