// Compile-time type names and the 64-bit type tags derived from them.
#pragma once

#include <cstdint>
#include <string_view>

namespace mprocess::detail {

template <class T>
constexpr std::string_view type_name() noexcept {
    // g++ and clang spell the template argument as "T = <name>" inside __PRETTY_FUNCTION__.
    std::string_view f = __PRETTY_FUNCTION__;
    auto begin = f.find("T = ");
    if (begin == std::string_view::npos) return f;
    begin += 4;
    auto end = f.find_first_of(";]", begin);
    return f.substr(begin, end - begin);
}

// Computed once, at compile time (a plain call of type_name<T>() may run at run time).
template <class T>
inline constexpr std::string_view type_name_v = type_name<T>();

constexpr std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 14695981039346656037ull;
    for (char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    return h;
}

// Identifies a message's C++ type on the wire. Both ends are built from the same sources, so the
// same type yields the same tag; a different type yields a different one with overwhelming odds.
template <class T>
inline constexpr std::uint64_t type_tag = fnv1a(type_name_v<T>) ^ (std::uint64_t{sizeof(T)} << 56);

}  // namespace mprocess::detail
