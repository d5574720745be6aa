// SPDX-License-Identifier: Apache-2.0
/// @file
/// The start methods as a type. Python's names ("fork", "spawn", "forkserver") are read where
/// Python's API takes them, get_context() and set_start_method(), and nowhere else: the options of
/// Process, Pool, ProcessPoolExecutor and Manager take the enum, so a misspelt method does not
/// compile.
#pragma once

#include "mprocess/export.hpp"

#include <array>
#include <string_view>

namespace mprocess {

/// How a child process begins (context.hpp tells the three apart).
enum class StartMethod {
    fork,       ///< a copy of the parent: any callable, no serialization
    spawn,      ///< a fresh run of this program's binary, given only what it is passed
    forkserver  ///< forked from a server process that was itself spawned, so it has no threads of ours
};

/// Python's names of the start methods, in the enum's order.
inline constexpr std::array<std::string_view, 3> start_method_names{"fork", "spawn", "forkserver"};

/// Python's name for it.
constexpr std::string_view to_string(StartMethod m) noexcept {
    return start_method_names[static_cast<std::size_t>(m)];
}

/// The method of that name; ValueError for another name, as Python's get_context().
MPROCESS_EXPORT StartMethod parse_start_method(std::string_view name);

}  // namespace mprocess
