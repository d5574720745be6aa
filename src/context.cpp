// SPDX-License-Identifier: Apache-2.0
#include "mprocess/context.hpp"

#include "default_method.hpp"

#include <atomic>

namespace mprocess {

namespace {
// 1 + the StartMethod, 0 until set. Atomic rather than locked: a forked child reads and sets it,
// and must not wait on a lock another thread of its parent held at the fork.
std::atomic<int> default_method{0};

int encoded(const std::optional<StartMethod>& m) {
    return m ? static_cast<int>(*m) + 1 : 0;
}
}  // namespace

StartMethod parse_start_method(std::string_view name) {
    for (std::size_t i = 0; i < start_method_names.size(); ++i)
        if (start_method_names[i] == name) return static_cast<StartMethod>(i);
    throw ValueError("cannot find context for '" + std::string(name) +
                     "': the start methods are fork, spawn and forkserver");
}

namespace detail {
std::optional<StartMethod> start_method_if_set() {
    const int i = default_method.load();
    if (i == 0) return std::nullopt;
    return static_cast<StartMethod>(i - 1);
}

StartMethod start_method_or_default(const std::optional<StartMethod>& chosen) {
    return chosen ? *chosen : start_method_if_set().value_or(StartMethod::fork);
}

void adopt_start_method(const std::optional<StartMethod>& method) {
    if (method) default_method.store(encoded(method));
}
}  // namespace detail

void set_start_method(StartMethod method, bool force) {
    int unset = 0;
    if (force)
        default_method.store(encoded(method));
    else if (!default_method.compare_exchange_strong(unset, encoded(method)))
        throw ProcessError("context has already been set: call set_start_method(method, true) to change it");
}

void set_start_method(std::string_view method, bool force) {
    if (!method.empty()) return set_start_method(parse_start_method(method), force);
    if (!force && default_method.load() != 0)
        throw ProcessError("context has already been set: call set_start_method(method, true) to change it");
    default_method.store(0);
}

std::string get_start_method() {
    return std::string(to_string(detail::start_method_or_default(std::nullopt)));
}

std::vector<std::string> get_all_start_methods() {
    return {start_method_names.begin(), start_method_names.end()};
}

Context get_context(std::string_view method) {
    return Context(method.empty() ? detail::start_method_or_default(std::nullopt) : parse_start_method(method));
}

Context get_context(StartMethod method) {
    return Context(method);
}

}  // namespace mprocess
