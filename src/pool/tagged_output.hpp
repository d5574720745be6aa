// SPDX-License-Identifier: Apache-2.0
// PoolOptions::tag_output, in a worker: standard output or error becomes a pipe whose lines a thread
// writes, each whole (one write, so that workers' lines never mix) and prefixed with the worker's
// name, to the stream the descriptor was: the parent's, inherited.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "platform/posix.hpp"

namespace mprocess::detail {

class TaggedOutput {
public:
    // fd: 1 or 2.
    TaggedOutput(int fd, std::string prefix);
    // Puts the descriptor back and writes what is left (a last line without its newline too).
    ~TaggedOutput();
    TaggedOutput(const TaggedOutput&) = delete;
    TaggedOutput& operator=(const TaggedOutput&) = delete;

private:
    void relay();

    const int fd_;
    const std::string prefix_;
    platform::Fd original_;  // where the lines go
    platform::Fd lines_;     // the pipe's read end
    std::atomic<bool> ending_{false};
    std::thread thread_;
};

}  // namespace mprocess::detail
