// SPDX-License-Identifier: Apache-2.0
// The Process arguments that are neither raw nor handles: standard containers, strings and user
// types, through the argument archives, in which handles travel too (a vector of queues, a user
// struct whose serialize() holds a Value and a Lock). Part of serialize.hpp; detail/spawn.hpp
// holds the rest of how arguments cross.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "mprocess/detail/spawn.hpp"
#include "mprocess/serialize.hpp"

namespace mprocess::detail {

// Goes through the argument archives: plain data, and handles anywhere inside a container or a
// user type's serialize(). (A serialize() is a template, so whether it holds handles shows only
// once it is instantiated: the argument archives take both kinds.)
template <class T>
concept SpawnArchivable = !RawMessage<T> && archivable<T, SpawnOutArchive, SpawnInArchive>::value;

template <class T>
struct ArchivedArg<T, std::enable_if_t<!RawMessage<T>>> {
    static constexpr bool known = true, value = SpawnArchivable<T>;

    static std::string write(SpawnArgs& args, const T& v) {
        static_assert(SpawnArchivable<T>);
        std::string out;
        constexpr std::uint64_t tag = type_tag<T>;
        out.append(reinterpret_cast<const char*>(&tag), tag_size);
        SpawnOutArchive ar(out, &args);
        ar(v);
        return out;
    }
    static T read(const SpawnArgs& args, const std::string& blob) {
        constexpr std::uint64_t tag = type_tag<T>;
        if (blob.size() < tag_size || read_tag(blob) != tag) throw TypeMismatch::for_message(type_name_v<T>, tag, blob);
        SpawnInArchive ar(blob.data() + tag_size, blob.size() - tag_size, &args);
        return load_whole<T>(ar, "argument");
    }
};

// A handle inside an argument's container or user type: its own blob, as a string.
template <NestableHandle H>
void CEREAL_SAVE_FUNCTION_NAME(SpawnOutArchive& ar, const H& h) {
    ar(SpawnArg<H>::write(ar.context(), h));
}
template <NestableHandle H>
void CEREAL_LOAD_FUNCTION_NAME(SpawnInArchive& ar, H& h) {
    std::string blob;
    ar(blob);
    h = SpawnArg<H>::read(ar.context(), blob);
}

}  // namespace mprocess::detail
