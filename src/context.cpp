#include "mprocess/context.hpp"

#include <array>
#include <atomic>

namespace mprocess {

namespace {
constexpr std::array<std::string_view, 3> kMethods{"fork", "spawn", "forkserver"};
// An index into kMethods plus one, 0 until set. Atomic rather than locked: a forked child reads
// and sets it, and must not wait on a lock another thread of its parent held at the fork.
std::atomic<int> default_method{0};

int method_index(std::string_view method) {
    for (std::size_t i = 0; i < kMethods.size(); ++i)
        if (kMethods[i] == method) return static_cast<int>(i) + 1;
    throw ValueError("cannot find context for '" + std::string(method) +
                     "': the start methods are fork, spawn and forkserver");
}
}  // namespace

namespace detail {
void check_start_method(std::string_view method) {
    method_index(method);
}

std::string start_method_if_set() {
    const int i = default_method.load();
    return i == 0 ? std::string() : std::string(kMethods[static_cast<std::size_t>(i - 1)]);
}

void adopt_start_method(const std::string& method) {
    if (!method.empty()) default_method.store(method_index(method));
}
}  // namespace detail

void set_start_method(std::string_view method, bool force) {
    const int want = method.empty() ? 0 : method_index(method);
    int unset = 0;
    if (force)
        default_method.store(want);
    else if (!default_method.compare_exchange_strong(unset, want))
        throw ProcessError("context has already been set: call set_start_method(method, true) to change it");
}

std::string get_start_method() {
    const std::string m = detail::start_method_if_set();
    return m.empty() ? "fork" : m;
}

std::vector<std::string> get_all_start_methods() {
    return {kMethods.begin(), kMethods.end()};
}

Context get_context(std::string_view method) {
    if (method.empty()) return Context(get_start_method());
    detail::check_start_method(method);
    return Context(std::string(method));
}

}  // namespace mprocess
