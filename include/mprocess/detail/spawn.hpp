// SPDX-License-Identifier: Apache-2.0
// How a Process target crosses into a fresh program image (spawn, forkserver) without pickle.
//
// The child runs the same binary. A target qualifies when it is a plain function, or a lambda
// without captures (it converts to one), and every argument is serializable, a handle (SpawnArg
// with `handle`: Connection, queues, locks, shared values, SharedMemory), or a container or user
// type made of those. The parent sends two code addresses, each as (object build-id, offset in
// the object): the user's function and `spawn_entry<Fn, Args...>`, an instantiation that knows how
// to decode the arguments and call the function. The child finds both again in its own mapping of
// the same objects, refusing an object whose build-id differs, an entry point this binary did not
// register (entry_point.hpp), and a function outside executable code.
#pragma once

#include "mprocess/export.hpp"

#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mprocess/detail/entry_point.hpp"
#include "mprocess/detail/raw_codec.hpp"

namespace mprocess {
class Connection;

/// What a target's arguments become to reach a child in a fresh program image (spawn,
/// forkserver): one encoded message per argument, and the descriptors the handles among them
/// (Connection, queues, locks, shared values, SharedMemory) refer to.
struct MPROCESS_EXPORT SpawnArgs {
    std::vector<std::string> blobs;  ///< one encoded message per argument
    std::vector<int> fds;            ///< descriptors the arguments refer to, by index

    /// Adds a descriptor to send; returns its index.
    int add_fd(int fd) {
        fds.push_back(fd);
        return static_cast<int>(fds.size() - 1);
    }
    /// In the child: closes the descriptors that came, once the arguments hold their own copies.
    void close_fds() noexcept;
};

namespace detail {

// How one argument type is written and read. Handles (types that refer to descriptors or shared
// state: Connection, queues, locks, shared values) specialize it, with `handle` true. Other types
// use their message encoding, or, when they hold handles (a vector of queues, a user struct with
// serialize() over a Value and a Lock), the argument archives, in which handles travel too.
template <class T>
struct SpawnArg;

template <class T>
concept SpawnHandle = requires {
    requires SpawnArg<T>::handle;
};
// A handle that can also sit inside a container or a user type: loading one there first builds a
// default one to assign to, which a handle without a cheap default (SharedMemory, whose default
// would attach to no name) cannot offer.
template <class T>
concept NestableHandle = SpawnHandle<T> && requires {
    requires SpawnArg<T>::nestable;
};

// How an argument that is neither raw nor a handle travels: through the argument archives, which
// detail/spawn_archive.hpp (part of serialize.hpp) defines for every such type. Without that header
// `known` is false, and require_spawn_codec makes such an argument a compile error naming it: never
// a type that silently cannot travel in one translation unit and can in another.
template <class T, class = void>
struct ArchivedArg {
    static constexpr bool known = false, value = false;
};

// Whether an argument of type T can be given to a child in a fresh program image.
template <class T>
concept Spawnable = SpawnHandle<T> || RawMessage<T> || ArchivedArg<T>::value;
template <class T>
inline constexpr bool spawnable_v = Spawnable<T>;

template <class T>
constexpr void require_spawn_codec() {
    static_assert(SpawnHandle<T> || RawMessage<T> || ArchivedArg<T>::known,
                  "mprocess: this Process argument (see 'with T = ...' below) is neither trivially copyable nor a "
                  "handle: include <mprocess/serialize.hpp> (or <mprocess/mprocess.hpp>), which tells whether and "
                  "how it travels to a spawn or forkserver child");
}

template <class T>
struct SpawnArg {
    static std::string write(SpawnArgs& args, const T& v) {
        if constexpr (RawMessage<T>) {
            std::string out;
            encode_raw_into(out, v);
            return out;
        } else {
            return ArchivedArg<T>::write(args, v);
        }
    }
    static T read(const SpawnArgs& args, const std::string& blob) {
        if constexpr (RawMessage<T>) {
            return decode_raw<T>(blob);
        } else {
            return ArchivedArg<T>::read(args, blob);
        }
    }
};

// A handle whose class writes and reads itself: a private export_to() and import_from(), for
// this class alone (it befriends it).
template <class H, bool Nestable = true>
struct MemberSpawnArg {
    static constexpr bool handle = true, nestable = Nestable;
    static std::string write(SpawnArgs& args, const H& h) { return h.export_to(args); }
    static H read(const SpawnArgs& args, const std::string& blob) { return H::import_from(args, blob); }
};

template <>
struct SpawnArg<Connection> : MemberSpawnArg<Connection> {};

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

// Runs in the spawned child: decodes the arguments (in order) and calls the function.
template <class Fn, class... Args>
void spawn_entry(SpawnArgs& in, void* fn) {
    if (in.blobs.size() != sizeof...(Args)) throw DecodeError("spawned target: wrong number of arguments");
    auto args = [&in]<std::size_t... I>(std::index_sequence<I...>) {
        return std::tuple<Args...>{SpawnArg<Args>::read(in, in.blobs[I])...};
    }
    (std::index_sequence_for<Args...>{});
    in.close_fds();
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
