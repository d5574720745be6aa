// SPDX-License-Identifier: Apache-2.0
// What the start methods share with process.cpp.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "mprocess/detail/spawn.hpp"
#include "mprocess/start_method.hpp"

namespace mprocess::detail {

// Who a child is: enough to rebuild current_process() and parent_process() in it.
struct ChildIdentity {
    std::string name;
    std::vector<int> identity;
    bool daemon = false;
    bool die_with_parent = false;
    int parent_pid = 0;
    std::string parent_name;
    std::string authkey;
    std::map<std::string, std::string> known_keys;  // by server address
    std::optional<StartMethod> start_method;        // the one it was started with, if chosen
    template <class Archive>
    void serialize(Archive& ar) {
        ar(name, identity, daemon, die_with_parent, parent_pid, parent_name, authkey, known_keys, start_method);
    }
};

// In a new child: takes on `who`, runs `body` with Python's exit-code rules, finalizes its own
// children, flushes, and exits.
[[noreturn]] void become_child_and_run(const ChildIdentity& who, const std::function<void()>& body);

// Starts a fresh image of this program (spawn) that runs `target` as `who`; returns its pid.
pid_t popen_spawn(const ChildIdentity& who, SpawnTarget& target);

// True in a spawned child whose main() has not reached freeze_support(): it must not start
// processes (that would be a runaway chain). Tells the parent, then throws ProcessError.
void refuse_if_unguarded();

}  // namespace mprocess::detail
