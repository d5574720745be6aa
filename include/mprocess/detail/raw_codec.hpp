// SPDX-License-Identifier: Apache-2.0
// The part of the message codec that needs no serialization library: the type tag every message
// begins with, and raw messages (trivially copyable types, sent as their own bytes). serialize.hpp
// adds every other type; a program that gives a Process only raw values and handles parses this
// part alone (process.hpp includes nothing more).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "mprocess/detail/type_name.hpp"
#include "mprocess/error.hpp"

namespace mprocess {

namespace detail {
// Trivially copyable, but only an address into the sender's memory.
template <class T>
inline constexpr bool is_view_v = false;
template <class C, class Tr>
inline constexpr bool is_view_v<std::basic_string_view<C, Tr>> = true;
template <class T, std::size_t N>
inline constexpr bool is_view_v<std::span<T, N>> = true;
template <class T>
inline constexpr bool is_view_v<std::reference_wrapper<T>> = true;
}  // namespace detail

/// Sent as its own bytes. Pointers and views are excluded: an address means nothing in another
/// process. (A struct with pointer members cannot be told apart: do not send one.)
template <class T>
concept RawMessage = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T> &&
                     !std::is_reference_v<T> && !detail::is_view_v<T>;

/// The bytes of the type tag that begins every message.
inline constexpr std::size_t tag_size = sizeof(std::uint64_t);

namespace detail {

inline std::uint64_t read_tag(std::string_view bytes) {
    std::uint64_t tag = 0;
    std::memcpy(&tag, bytes.data(), tag_size);
    return tag;
}

// Appends obj's message: its tag, then its bytes.
template <RawMessage T>
void encode_raw_into(std::string& out, const T& obj) {
    constexpr std::uint64_t tag = type_tag<T>;
    out.append(reinterpret_cast<const char*>(&tag), tag_size);
    out.append(reinterpret_cast<const char*>(std::addressof(obj)), sizeof(T));
}

// The T a whole message holds: TypeMismatch for another tag, DecodeError for another size.
template <RawMessage T>
T decode_raw(std::string_view bytes) {
    constexpr std::uint64_t tag = type_tag<T>;
    if (bytes.size() < tag_size || read_tag(bytes) != tag) throw TypeMismatch::for_message(type_name_v<T>, tag, bytes);
    const std::string_view payload = bytes.substr(tag_size);
    if (payload.size() != sizeof(T)) throw DecodeError::wrong_size(type_name_v<T>, sizeof(T), payload.size());
    // memcpy into storage starts the lifetime of a trivially copyable object (implicit object
    // creation), so T needs no default constructor.
    alignas(T) unsigned char storage[sizeof(T)];
    std::memcpy(storage, payload.data(), sizeof(T));
    return *std::launder(reinterpret_cast<T*>(storage));
}

}  // namespace detail
}  // namespace mprocess
