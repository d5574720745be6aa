// Start methods and contexts, as Python's multiprocessing.context.
//
//   fork        the child is a copy of the parent (any callable, no serialization). Default on
//               Linux, as in Python before 3.14. Unsafe after the parent started threads: see
//               process.hpp.
//   spawn       the child is a fresh run of this program's binary: it inherits only the
//               descriptors it is given, and runs a plain function with serialized arguments.
//   forkserver  children are forked from a server process that is itself spawned (so it never
//               has the parent's threads), on request over a private socket.
//
// spawn and forkserver need the entry guard at the top of main(), the lecture's
// `if __name__ == '__main__':` and freeze_support():
//
//     int main(int argc, char** argv) {
//         mp::freeze_support(argc, argv);  // in a spawned child: runs its target and exits
//         ...
//
// Without it, starting a process with spawn or forkserver fails within seconds with an error
// that names the fix, and the child can start no processes of its own.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mprocess/process.hpp"

namespace mprocess {

// Sets the default start method, once; again throws unless force (as Python's RuntimeError).
void set_start_method(std::string_view method, bool force = false);
// The default start method ("fork" unless set).
std::string get_start_method();
// The methods this platform supports, default first.
std::vector<std::string> get_all_start_methods();

// The entry guard: a no-op in a normal run; in a child started by spawn or forkserver it runs
// the child's target and never returns.
void freeze_support(int argc, char** argv);

// A start method bound to the objects it creates: get_context("spawn").Process(f, args...).
class Context {
public:
    explicit Context(std::string method) : method_(std::move(method)) {}
    const std::string& get_start_method() const noexcept { return method_; }

    template <class F, class... Args>
    requires std::invocable < std::decay_t<F>
    &, std::decay_t<Args>&... > mprocess::Process Process(F&& target, Args&&... args) const {
        return mprocess::Process(std::forward<F>(target), ProcessOptions{.start_method = method_},
                                 std::forward<Args>(args)...);
    }
    template <class F, class... Args>
    requires std::invocable < std::decay_t<F>
    &, std::decay_t<Args>&... > mprocess::Process Process(F&& target, ProcessOptions options, Args&&... args) const {
        options.start_method = method_;
        return mprocess::Process(std::forward<F>(target), std::move(options), std::forward<Args>(args)...);
    }

private:
    std::string method_;
};

// A context for `method`, or for the default method when empty. Unknown names throw ValueError.
Context get_context(std::string_view method = {});

namespace detail {
void check_start_method(std::string_view method);
}

}  // namespace mprocess
