// SPDX-License-Identifier: Apache-2.0
/// @file
/// Messages are serialized objects: the lecture's "what is a message".
///
/// A message is [8-byte type tag][payload]. Trivially copyable types (ints, doubles, plain structs)
/// are their own payload: raw bytes, no encoder. Everything else goes through cereal: standard
/// strings and containers, optional, variant, pair and tuple, any nesting of them, and user types
/// with a member
///
/// @code{.cpp}
/// template <class Archive> void serialize(Archive& ar) { ar(field1, field2); }
/// @endcode
///
/// The tag comes from the type's canonical name (detail/type_name.hpp), the same whichever of g++
/// and clang built the program; a type that no compiler-independent name can be made for (one in an
/// inline namespace of its own) is named by specializing mprocess::message_name<T>.
///
/// Decoding checks the tag against the type asked for (TypeMismatch) and never trusts a length
/// (DecodeError on truncated, oversized or trailing bytes): no count makes it allocate more than
/// the message's bytes can back (see detail/archive.hpp), and running out of memory is a
/// DecodeError too. It only ever builds plain data: no message can make the receiver run code,
/// unlike unpickling.
#pragma once

#include "mprocess/export.hpp"

#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <cereal/types/array.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include "mprocess/detail/archive.hpp"
#include "mprocess/detail/raw_codec.hpp"
#include "mprocess/detail/type_name.hpp"
#include "mprocess/error.hpp"

namespace mprocess {

namespace detail {
// Whether T can go through the archive pair (Out, In), looking inside the standard containers:
// cereal's own functions for them accept any element type, and only fail deep in an
// instantiation, so their elements are checked here, recursively. Loading default-constructs
// every element first.
template <class T, class Out, class In>
struct archivable;

template <class T, class Out, class In>
struct elements_archivable : std::true_type {};
template <class Out, class In, class... T>
struct all_archivable : std::bool_constant<(archivable<T, Out, In>::value && ...)> {};

template <class Out, class In, class T, class A>
struct elements_archivable<std::vector<T, A>, Out, In> : archivable<T, Out, In> {};
template <class Out, class In, class T, class A>
struct elements_archivable<std::deque<T, A>, Out, In> : archivable<T, Out, In> {};
template <class Out, class In, class T, class A>
struct elements_archivable<std::list<T, A>, Out, In> : archivable<T, Out, In> {};
template <class Out, class In, class T, std::size_t N>
struct elements_archivable<std::array<T, N>, Out, In> : archivable<T, Out, In> {};
template <class Out, class In, class T>
struct elements_archivable<std::optional<T>, Out, In> : archivable<T, Out, In> {};
template <class Out, class In, class K, class C, class A>
struct elements_archivable<std::set<K, C, A>, Out, In> : archivable<K, Out, In> {};
template <class Out, class In, class K, class C, class A>
struct elements_archivable<std::multiset<K, C, A>, Out, In> : archivable<K, Out, In> {};
template <class Out, class In, class K, class H, class E, class A>
struct elements_archivable<std::unordered_set<K, H, E, A>, Out, In> : archivable<K, Out, In> {};
template <class Out, class In, class K, class H, class E, class A>
struct elements_archivable<std::unordered_multiset<K, H, E, A>, Out, In> : archivable<K, Out, In> {};
template <class Out, class In, class K, class V, class C, class A>
struct elements_archivable<std::map<K, V, C, A>, Out, In> : all_archivable<Out, In, K, V> {};
template <class Out, class In, class K, class V, class C, class A>
struct elements_archivable<std::multimap<K, V, C, A>, Out, In> : all_archivable<Out, In, K, V> {};
template <class Out, class In, class K, class V, class H, class E, class A>
struct elements_archivable<std::unordered_map<K, V, H, E, A>, Out, In> : all_archivable<Out, In, K, V> {};
template <class Out, class In, class K, class V, class H, class E, class A>
struct elements_archivable<std::unordered_multimap<K, V, H, E, A>, Out, In> : all_archivable<Out, In, K, V> {};
template <class Out, class In, class A, class B>
struct elements_archivable<std::pair<A, B>, Out, In> : all_archivable<Out, In, A, B> {};
template <class Out, class In, class... T>
struct elements_archivable<std::tuple<T...>, Out, In> : all_archivable<Out, In, T...> {};
template <class Out, class In, class... T>
struct elements_archivable<std::variant<T...>, Out, In> : all_archivable<Out, In, T...> {};

template <class T, class Out, class In>
struct archivable
    : std::bool_constant<
          !std::is_pointer_v<T> && !std::is_member_pointer_v<T> && !std::is_reference_v<T> && !is_view_v<T> &&
          std::is_default_constructible_v<T> && cereal::traits::is_output_serializable<T, Out>::value &&
          cereal::traits::is_input_serializable<T, In>::value && elements_archivable<T, Out, In>::value> {};
}  // namespace detail

/// Sent through cereal: default-constructible, and a standard string or container, optional,
/// variant, pair or tuple of such types, or a type with a serialize(Archive&) member.
template <class T>
concept ArchiveMessage = !RawMessage<T> && detail::archivable<T, detail::OutArchive, detail::InArchive>::value;

/// What can travel as a message (a Connection's, a queue's item, a task's argument or result).
template <class T>
concept Serializable = RawMessage<T> || ArchiveMessage<T>;

namespace detail {

template <class T>
constexpr void require_serializable() {
    static_assert(!std::is_pointer_v<T>,
                  "mprocess: a raw pointer cannot travel as a message; send the object it points to");
    static_assert(Serializable<T>,
                  "mprocess: this type cannot travel as a message (see the type in 'with T = ...' below). "
                  "Make it trivially copyable, or give it a default constructor and a member "
                  "`template <class Archive> void serialize(Archive& ar) { ar(field1, field2, ...); }`");
}

// Builds a T from all that is left in `ar`, a `what` ("message", "queue item", ...): every way
// the bytes fail to be one T is a DecodeError naming T. Out of memory too: the counts are bounded
// by the bytes, but a large honest-looking message can still need more than this process may
// have. The half-built T is gone before the error is made.
template <class T, class Archive>
T load_whole(Archive& ar, std::string_view what) {
    const std::size_t size = ar.remaining();
    try {
        T obj{};
        ar(obj);
        if (ar.remaining() != 0)
            throw DecodeError(std::to_string(ar.remaining()) + " unexpected trailing bytes after a " +
                              std::string(type_name_v<T>) + " (" + std::string(what) + ")");
        return obj;
    } catch (const cereal::Exception& e) {
        throw DecodeError("corrupt " + std::string(what) + " for " + std::string(type_name_v<T>) + ": " + e.what());
    } catch (const std::bad_alloc&) {
        throw DecodeError("out of memory decoding a " + std::string(type_name_v<T>) + " from a " + std::string(what) +
                          " of " + std::to_string(size) + " bytes");
    } catch (const std::length_error& e) {
        throw DecodeError("a " + std::string(what) + " of " + std::to_string(size) + " bytes holds a " +
                          std::string(type_name_v<T>) + " larger than it can be (" + e.what() + ")");
    }
}

}  // namespace detail

/// Appends the message for `obj` (tag and payload) to `out`. A type that cannot travel is a compile
/// error that says how to fix it.
template <class T>
void encode_into(std::string& out, const T& obj) {
    detail::require_serializable<T>();
    if constexpr (RawMessage<T>) {
        detail::encode_raw_into(out, obj);
    } else {
        constexpr std::uint64_t tag = detail::type_tag<T>;
        out.append(reinterpret_cast<const char*>(&tag), tag_size);
        detail::OutArchive ar(out);
        ar(obj);
    }
}

/// The message for `obj`: its tag and payload, as encode_into() appends them.
template <class T>
std::string encode(const T& obj) {
    std::string out;
    encode_into(out, obj);
    return out;
}

/// Rebuilds the object from a whole message. Throws TypeMismatch or DecodeError, never crashes.
template <class T>
T decode(std::string_view bytes) {
    detail::require_serializable<T>();
    if constexpr (RawMessage<T>) {
        return detail::decode_raw<T>(bytes);
    } else {
        constexpr std::uint64_t tag = detail::type_tag<T>;
        if (bytes.size() < tag_size || detail::read_tag(bytes) != tag)
            throw TypeMismatch::for_message(detail::type_name_v<T>, tag, bytes);
        detail::InArchive ar(bytes.data() + tag_size, bytes.size() - tag_size);
        return detail::load_whole<T>(ar, "message");
    }
}

namespace detail {

// Appends the message encode(std::vector<T>(v.begin() + begin, v.begin() + end)) would give,
// without copying the slice first (a map's chunks are slices of its input).
template <class T, class A>
void encode_slice_into(std::string& out, const std::vector<T, A>& v, std::size_t begin, std::size_t end) {
    using Vec = std::vector<T, A>;
    if constexpr (std::is_same_v<T, bool>) {
        encode_into(out,
                    Vec(v.begin() + static_cast<std::ptrdiff_t>(begin), v.begin() + static_cast<std::ptrdiff_t>(end)));
    } else {
        require_serializable<Vec>();
        constexpr std::uint64_t tag = type_tag<Vec>;
        out.append(reinterpret_cast<const char*>(&tag), tag_size);
        OutArchive ar(out);
        ar(cereal::make_size_tag(static_cast<cereal::size_type>(end - begin)));
        if constexpr (std::is_arithmetic_v<T>) {
            ar(cereal::binary_data(v.data() + begin, (end - begin) * sizeof(T)));
        } else {
            for (std::size_t i = begin; i < end; ++i) ar(v[i]);
        }
    }
}

template <class T, class A>
std::string encode_slice(const std::vector<T, A>& v, std::size_t begin, std::size_t end) {
    std::string out;
    encode_slice_into(out, v, begin, end);
    return out;
}

// Vectors of numbers travel as a length and the numbers' bytes; these read and write that form in
// place, without a vector in between (a map's chunks are megabytes).
template <class T>
inline constexpr bool flat_item_v = std::is_arithmetic_v<T> && !std::is_same_v<T, bool>;

// The bytes of the numbers in an encoded std::vector<T>, checked: count and where they start
// (not aligned: read each with memcpy).
template <class T>
std::pair<const char*, std::size_t> flat_items(std::string_view bytes) {
    using Vec = std::vector<T>;
    static_assert(flat_item_v<T>);
    constexpr std::uint64_t tag = type_tag<Vec>;
    if (bytes.size() < tag_size || read_tag(bytes) != tag)
        throw TypeMismatch::for_message(type_name_v<Vec>, tag, bytes);
    std::string_view payload = bytes.substr(tag_size);
    std::uint64_t n = 0;
    if (payload.size() < sizeof n)
        throw DecodeError("truncated message: no length for a " + std::string(type_name_v<Vec>));
    std::memcpy(&n, payload.data(), sizeof n);
    payload.remove_prefix(sizeof n);
    if (n > payload.size() / sizeof(T))
        throw DecodeError("corrupt message: a container claims " + std::to_string(n) + " elements but only " +
                          std::to_string(payload.size()) + " bytes remain");
    if (payload.size() != n * sizeof(T))
        throw DecodeError(std::to_string(payload.size() - n * sizeof(T)) + " unexpected trailing bytes after a " +
                          std::string(type_name_v<Vec>));
    return {payload.data(), static_cast<std::size_t>(n)};
}

// Appends to `out` the encoding of a std::vector<T> of n numbers and returns where their bytes go.
template <class T>
char* append_flat_items(std::string& out, std::size_t n) {
    static_assert(flat_item_v<T>);
    constexpr std::uint64_t tag = type_tag<std::vector<T>>;
    const std::uint64_t count = n;
    out.append(reinterpret_cast<const char*>(&tag), tag_size);
    out.append(reinterpret_cast<const char*>(&count), sizeof count);
    const std::size_t at = out.size();
    out.resize(at + n * sizeof(T));
    return out.data() + at;
}

// Appends the items of an encoded std::vector<T> to `out`, as decoding it and inserting its items
// would.
template <class T, class A>
void decode_append(std::vector<T, A>& out, std::string_view bytes) {
    if constexpr (flat_item_v<T> && std::is_same_v<A, std::allocator<T>>) {
        const auto [data, n] = flat_items<T>(bytes);
        const std::size_t at = out.size();
        out.resize(at + n);
        if (n != 0) std::memcpy(out.data() + at, data, n * sizeof(T));
    } else {
        auto part = decode<std::vector<T, A>>(bytes);
        if (out.empty())
            out = std::move(part);
        else
            out.insert(out.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
    }
}

}  // namespace detail

}  // namespace mprocess

// The argument half of the codec: how such types reach a spawned child (see detail/spawn.hpp).
#include "mprocess/detail/spawn_archive.hpp"  // IWYU pragma: export
