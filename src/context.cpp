#include "mprocess/context.hpp"

#include <mutex>

namespace mprocess {

namespace {
std::mutex method_mutex;
std::string default_method;  // empty until set: "fork"
}  // namespace

namespace detail {
void check_start_method(std::string_view method) {
    if (method != "fork" && method != "spawn" && method != "forkserver")
        throw ValueError("cannot find context for '" + std::string(method) +
                         "': the start methods are fork, spawn and forkserver");
}
}  // namespace detail

void set_start_method(std::string_view method, bool force) {
    std::lock_guard lock(method_mutex);
    if (!default_method.empty() && !force)
        throw ProcessError("context has already been set: call set_start_method(method, true) to change it");
    if (!method.empty()) detail::check_start_method(method);
    default_method = std::string(method);
}

std::string get_start_method() {
    std::lock_guard lock(method_mutex);
    return default_method.empty() ? "fork" : default_method;
}

std::vector<std::string> get_all_start_methods() {
    return {"fork", "spawn", "forkserver"};
}

Context get_context(std::string_view method) {
    if (method.empty()) return Context(get_start_method());
    detail::check_start_method(method);
    return Context(std::string(method));
}

}  // namespace mprocess
