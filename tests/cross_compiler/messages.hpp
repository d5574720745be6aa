// SPDX-License-Identifier: Apache-2.0
// What the cross-compiler test exchanges and compares: one header, compiled into the test (the
// project's compiler) and into its peer (the other compiler).
#pragma once

#include <array>
#include <chrono>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace cross {

struct Order {  // a user type with serialize()
    std::string item;
    int quantity = 0;
    std::vector<double> prices;
    std::optional<std::string> note;
    bool operator==(const Order&) const = default;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(item, quantity, prices, note);
    }
};

struct Point {  // trivially copyable: its own bytes
    std::int32_t x = 0;
    std::int32_t y = 0;
    bool operator==(const Point&) const = default;
};

enum class Side : std::uint8_t { buy, sell };

template <class T>
struct Envelope {  // a class template of types only
    std::string from;
    T body{};
    struct Header {
        int hops = 0;
    };
    bool operator==(const Envelope&) const = default;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(from, body);
    }
};

template <class T, int N>
struct Grid {  // a value among its parameters: named from the compiler's spelling
    std::array<T, N> cells{};
};

template <auto V>
struct Constant {};  // clang writes 5U, (short)3, '\x00'; g++ 5, 3, '\000'

template <std::size_t N>
struct Fixed {
    char bytes[N];
};

namespace deep::deeper {
struct Inner {
    int x = 0;
};
}  // namespace deep::deeper

namespace {
struct Hidden {  // g++ writes {anonymous}, clang (anonymous namespace)
    int x = 0;
};
}  // namespace

inline namespace v2 {
// g++ names an inline namespace, clang does not, and no text tells one from another namespace:
// such a type is named by mprocess::message_name (below).
struct Versioned {
    std::string label;
    bool operator==(const Versioned&) const = default;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(label);
    }
};
}  // namespace v2

}  // namespace cross

template <>
inline constexpr std::string_view mprocess::message_name<cross::Versioned> = "cross::Versioned";

namespace cross {

namespace mp = mprocess;

inline Order sample_order() {
    return {"widget", 3, {1.5, 2.25}, "fragile"};
}

// The values both programs send and expect, one of each type.
inline auto samples() {
    using namespace std::chrono_literals;
    return std::tuple{
        std::string("a string from the other compiler"),
        std::vector<std::string>{"one", "two", ""},
        std::vector<std::int64_t>{1, -2, 3},
        std::map<std::string, std::vector<int>>{{"a", {1, 2}}, {"b", {}}},
        std::unordered_map<std::uint32_t, std::string>{{7, "seven"}, {8, "eight"}},
        std::set<std::string>{"x", "y"},
        std::optional<std::string>("present"),
        std::optional<double>(),
        std::variant<int, std::string, std::vector<double>>(std::string("alternative")),
        std::tuple<int, std::string, double>(1, "tuple", 2.5),
        std::pair<long, unsigned long long>(-3, 4),
        std::array<std::uint16_t, 3>{1, 2, 3},
        std::chrono::milliseconds(1500ms),
        sample_order(),
        std::vector<Order>{sample_order(), {}},
        Envelope<std::map<std::string, Order>>{"envelope", {{"k", sample_order()}}},
        Point{3, -4},
        Side::sell,
        Versioned{"v2"},
    };
}

inline constexpr std::size_t sample_count = std::tuple_size_v<decltype(samples())>;

template <std::size_t I>
using Sample = std::tuple_element_t<I, decltype(samples())>;

// Sends every sample, in order: send(index, value).
template <class Send>
void send_all(Send&& send) {
    const auto values = samples();
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (send(I, std::get<I>(values)), ...);
    }
    (std::make_index_sequence<sample_count>{});
}

// Receives every sample, in order: receive.template operator()<I, T>() returns item I as a T.
// Returns what went wrong, one line per item (empty when all came as sent).
template <class Receive>
std::vector<std::string> receive_all(Receive&& receive) {
    const auto values = samples();
    std::vector<std::string> wrong;
    auto one = [&]<std::size_t I>(std::integral_constant<std::size_t, I>) {
        using T = Sample<I>;
        const std::string name(mp::detail::type_name_v<T>);
        try {
            if (!(receive.template operator()<I, T>() == std::get<I>(values)))
                wrong.push_back(name + ": came with another value");
        } catch (const mp::Error& e) {
            wrong.push_back(name + ": " + e.what());
        }
    };
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (one(std::integral_constant<std::size_t, I>{}), ...);
    }
    (std::make_index_sequence<sample_count>{});
    return wrong;
}

// The canonical name and the tag of each type, a line each: both programs must print the same.
template <class... T>
std::vector<std::string> name_lines() {
    std::vector<std::string> lines;
    auto line = [&](std::string_view name, std::uint64_t tag) {
        char hex[20];
        std::snprintf(hex, sizeof hex, "%016llx ", static_cast<unsigned long long>(tag));
        lines.push_back(hex + std::string(name));
    };
    (line(mp::detail::type_name_v<T>, mp::detail::type_tag<T>), ...);
    return lines;
}

template <class... T>
std::vector<std::string> name_lines_of_tuple(std::tuple<T...>*) {
    return name_lines<T...>();
}

inline std::vector<std::string> all_names() {
    std::vector<std::string> lines = name_lines_of_tuple(static_cast<decltype(samples())*>(nullptr));
    for (auto& l : name_lines<
             // every fundamental type, as each compiler spells it
             bool, char, signed char, unsigned char, wchar_t, char8_t, char16_t, char32_t, short, unsigned short, int,
             unsigned, long, unsigned long, long long, unsigned long long, float, double, long double, std::size_t,
             std::int64_t, std::uint8_t, std::nullptr_t, std::byte,
             // the standard strings and containers
             std::wstring, std::u8string, std::u16string, std::u32string, std::string_view, std::vector<bool>,
             std::deque<std::string>, std::list<char>, std::set<int, std::greater<int>>, std::multiset<long>,
             std::unordered_set<std::string>, std::unordered_multiset<int>, std::multimap<std::string, int>,
             std::unordered_map<std::string, std::vector<int>>, std::unordered_multimap<int, std::string>,
             std::vector<std::pair<const int, long>>, std::variant<std::monostate, int, std::string>, std::tuple<>,
             std::tuple<std::tuple<std::string>>, std::array<std::string, 2>, std::complex<double>,
             std::chrono::seconds, std::chrono::minutes, std::chrono::duration<double>,
             std::chrono::system_clock::time_point, std::chrono::steady_clock::time_point,
             std::optional<std::variant<std::string, std::map<int, std::string>>>,
             // user types, in every shape the normalizer meets
             Hidden, std::vector<Hidden>, deep::deeper::Inner, Envelope<int>, Envelope<std::string>,
             Envelope<int>::Header, Envelope<std::vector<std::string>>::Header, Envelope<Envelope<std::string>>,
             Grid<std::string, 3>, Grid<std::map<std::string, int>, 2>, Grid<std::variant<int, std::string>, 1>,
             Grid<std::tuple<std::chrono::seconds, std::unordered_map<int, int>>, 4>, Constant<5u>, Constant<7ul>,
             Constant<-7ll>, Constant<'a'>, Constant<'\0'>, Constant<static_cast<short>(3)>,
             Constant<static_cast<unsigned char>(200)>, Constant<Side::buy>, Constant<true>, Fixed<16>,
             std::map<Side, Order>, const int*, const char* const, int[4], Point[2]>())
        lines.push_back(std::move(l));
    return lines;
}

}  // namespace cross
