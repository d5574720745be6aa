// SPDX-License-Identifier: Apache-2.0
// Shared by the spawn and forkserver start methods and process.cpp; copy_spawn_fd also by every
// handle whose descriptor reaches a child in a fresh image (queues, locks, shared memory).
#pragma once

#include <string>
#include <vector>

#include <sys/types.h>

#include "start/code_symbol.hpp"
#include "mprocess/detail/spawn.hpp"
#include "platform/posix.hpp"
#include "start/child.hpp"

namespace mprocess::detail {

// An own copy of descriptor number `index` of the arguments of a spawned target; DecodeError
// naming `what` if there is no such descriptor.
platform::Fd copy_spawn_fd(const SpawnArgs& args, int index, const char* what);

// Everything a fresh image needs to run a target, but the descriptors.
struct Payload {
    ChildIdentity who;
    Symbol entry;
    Symbol fn;
    std::vector<std::string> blobs;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(who, entry, fn, blobs);
    }
};

Payload make_payload(const ChildIdentity& who, const SpawnTarget& target);

// Runs the payload's target as this (new) process, with `fds` as the arguments' descriptors.
[[noreturn]] void run_payload(Payload& payload, std::vector<int> fds);

// Forks and executes this program's binary with `env_var`=<child_end> in its environment and
// without our other MPROCESS_ variables, the child inheriting only `keep` and child_end (closed
// here once the child has it). Throws OSError with the child's errno if exec fails.
pid_t launch_self(const char* env_var, platform::Fd& child_end, const std::vector<int>& keep, bool die_with_parent);

// Waits for a one-byte answer from a fresh image (up to the guard's timeout); an 'E' answer, a
// silent or dead child become ProcessError naming the entry guard.
char await_answer(int fd, const platform::Deadline& deadline);

void write_all(int fd, const void* data, std::size_t n, const platform::Deadline& deadline);
bool read_all(int fd, void* data, std::size_t n);

extern const std::chrono::seconds kGuardTimeout;

// forkserver: starts `payload` in a child of the server; returns its pid, and in `pidfd` and
// `status_fd` a pidfd for signals and a descriptor that yields the wait status once it ends.
pid_t forkserver_start(const Payload& payload, const std::vector<int>& fds, platform::Fd& pidfd,
                       platform::Fd& status_fd);
// The server's pid, 0 if none runs (for tests).
pid_t forkserver_pid();
// At exit: lets the server go and reaps it.
void forkserver_stop() noexcept;
// In an image started as the server: serves until the client goes, then exits. Never returns.
[[noreturn]] void forkserver_main(int control_fd);

}  // namespace mprocess::detail
