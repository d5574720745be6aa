// SPDX-License-Identifier: Apache-2.0
// cereal archives that write into a byte string and read from a bounds-checked span.
//
// Why not cereal's own BinaryInputArchive: it trusts the counts it reads, so a corrupt one could
// make it allocate terabytes before failing. Here every read is checked against the end of the
// buffer, and the standard containers are loaded by this file, not by cereal, so that a count
// buys nothing ahead of its elements:
//  - a count is checked against the bytes left divided by the fewest bytes one element takes
//    (min_size_v: 8 for a string or any container, that is its own count, 4 plus the smallest
//    alternative for a variant, the sum for a pair or a tuple, and so on);
//  - a container makes room for at most room_per_byte bytes of memory per byte left: the rest it
//    grows into as its elements arrive, so memory follows what the message really holds;
//  - elements that may take no bytes at all (std::monostate, an empty tuple, a user type whose
//    smallest form cannot be told) are counted as they decode: those that took none spend a
//    budget of memory the whole message shares (empty_elements_budget), else a message of a few
//    bytes could claim 2^60 of them, or nest them without end.
// The encoding is cereal's, unchanged. Containers from cereal headers serialize.hpp does not
// include keep cereal's loading, with the one check every count gets: a byte per element.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <cereal/archives/binary.hpp>
#include <cereal/cereal.hpp>

#include "mprocess/detail/type_name.hpp"
#include "mprocess/error.hpp"

namespace mprocess {
struct SpawnArgs;
}

namespace mprocess::detail {

// No context: the archives of messages, where only plain data may travel.
struct NoContext {};

// The memory one message may fill with elements that took none of its bytes: a million
// std::monostate, or a few thousand of a large type whose serialize() writes nothing. Honest
// messages hold a handful of those; without a bound, 16 bytes could claim 2^60 of them.
inline constexpr std::size_t empty_elements_budget = std::size_t{1} << 20;

// Ctx is what an archive carries besides bytes. The archives of process arguments carry the
// SpawnArgs whose descriptors handles (queues, locks, connections, ...) refer to; handles have
// save and load functions for those archives only, so a handle inside a message does not
// compile, while a handle inside a container or a user type given to a process travels.
template <class Ctx>
class BasicOutArchive : public cereal::OutputArchive<BasicOutArchive<Ctx>, cereal::AllowEmptyClassElision> {
public:
    explicit BasicOutArchive(std::string& out, Ctx* ctx = nullptr)
        : cereal::OutputArchive<BasicOutArchive, cereal::AllowEmptyClassElision>(this), out_(out), ctx_(ctx) {}
    void saveBinary(const void* data, std::size_t size) {
        if (size != 0) out_.append(static_cast<const char*>(data), size);
    }
    Ctx& context() const noexcept { return *ctx_; }

private:
    std::string& out_;
    Ctx* ctx_;
};

template <class Ctx>
class BasicInArchive : public cereal::InputArchive<BasicInArchive<Ctx>, cereal::AllowEmptyClassElision> {
public:
    BasicInArchive(const char* data, std::size_t size, const Ctx* ctx = nullptr)
        : cereal::InputArchive<BasicInArchive, cereal::AllowEmptyClassElision>(this),
          pos_(data),
          end_(data + size),
          ctx_(ctx) {}

    void loadBinary(void* data, std::size_t size) {
        if (size > remaining())
            throw DecodeError("truncated message: needed " + std::to_string(size) + " more bytes, only " +
                              std::to_string(remaining()) + " remain");
        if (size == 0) return;  // data may be null (an empty container)
        std::memcpy(data, pos_, size);
        pos_ += size;
    }
    std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }
    const Ctx& context() const noexcept { return *ctx_; }

    // What is left of empty_elements_budget, and spending it on an element that took no bytes.
    std::size_t empty_budget() const noexcept { return empty_budget_; }
    void spend_empty(std::size_t memory, std::string_view container) {
        if (memory > empty_budget_)
            throw DecodeError("corrupt message: a " + std::string(container) +
                              " holds more elements that take no bytes than a message may (" +
                              std::to_string(empty_elements_budget) + " bytes of them in all)");
        empty_budget_ -= memory;
    }

private:
    const char* pos_;
    const char* end_;
    const Ctx* ctx_;
    std::size_t empty_budget_ = empty_elements_budget;
};

using OutArchive = BasicOutArchive<NoContext>;
using InArchive = BasicInArchive<NoContext>;
using SpawnOutArchive = BasicOutArchive<SpawnArgs>;
using SpawnInArchive = BasicInArchive<SpawnArgs>;

template <class Ctx, class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_SAVE_FUNCTION_NAME(BasicOutArchive<Ctx>& ar, const T& t) {
    ar.saveBinary(std::addressof(t), sizeof(t));
}
template <class Ctx, class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, T& t) {
    if constexpr (std::is_same_v<T, bool>) {
        // Any byte but 0 or 1 in a bool is undefined behaviour: reject it here.
        unsigned char b = 0;
        ar.loadBinary(&b, 1);
        if (b > 1) throw DecodeError("corrupt message: a bool holds " + std::to_string(b));
        t = b != 0;
    } else {
        ar.loadBinary(std::addressof(t), sizeof(t));
    }
}

template <class Ctx, class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(BasicOutArchive<Ctx>& ar, cereal::NameValuePair<T>& t) {
    ar(t.value);
}
template <class Ctx, class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(BasicInArchive<Ctx>& ar, cereal::NameValuePair<T>& t) {
    ar(t.value);
}

template <class Ctx, class T>
void CEREAL_SAVE_FUNCTION_NAME(BasicOutArchive<Ctx>& ar, const cereal::SizeTag<T>& t) {
    std::uint64_t n = t.size;
    ar.saveBinary(&n, sizeof n);
}
// The counts of containers that cereal loads (those not loaded below): a byte per element at least.
template <class Ctx, class T>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, cereal::SizeTag<T>& t) {
    std::uint64_t n = 0;
    ar.loadBinary(&n, sizeof n);
    if (n > ar.remaining())
        throw DecodeError("corrupt message: a container claims " + std::to_string(n) + " elements but only " +
                          std::to_string(ar.remaining()) + " bytes remain");
    t.size = static_cast<std::remove_reference_t<T>>(n);
}

template <class Ctx, class T>
void CEREAL_SAVE_FUNCTION_NAME(BasicOutArchive<Ctx>& ar, const cereal::BinaryData<T>& bd) {
    ar.saveBinary(bd.data, static_cast<std::size_t>(bd.size));
}
template <class Ctx, class T>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, cereal::BinaryData<T>& bd) {
    ar.loadBinary(bd.data, static_cast<std::size_t>(bd.size));
}

// A trivially copyable struct without serialization functions of its own travels as raw bytes,
// also when nested inside containers. Types cereal already knows (std::array, std::optional, ...)
// keep cereal's functions: asking cereal's own binary archive tells which those are.
template <class T>
inline constexpr bool raw_class_v =
    std::is_class_v<T>&& std::is_trivially_copyable_v<T> && !std::is_empty_v<T> &&
    cereal::traits::detail::count_output_serializers<T, cereal::BinaryOutputArchive>::value == 0;

template <class Ctx, class T>
std::enable_if_t<raw_class_v<T>> CEREAL_SAVE_FUNCTION_NAME(BasicOutArchive<Ctx>& ar, const T& t) {
    ar.saveBinary(std::addressof(t), sizeof(T));
}
template <class Ctx, class T>
std::enable_if_t<raw_class_v<T>> CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, T& t) {
    ar.loadBinary(std::addressof(t), sizeof(T));
}

// The fewest bytes a T takes in a message; 0 if it may take none, or if that cannot be told (a
// user type's serialize() may write anything, or nothing).
template <class T>
struct min_size
    : std::integral_constant<std::size_t,
                             std::is_arithmetic_v<T> || std::is_enum_v<T> || raw_class_v<T> ? sizeof(T) : 0> {};
template <class T>
inline constexpr std::size_t min_size_v = min_size<std::remove_cv_t<T>>::value;

// A string's or a container's: its count.
using counted = std::integral_constant<std::size_t, sizeof(cereal::size_type)>;
template <class C, class Tr, class A>
struct min_size<std::basic_string<C, Tr, A>> : counted {};
template <class T, class A>
struct min_size<std::vector<T, A>> : counted {};
template <class T, class A>
struct min_size<std::deque<T, A>> : counted {};
template <class T, class A>
struct min_size<std::list<T, A>> : counted {};
template <class... T>
struct min_size<std::set<T...>> : counted {};
template <class... T>
struct min_size<std::multiset<T...>> : counted {};
template <class... T>
struct min_size<std::map<T...>> : counted {};
template <class... T>
struct min_size<std::multimap<T...>> : counted {};
template <class... T>
struct min_size<std::unordered_set<T...>> : counted {};
template <class... T>
struct min_size<std::unordered_multiset<T...>> : counted {};
template <class... T>
struct min_size<std::unordered_map<T...>> : counted {};
template <class... T>
struct min_size<std::unordered_multimap<T...>> : counted {};
// Whether it holds a value: one bool.
template <class T>
struct min_size<std::optional<T>> : std::integral_constant<std::size_t, 1> {};
// An int32 index, then the alternative.
template <class... T>
struct min_size<std::variant<T...>> : std::integral_constant<std::size_t, 4 + std::min({min_size_v<T>...})> {};
template <class A, class B>
struct min_size<std::pair<A, B>> : std::integral_constant<std::size_t, min_size_v<A> + min_size_v<B>> {};
template <class... T>
struct min_size<std::tuple<T...>> : std::integral_constant<std::size_t, (std::size_t{0} + ... + min_size_v<T>)> {};
template <class T, std::size_t N>
struct min_size<std::array<T, N>> : std::integral_constant<std::size_t, N * min_size_v<T>> {};

// Memory a container may take ahead of its elements, per byte of the message left: what a vector
// of empty strings needs (8 bytes each in the message, 32 in memory), so that honest messages of
// the usual shapes still get all their room at once.
inline constexpr std::size_t room_per_byte = 4;
// What a node of a list, set or map costs besides its value (links, color, hash), roughly.
inline constexpr std::size_t node_links = 4 * sizeof(void*);

// Reads the count of a Container whose elements are made of Parts (a map's: key and value),
// `each` bytes of memory apiece, and checks it against the bytes left.
template <class Container, class... Parts, class Ctx>
std::size_t load_count(BasicInArchive<Ctx>& ar, std::size_t each) {
    constexpr std::size_t min = (std::size_t{0} + ... + min_size_v<Parts>);
    std::uint64_t n = 0;
    ar.loadBinary(&n, sizeof n);
    const std::size_t left = ar.remaining();
    // An element of no known size takes a byte at least, or spends the budget.
    const bool fits = min != 0 ? n <= left / min : n <= left + ar.empty_budget() / each;
    if (!fits)
        throw DecodeError("corrupt message: a " + std::string(type_name_v<Container>) + " claims " + std::to_string(n) +
                          " elements, more than the " + std::to_string(left) + " bytes left can hold" +
                          (min != 0 ? " (each takes at least " + std::to_string(min) + ")" : std::string()));
    return static_cast<std::size_t>(n);
}

// Empties `c` and, if it can make room ahead, makes room for as many of its n elements of `each`
// bytes as the bytes left could fill at room_per_byte.
template <class Ctx, class C>
void make_room(const BasicInArchive<Ctx>& ar, C& c, std::size_t n, std::size_t each) {
    c.clear();
    if constexpr (requires { c.reserve(n); }) c.reserve(std::min(n, ar.remaining() / each * room_per_byte));
}

// Loads one element (a map's key and value together), spending the budget if it took no bytes.
template <class Container, class Ctx, class... Parts>
void load_element(BasicInArchive<Ctx>& ar, std::size_t each, Parts&... parts) {
    if constexpr ((std::size_t{0} + ... + min_size_v<Parts>) != 0) {
        ar(parts...);
    } else {
        const std::size_t before = ar.remaining();
        ar(parts...);
        if (ar.remaining() == before) ar.spend_empty(each, type_name_v<Container>);
    }
}

template <class Ctx, class C, class Tr, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::basic_string<C, Tr, A>& s) {
    const std::size_t n = load_count<std::basic_string<C, Tr, A>, C>(ar, sizeof(C));
    s.resize(n);
    ar.loadBinary(s.data(), n * sizeof(C));
}

// Elements one by one, each `each` bytes of memory.
template <class Ctx, class Seq>
void load_sequence(BasicInArchive<Ctx>& ar, Seq& seq, std::size_t each) {
    using T = typename Seq::value_type;
    const std::size_t n = load_count<Seq, T>(ar, each);
    make_room(ar, seq, n, each);
    for (std::size_t i = 0; i < n; ++i) load_element<Seq>(ar, each, seq.emplace_back());
}

template <class Ctx, class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::vector<T, A>& v) {
    if constexpr (std::is_arithmetic_v<T>) {
        // Numbers are their own bytes, in one run: as much memory as the message holds.
        const std::size_t n = load_count<std::vector<T, A>, T>(ar, sizeof(T));
        v.resize(n);
        ar.loadBinary(v.data(), n * sizeof(T));
    } else {
        load_sequence(ar, v, sizeof(T));
    }
}
template <class Ctx, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::vector<bool, A>& v) {
    const std::size_t n = load_count<std::vector<bool, A>, bool>(ar, 1);
    v.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        bool b = false;
        ar(b);
        v[i] = b;
    }
}
template <class Ctx, class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::deque<T, A>& d) {
    load_sequence(ar, d, sizeof(T));
}
template <class Ctx, class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::list<T, A>& l) {
    load_sequence(ar, l, sizeof(T) + node_links);
}

// Adds a loaded element to a set or a map. An ordered one takes it at its end, where sorted keys
// go, so that equal keys keep the order they were written in.
template <class Assoc, class... Parts>
void add_loaded(Assoc& c, Parts&... parts) {
    if constexpr (requires { c.reserve(0); })
        c.emplace(std::move(parts)...);
    else
        c.emplace_hint(c.end(), std::move(parts)...);
}

template <class Ctx, class Set>
void load_set(BasicInArchive<Ctx>& ar, Set& set) {
    using K = typename Set::key_type;
    constexpr std::size_t each = sizeof(K) + node_links;
    const std::size_t n = load_count<Set, K>(ar, each);
    make_room(ar, set, n, each);
    for (std::size_t i = 0; i < n; ++i) {
        K key{};
        load_element<Set>(ar, each, key);
        add_loaded(set, key);
    }
}

// An element of a map: its key, then its value.
template <class Ctx, class Map>
void load_map(BasicInArchive<Ctx>& ar, Map& map) {
    using K = typename Map::key_type;
    using V = typename Map::mapped_type;
    constexpr std::size_t each = sizeof(typename Map::value_type) + node_links;
    const std::size_t n = load_count<Map, K, V>(ar, each);
    make_room(ar, map, n, each);
    for (std::size_t i = 0; i < n; ++i) {
        K key{};
        V value{};
        load_element<Map>(ar, each, key, value);
        add_loaded(map, key, value);
    }
}

template <class Ctx, class K, class C, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::set<K, C, A>& s) {
    load_set(ar, s);
}
template <class Ctx, class K, class C, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::multiset<K, C, A>& s) {
    load_set(ar, s);
}
template <class Ctx, class K, class H, class E, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::unordered_set<K, H, E, A>& s) {
    load_set(ar, s);
}
template <class Ctx, class K, class H, class E, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::unordered_multiset<K, H, E, A>& s) {
    load_set(ar, s);
}
template <class Ctx, class K, class V, class C, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::map<K, V, C, A>& m) {
    load_map(ar, m);
}
template <class Ctx, class K, class V, class C, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::multimap<K, V, C, A>& m) {
    load_map(ar, m);
}
template <class Ctx, class K, class V, class H, class E, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::unordered_map<K, V, H, E, A>& m) {
    load_map(ar, m);
}
template <class Ctx, class K, class V, class H, class E, class A>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, std::unordered_multimap<K, V, H, E, A>& m) {
    load_map(ar, m);
}

}  // namespace mprocess::detail

CEREAL_SETUP_ARCHIVE_TRAITS(mprocess::detail::InArchive, mprocess::detail::OutArchive)
CEREAL_SETUP_ARCHIVE_TRAITS(mprocess::detail::SpawnInArchive, mprocess::detail::SpawnOutArchive)
