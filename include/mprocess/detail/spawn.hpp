// How a Process target crosses into a fresh program image (spawn, forkserver) without pickle.
//
// The child runs the same binary. A target qualifies when it is a plain function, or a lambda
// without captures (it converts to one), and every argument is serializable or a Connection.
// The parent sends two code addresses, each as (object build-id, offset in the object): the
// user's function and `spawn_entry<Fn, Args...>`, an instantiation that knows how to decode the
// arguments and call the function. The child finds both again in its own mapping of the same
// objects, refusing an object whose build-id differs.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mprocess/serialize.hpp"

namespace mprocess {
class Connection;

namespace detail {

// Bytes plus descriptors: the arguments of a spawned target.
struct SpawnArgs {
    std::vector<std::string> blobs;  // one encoded message per argument
    std::vector<int> fds;            // descriptors the arguments refer to, by index

    int add_fd(int fd) {
        fds.push_back(fd);
        return static_cast<int>(fds.size() - 1);
    }
};

// How one argument type is written and read. Serializable types use their message encoding;
// types that hold descriptors (Connection) specialize this.
template <class T>
struct SpawnArg {
    static constexpr bool supported = Serializable<T>;
    static std::string write(SpawnArgs&, const T& v) { return encode(v); }
    static T read(const SpawnArgs&, const std::string& blob) { return decode<T>(blob); }
};

template <>
struct SpawnArg<Connection> {
    static constexpr bool supported = true;
    static std::string write(SpawnArgs& args, const Connection& c);
    static Connection read(const SpawnArgs& args, const std::string& blob);
};

// The function pointer type a callable converts to, or void if it is not a plain function.
template <class F, class = void>
struct function_pointer {
    using type = void;
};
template <class R, class... P>
struct function_pointer<R (*)(P...)> {
    using type = R (*)(P...);
};
template <class R, class... P>
struct function_pointer<R(P...)> {
    using type = R (*)(P...);
};
template <class R, class... P>
struct function_pointer<R (*)(P...) noexcept> {
    using type = R (*)(P...) noexcept;
};
template <class R, class... P>
struct function_pointer<R(P...) noexcept> {
    using type = R (*)(P...) noexcept;
};
template <class M>
struct member_call {  // mutable lambdas and other call operators: not a plain function
    using type = void;
};
template <class C, class R, class... P>
struct member_call<R (C::*)(P...) const> {
    using type = R (*)(P...);
};
template <class C, class R, class... P>
struct member_call<R (C::*)(P...) const noexcept> {
    using type = R (*)(P...);
};
// A lambda without captures: its call operator's signature, if it converts to that pointer.
template <class F>
struct function_pointer<F, std::void_t<decltype(&F::operator())>> {
    using candidate = typename member_call<decltype(&F::operator())>::type;
    using type = std::conditional_t<!std::is_void_v<candidate> && std::is_convertible_v<F, candidate>, candidate, void>;
};

template <class F>
using function_pointer_t = typename function_pointer<std::decay_t<F>>::type;

// Closes the descriptors that came with the arguments, once the arguments hold their own copies.
void close_spawn_fds(SpawnArgs& args) noexcept;

// Runs in the spawned child: decodes the arguments (in order) and calls the function.
template <class Fn, class... Args>
void spawn_entry(SpawnArgs& in, void* fn) {
    if (in.blobs.size() != sizeof...(Args)) throw DecodeError("spawned target: wrong number of arguments");
    auto args = [&in]<std::size_t... I>(std::index_sequence<I...>) {
        return std::tuple<Args...>{SpawnArg<Args>::read(in, in.blobs[I])...};
    }
    (std::index_sequence_for<Args...>{});
    close_spawn_fds(in);
    std::apply([fn](Args&... a) { reinterpret_cast<Fn>(fn)(a...); }, args);
}

using SpawnEntry = void (*)(SpawnArgs&, void*);

// What the parent sends for a spawnable target.
struct SpawnTarget {
    SpawnEntry entry = nullptr;
    void* fn = nullptr;
    SpawnArgs args;
};

}  // namespace detail
}  // namespace mprocess
