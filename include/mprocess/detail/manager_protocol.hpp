// SPDX-License-Identifier: Apache-2.0
// The manager's vocabulary, one table for both ends: the kinds of shared objects, and the methods
// a call names. The wire carries their names, as Python's manager protocol does (readable in a
// trace, and an unknown one is an AttributeError that names it); the code on either side names
// them only through these enums, so proxies and server cannot drift apart.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace mprocess::detail {

enum class Kind : unsigned char { queue, joinable_queue, dict, list, value, lock, event, namespace_ };

inline constexpr std::array<std::string_view, 8> kind_names{"queue", "joinable_queue", "dict",  "list",
                                                            "value", "lock",           "event", "namespace"};

enum class Op : unsigned char {
    // The objects' methods.
    put,
    get,
    get_or_none,
    set,
    del,
    qsize,
    full,
    task_done,
    join,
    contains,
    len,
    clear,
    items,
    append,
    values,
    pop,
    acquire,
    release,
    is_set,
    wait,
    has,
    // The server's own (a call on no object): release is also the release of a named object.
    make,
    upgrade,
    local,
    shutdown,
};

inline constexpr std::array<std::string_view, 25> op_names{
    "put",      "get",  "get_or_none", "set",   "del",     "qsize",  "full",    "task_done", "join",
    "contains", "len",  "clear",       "items", "append",  "values", "pop",     "acquire",   "release",
    "is_set",   "wait", "has",         "make",  "upgrade", "local",  "shutdown"};

constexpr std::string_view name_of(Kind k) noexcept {
    return kind_names[static_cast<std::size_t>(k)];
}
constexpr std::string_view name_of(Op op) noexcept {
    return op_names[static_cast<std::size_t>(op)];
}

template <class E, std::size_t N>
constexpr std::optional<E> named(const std::array<std::string_view, N>& names, std::string_view name) noexcept {
    for (std::size_t i = 0; i < N; ++i)
        if (names[i] == name) return static_cast<E>(i);
    return std::nullopt;
}
constexpr std::optional<Kind> kind_named(std::string_view name) noexcept {
    return named<Kind>(kind_names, name);
}
constexpr std::optional<Op> op_named(std::string_view name) noexcept {
    return named<Op>(op_names, name);
}

static_assert(name_of(Op::shutdown) == "shutdown" && name_of(Kind::namespace_) == "namespace",
              "a name for every enumerator, in order");

}  // namespace mprocess::detail
