// SPDX-License-Identifier: Apache-2.0
// Compile-time type names and the 64-bit type tags derived from them.
//
// A message's tag must be the same in every program that shares it, whichever compiler built it:
// a manager's clients, a listener's peers. The compilers' own spellings differ (g++ writes
// `std::__cxx11::basic_string<char>`, `long int`, `{anonymous}`, `5`; clang `std::basic_string<char>`,
// `long`, `(anonymous namespace)`, `5U`), so the name a tag hashes is built here, in one canonical
// spelling, as one writes types (`std::vector<std::string>`, `unsigned long`, `std::map<int, long>`):
//  - from the type's structure wherever it has one: const, pointers, references, arrays, the
//    standard strings and containers (arguments equal to their defaults left out), std::array,
//    chrono durations, and every class template whose parameters are all types (its name, then
//    each argument's canonical name);
//  - for everything else (plain classes, enums, templates with values among their parameters,
//    classes nested in templates) from the compiler's spelling, normalized (normalize() below).
// What normalizing cannot undo: g++ names a type's own inline namespace, clang does not (and no
// text tells an inline namespace from another); a template argument that is a floating-point value;
// a user template's defaulted argument that g++ writes out inside a variant or tuple argument of
// such a class. For those, name the type: specialize mprocess::message_name.
//
// Everything here runs in the compiler, once per type, on plain arrays of characters: building
// the names in std::vectors made g++ ten times slower at it.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <ratio>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace mprocess {

// The name that T's messages carry (the source of their tag, and the name in error messages), for
// a type whose canonical name differs between compilers (see above) or to keep a renamed type's
// old name:
//     template <> inline constexpr std::string_view mprocess::message_name<lib::v2::Order> = "lib::Order";
// next to the type, before any message of it is sent or received. Empty: the canonical name.
template <class T>
inline constexpr std::string_view message_name{};

namespace detail {

constexpr bool word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
constexpr bool digit(char c) {
    return c >= '0' && c <= '9';
}

// Where names are written: Counter measures one, Writer writes it into room measured so.
struct Counter {
    std::size_t size = 0;
    constexpr void push(char) { ++size; }
    constexpr void append(std::string_view s) { size += s.size(); }
};
struct Writer {
    char* at;
    constexpr void push(char c) { *at++ = c; }
    constexpr void append(std::string_view s) {
        for (char c : s) *at++ = c;
    }
};

template <class Sink>
constexpr void append_number(Sink& out, std::uintmax_t n) {
    char digits[24] = {};
    int k = 0;
    do {
        digits[k++] = static_cast<char>('0' + n % 10);
        n /= 10;
    } while (n != 0);
    while (k > 0) out.push(digits[--k]);
}

// The compiler's spelling of T. No type alias may appear in this function's signature: g++ would
// list it after T ("[with T = ...; std::string_view = ...]").
template <class T>
constexpr const char* signature() noexcept {
    return __PRETTY_FUNCTION__;
}

template <class T>
constexpr std::string_view pretty_name() noexcept {
    const std::string_view f = signature<T>();
    const std::size_t begin = f.find("T = ");
    if (begin == std::string_view::npos || f.back() != ']') return f;
    return f.substr(begin + 4, f.size() - 1 - (begin + 4));  // up to the final ']' (an array has its own)
}

// ---- Normalizing a compiler's spelling: tokens rewritten and written with canonical spacing,
// then the standard library's default arguments and string names settled on the text.

struct Token {
    enum Kind { end, word, number, punct } kind = end;
    std::string_view text;  // a word, a number, punctuation (`::` is one)
    std::uintmax_t value = 0;
    bool has_value = false;  // a character literal: written as its value
    std::size_t next = 0;    // where the following token starts
};

// A character literal's value, from its quote at `at`; `next` is set past it. g++ writes '\000'
// and '\37777777710', clang '\x00' and '\xc8': as values (kept to the width of the character type)
// they agree.
constexpr std::uintmax_t char_literal(std::string_view s, std::size_t at, std::uintmax_t mask, std::size_t& next) {
    std::uintmax_t v = 0;
    std::size_t i = at + 1;
    if (i + 1 < s.size() && s[i] == '\\') {
        const char e = s[++i];
        if (e == 'x') {
            for (++i; i < s.size() && s[i] != '\''; ++i) {
                const char c = s[i];
                v = v * 16 + static_cast<std::uintmax_t>(digit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
            }
        } else if (e >= '0' && e <= '7') {
            for (; i < s.size() && s[i] >= '0' && s[i] <= '7'; ++i) v = v * 8 + static_cast<std::uintmax_t>(s[i] - '0');
        } else {
            constexpr std::string_view from = "ntrabfv", to = "\n\t\r\a\b\f\v";
            const std::size_t k = from.find(e);
            v = static_cast<unsigned char>(k == std::string_view::npos ? e : to[k]);  // else \\ \' \" \?
            ++i;
        }
    } else if (i < s.size()) {
        v = static_cast<unsigned char>(s[i++]);
    }
    while (i < s.size() && s[i] != '\'') ++i;
    next = i < s.size() ? i + 1 : i;
    return v & mask;
}

// The token at or after `at`.
constexpr Token token_at(std::string_view s, std::size_t at) {
    while (at < s.size() && s[at] == ' ') ++at;
    if (at >= s.size()) return {Token::end, {}, 0, false, s.size()};
    const char c = s[at];
    Token t;
    if (c == '\'') {
        t.kind = Token::number;
        t.value = char_literal(s, at, 0xff, t.next);
        t.has_value = true;
    } else if (digit(c)) {
        std::size_t j = at;
        while (j < s.size() && (word_char(s[j]) || s[j] == '.' ||
                                ((s[j] == '+' || s[j] == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E'))))
            ++j;
        std::string_view n = s.substr(at, j - at);
        // An integer's suffix: clang writes 5U, 7UL, -5LL; g++ none.
        if (n.find_first_of(".eE") == std::string_view::npos || n.starts_with("0x"))
            while (n.size() > 1 && std::string_view("uUlL").find(n.back()) != std::string_view::npos)
                n.remove_suffix(1);
        t = {Token::number, n, 0, false, j};
    } else if (word_char(c)) {
        std::size_t j = at;
        while (j < s.size() && word_char(s[j])) ++j;
        const std::string_view w = s.substr(at, j - at);
        if (j < s.size() && s[j] == '\'' && (w == "L" || w == "U" || w == "u" || w == "u8")) {
            t.kind = Token::number;
            t.value = char_literal(s, j, w == "u8" ? 0xff : w == "u" ? 0xffff : 0xffffffff, t.next);
            t.has_value = true;
        } else {
            t = {Token::word, w, 0, false, j};
        }
    } else if (c == ':' && at + 1 < s.size() && s[at + 1] == ':') {
        t = {Token::punct, s.substr(at, 2), 0, false, at + 2};
    } else {
        t = {Token::punct, s.substr(at, 1), 0, false, at + 1};
    }
    return t;
}

constexpr bool is_punct(const Token& t, std::string_view p) {
    return t.kind == Token::punct && t.text == p;
}
constexpr bool is_word(const Token& t, std::string_view w) {
    return t.kind == Token::word && t.text == w;
}

constexpr bool fundamental_keyword(const Token& t) {
    if (t.kind != Token::word) return false;
    for (std::string_view k : {"signed", "unsigned", "short", "long", "int", "char", "double", "__int128"})
        if (t.text == k) return true;
    return false;
}

// g++ writes `long unsigned int`, clang `unsigned long`: a run of these keywords, in any order, as
// clang writes the type. `t` is the run's first token; `next` is set past the run.
constexpr std::string_view fundamental_name(std::string_view s, Token t, std::size_t& next) {
    int is_unsigned = 0, is_signed = 0, shorts = 0, longs = 0, chars = 0, doubles = 0, int128s = 0;
    for (; fundamental_keyword(t); t = token_at(s, t.next)) {
        is_unsigned += t.text == "unsigned";
        is_signed += t.text == "signed";
        shorts += t.text == "short";
        longs += t.text == "long";
        chars += t.text == "char";
        doubles += t.text == "double";
        int128s += t.text == "__int128";
        next = t.next;
    }
    if (doubles) return longs ? "long double" : "double";
    if (chars) return is_unsigned ? "unsigned char" : is_signed ? "signed char" : "char";
    if (int128s) return is_unsigned ? "unsigned __int128" : "__int128";
    if (shorts) return is_unsigned ? "unsigned short" : "short";
    if (longs > 1) return is_unsigned ? "unsigned long long" : "long long";
    if (longs) return is_unsigned ? "unsigned long" : "long";
    return is_unsigned ? "unsigned int" : "int";
}

// The types clang writes before an integral template argument of an `auto` parameter:
// `(unsigned short)3`, where g++ writes `3`.
constexpr bool integral_name(std::string_view w) {
    for (std::string_view n : {"bool", "char", "signed char", "unsigned char", "wchar_t", "char8_t", "char16_t",
                               "char32_t", "short", "unsigned short", "int", "unsigned int", "long", "unsigned long",
                               "long long", "unsigned long long", "__int128", "unsigned __int128"})
        if (n == w) return true;
    return false;
}

// Names reserved to the implementation (`__cxx11`, `_V2`, `__1`): the standard library's inline
// namespaces, which g++ writes and clang does not, are dropped (its other namespaces with them,
// from both compilers' text alike).
constexpr bool reserved(const Token& t) {
    const std::string_view w = t.text;
    return t.kind == Token::word && w.size() >= 2 && w[0] == '_' && (w[1] == '_' || (w[1] >= 'A' && w[1] <= 'Z'));
}

// Text written in place, in room the caller has made (normalized_capacity()).
struct Buffer {
    char* data;
    std::size_t size = 0;
    constexpr void push(char c) { data[size++] = c; }
    constexpr void append(std::string_view s) {
        for (char c : s) data[size++] = c;
    }
    constexpr bool ends_with(std::string_view s, std::size_t end) const {
        return end >= s.size() && std::string_view(data + end - s.size(), s.size()) == s;
    }
    constexpr std::string_view view() const { return {data, size}; }
    constexpr void erase(std::size_t at, std::size_t n) {
        for (std::size_t i = at; i + n < size; ++i) data[i] = data[i + n];
        size -= n;
    }
};

// The end of the function in whose scope the text at its end is (`f(int)`, `g() const`), or 0.
constexpr std::size_t function_end(const Buffer& out) {
    std::size_t e = out.size;
    for (bool more = true; more;) {
        more = false;
        for (std::string_view q : {"const", "volatile", "noexcept", "&"}) {
            if (out.ends_with(q, e)) {
                e -= q.size();
                while (e > 0 && out.data[e - 1] == ' ') --e;
                more = true;
                break;
            }
        }
    }
    if (e == 0 || out.data[e - 1] != ')' || out.ends_with("namespace)", e)) return 0;
    return e;
}

// Where the name that ends at `end` begins: back over words, `::` and balanced brackets to the
// `<`, `,` or `(` that opens it, or the start.
constexpr std::size_t name_start(const Buffer& t, std::size_t end) {
    int depth = 0;
    std::size_t i = end;
    for (; i > 0; --i) {
        const char c = t.data[i - 1];
        if (c == '>' || c == ')') {
            ++depth;
        } else if (c == '<' || c == '(') {
            if (depth == 0) break;
            --depth;
        } else if (depth == 0 && (c == ',' || (c == ' ' && i >= 2 && t.data[i - 2] == ','))) {
            break;  // a space inside a name only joins words (`unsigned long`)
        }
    }
    return i;
}

// Writes a token, spaced as clang spaces them: a space between words, and after a comma.
constexpr void write_token(Buffer& out, const Token& k) {
    if (k.kind == Token::punct && k.text == "::") {
        if (std::size_t i = function_end(out); i != 0) {
            // g++ names a local class after its function (`main()::Local`), clang does not.
            for (int depth = 0; i > 0;) {
                const char c = out.data[--i];
                if (c == ')') ++depth;
                if (c == '(' && --depth == 0) break;
            }
            out.size = name_start(out, i);
            return;
        }
    }
    if (k.kind != Token::punct && out.size > 0 && word_char(out.data[out.size - 1]) && !k.text.starts_with('('))
        out.push(' ');
    if (k.has_value)
        append_number(out, k.value);
    else
        out.append(k.text);
    if (is_punct(k, ",")) out.push(' ');
}

// The tokens rewritten as they are written: fundamental types as clang writes them, character
// literals as numbers, clang's casts of integral template arguments and g++'s parentheses around
// an address dropped, the standard library's inline namespaces dropped, g++'s `{anonymous}` as
// clang's `(anonymous namespace)`, and `struct`/`class`/`union`/`enum` before a name dropped.
constexpr void write_tokens(Buffer& out, std::string_view s) {
    for (Token k = token_at(s, 0); k.kind != Token::end;) {
        const Token k1 = token_at(s, k.next);
        if (fundamental_keyword(k)) {
            std::size_t next = k.next;
            write_token(out, {Token::word, fundamental_name(s, k, next)});
            k = token_at(s, next);
            continue;
        }
        if (reserved(k) && is_punct(k1, "::")) {
            k = token_at(s, k1.next);
            continue;
        }
        if (k.kind == Token::word && k1.kind == Token::word &&
            (k.text == "struct" || k.text == "class" || k.text == "union" || k.text == "enum")) {
            k = k1;
            continue;
        }
        if (is_punct(k, "{") || is_punct(k, "(")) {
            const Token k2 = token_at(s, k1.next);
            const Token k3 = token_at(s, k2.next);
            if (is_punct(k, "{") && is_word(k1, "anonymous") && is_punct(k2, "}")) {
                write_token(out, {Token::word, "(anonymous namespace)"});
                k = k3;
                continue;
            }
            if (is_punct(k, "(") && is_word(k1, "anonymous") && is_word(k2, "namespace") && is_punct(k3, ")")) {
                write_token(out, {Token::word, "(anonymous namespace)"});
                k = token_at(s, k3.next);
                continue;
            }
        }
        if (is_punct(k, "(") && k1.kind == Token::word) {
            // A cast of an integral value: `(` type `)` then a number, or `-` and a number.
            std::size_t after = k1.next;
            const std::string_view type = fundamental_keyword(k1) ? fundamental_name(s, k1, after) : k1.text;
            const Token close = token_at(s, after);
            const Token value = token_at(s, close.next);
            if (integral_name(type) && is_punct(close, ")") &&
                (value.kind == Token::number ||
                 (is_punct(value, "-") && token_at(s, value.next).kind == Token::number))) {
                k = value;
                continue;
            }
        }
        if (is_punct(k, "(") && is_punct(k1, "&")) {
            // g++'s `(& name)` for an address, clang's `&name`.
            Token t = token_at(s, k1.next);
            std::size_t words = 0;
            for (; t.kind == Token::word || is_punct(t, "::"); t = token_at(s, t.next)) ++words;
            if (words > 0 && is_punct(t, ")")) {
                write_token(out, k1);
                Token m = token_at(s, k1.next);
                for (std::size_t w = 0; w < words; ++w, m = token_at(s, m.next)) write_token(out, m);
                k = token_at(s, t.next);
                continue;
            }
        }
        write_token(out, k);
        k = k1;
    }
}

// The index of the bracket that closes the `<` or `(` at `open`, or 0.
constexpr std::size_t closing(const Buffer& t, std::size_t open) {
    int depth = 0;
    for (std::size_t i = open; i < t.size; ++i) {
        if (t.data[i] == '<' || t.data[i] == '(') ++depth;
        if ((t.data[i] == '>' || t.data[i] == ')') && --depth == 0) return i;
    }
    return 0;
}

// g++ writes default arguments out inside a variant or tuple argument
// (`std::map<int, long, std::less<int>, std::allocator<...> >`), clang never does: the standard
// defaults that end an argument list are left out, as one writes them. From the right, so that a
// run of them goes in one pass.
constexpr void drop_default_arguments(Buffer& t) {
    for (std::size_t at = t.size; at-- > 0;) {
        if (t.data[at] != ',') continue;
        for (std::string_view d :
             {", std::allocator<", ", std::char_traits<", ", std::less<", ", std::hash<", ", std::equal_to<",
              ", std::default_delete<", ", std::ratio<1>", ", std::ratio<1, 1>"}) {
            if (t.size - at < d.size() || std::string_view(t.data + at, d.size()) != d) continue;
            const std::size_t end = d.back() == '<' ? closing(t, at + d.size() - 1) + 1 : at + d.size();
            if (end > 1 && end < t.size && t.data[end] == '>') t.erase(at, end - at);
            break;
        }
    }
}

// The standard strings by the names one writes: std::string, std::u16string_view, ...
constexpr void name_strings(Buffer& t) {
    constexpr std::string_view basic = "std::basic_string";
    for (std::size_t at = 0; at + basic.size() < t.size; ++at) {
        if (std::string_view(t.data + at, basic.size()) != basic) continue;
        if (at > 0 && (word_char(t.data[at - 1]) || t.data[at - 1] == ':')) continue;  // the end of another name
        std::size_t i = at + basic.size();
        const bool view = std::string_view(t.data + i, t.size - i).starts_with("_view<");
        i += view ? 6 : 1;
        if (t.data[i - 1] != '<') continue;
        const std::string_view rest(t.data + i, t.size - i);
        std::string_view kind;
        for (auto [c, k] : {std::pair<std::string_view, std::string_view>{"char>", ""},
                            {"wchar_t>", "w"},
                            {"char8_t>", "u8"},
                            {"char16_t>", "u16"},
                            {"char32_t>", "u32"}}) {
            if (rest.starts_with(c)) {
                kind = k;
                i += c.size();
                break;
            }
        }
        if (i == at + basic.size() + (view ? 6 : 1)) continue;  // another character type: as it is
        // "std::" kind "string" ["_view"] is shorter than what it replaces: written over it.
        std::size_t w = at + 5;
        for (char c : kind) t.data[w++] = c;
        for (char c : std::string_view(view ? "string_view" : "string")) t.data[w++] = c;
        t.erase(w, i - w);
    }
}

// Room enough to normalize a spelling of n characters: a comma may gain a space and g++'s
// `{anonymous}` grows by 10, everything else keeps its length or shrinks.
constexpr std::size_t normalized_capacity(std::size_t n) {
    return 2 * n + 32;
}

// A compiler's spelling of a type in the canonical one, the same text from g++ and from clang,
// written at `out` (normalized_capacity(spelling.size()) characters of room); returns its length.
constexpr std::size_t normalize(std::string_view spelling, char* out) {
    Buffer t{out};
    write_tokens(t, spelling);
    if (t.view().find("std::") != std::string_view::npos) {
        drop_default_arguments(t);
        name_strings(t);
    }
    return t.size;
}

// ---- Canonical names, written by spelling<T> (or spell<T> for the kinds of types).

template <class T>
struct spelling;

template <class T, class Sink>
constexpr void spell(Sink& out);

template <class T>
constexpr std::size_t spelled_size() {
    Counter c;
    spell<T>(c);
    return c.size;
}

template <class T>
constexpr auto spelled_array() {
    std::array<char, spelled_size<T>()> a{};
    Writer w{a.data()};
    spell<T>(w);
    return a;
}

// Computed once per type, at compile time. Hidden: a constant every object may keep its own copy
// of, which a shared library must not export (its type arguments would make it visible).
template <class T>
[[gnu::visibility("hidden")]] inline constexpr auto type_name_chars = spelled_array<T>();

// T's canonical name: the same under g++ and clang, and readable in error messages.
template <class T>
[[gnu::visibility("hidden")]] inline constexpr std::string_view type_name_v{type_name_chars<T>.data(),
                                                                            type_name_chars<T>.size()};

template <class T>
constexpr std::string_view type_name() noexcept {
    return type_name_v<T>;
}

// The compiler's spelling of a type (or of its template's name), normalized, once per type.
template <std::size_t N>
struct Normalized {
    char data[N];
    std::size_t size = 0;
    constexpr std::string_view view() const { return {data, size}; }
};

template <std::string_view (*Spelling)()>
constexpr auto normalized() {
    constexpr std::string_view s = Spelling();
    Normalized<normalized_capacity(s.size())> n{};
    n.size = normalize(s, n.data);
    return n;
}

template <std::string_view (*Spelling)()>
inline constexpr auto normalized_v = normalized<Spelling>();

// A template's spelling without its final argument list: `a::B<int>::C` of `a::B<int>::C<long>`.
constexpr std::string_view template_name(std::string_view spelling) {
    std::size_t end = spelling.size();
    while (end > 0 && spelling[end - 1] == ' ') --end;
    if (end == 0 || spelling[end - 1] != '>') return spelling;
    for (int depth = 0; end > 0;) {
        const char c = spelling[--end];
        if (c == '>') ++depth;
        if (c == '<' && --depth == 0) break;
    }
    return spelling.substr(0, end);
}

template <class T>
constexpr std::string_view template_name_of() {
    return template_name(pretty_name<T>());
}

template <class... T>
struct types {};

// `name<A...>`, leaving out the trailing arguments that equal their defaults D... (but never the
// first `Required`): std::vector<int>, std::map<K, V, std::greater<K>>. The names of the ones
// left out are never made.
template <std::size_t Required, class... A, class... D>
constexpr std::size_t kept_arguments(types<A...>, types<D...>) {
    constexpr bool is_default[] = {std::is_same_v<A, D>..., false};
    std::size_t n = sizeof...(A);
    while (n > Required && is_default[n - 1]) --n;
    return n;
}

template <std::size_t I, std::size_t Kept, class A, class Sink>
constexpr void write_argument(Sink& out) {
    if constexpr (I < Kept) {
        if constexpr (I > 0) out.append(", ");
        out.append(type_name_v<A>);
    }
}

template <std::size_t Required, class Sink, class... A, class... D>
constexpr void write_template(Sink& out, std::string_view name, types<A...>, types<D...>) {
    static_assert(sizeof...(A) == sizeof...(D) && sizeof...(A) >= Required);
    constexpr std::size_t kept = kept_arguments<Required>(types<A...>{}, types<D...>{});
    out.append(name);
    out.push('<');
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (write_argument<I, kept, A>(out), ...);
    }
    (std::index_sequence_for<A...>{});
    out.push('>');
}

// Everything without a structure of its own here: the compiler's spelling, normalized.
template <class T>
struct spelling {
    template <class Sink>
    static constexpr void write(Sink& out) {
        out.append(normalized_v<&pretty_name<T>>.view());
    }
};

// The default arguments of the standard templates, left out of names as one leaves them out of
// code: std::vector<int>, std::map<K, V, std::greater<K>>. (Other templates keep every argument.)
template <std::size_t Required, class... D>
struct defaults_are {
    using type = types<D...>;
    static constexpr std::size_t required = Required;
};
template <class T>
struct defaults;
template <template <class...> class Tpl, class... A>
struct defaults<Tpl<A...>> : defaults_are<sizeof...(A), A...> {};
template <class C, class Tr, class A>
struct defaults<std::basic_string<C, Tr, A>> : defaults_are<1, C, std::char_traits<C>, std::allocator<C>> {};
template <class C, class Tr>
struct defaults<std::basic_string_view<C, Tr>> : defaults_are<1, C, std::char_traits<C>> {};
template <class T, class A>
struct defaults<std::vector<T, A>> : defaults_are<1, T, std::allocator<T>> {};
template <class T, class A>
struct defaults<std::deque<T, A>> : defaults_are<1, T, std::allocator<T>> {};
template <class T, class A>
struct defaults<std::list<T, A>> : defaults_are<1, T, std::allocator<T>> {};
template <class K, class C, class A>
struct defaults<std::set<K, C, A>> : defaults_are<1, K, std::less<K>, std::allocator<K>> {};
template <class K, class C, class A>
struct defaults<std::multiset<K, C, A>> : defaults_are<1, K, std::less<K>, std::allocator<K>> {};
template <class K, class H, class E, class A>
struct defaults<std::unordered_set<K, H, E, A>>
    : defaults_are<1, K, std::hash<K>, std::equal_to<K>, std::allocator<K>> {};
template <class K, class H, class E, class A>
struct defaults<std::unordered_multiset<K, H, E, A>>
    : defaults_are<1, K, std::hash<K>, std::equal_to<K>, std::allocator<K>> {};
template <class K, class V, class C, class A>
struct defaults<std::map<K, V, C, A>> : defaults_are<2, K, V, std::less<K>, std::allocator<std::pair<const K, V>>> {};
template <class K, class V, class C, class A>
struct defaults<std::multimap<K, V, C, A>>
    : defaults_are<2, K, V, std::less<K>, std::allocator<std::pair<const K, V>>> {};
template <class K, class V, class H, class E, class A>
struct defaults<std::unordered_map<K, V, H, E, A>>
    : defaults_are<2, K, V, std::hash<K>, std::equal_to<K>, std::allocator<std::pair<const K, V>>> {};
template <class K, class V, class H, class E, class A>
struct defaults<std::unordered_multimap<K, V, H, E, A>>
    : defaults_are<2, K, V, std::hash<K>, std::equal_to<K>, std::allocator<std::pair<const K, V>>> {};
template <class Rep, class Period>
struct defaults<std::chrono::duration<Rep, Period>> : defaults_are<1, Rep, std::ratio<1>> {};

// A class template of types only: its name as the compiler spells it, then each argument's
// canonical name (so g++'s and clang's ways of writing the arguments never matter).
template <template <class...> class Tpl, class... A>
struct spelling<Tpl<A...>> {
    template <class Sink>
    static constexpr void write(Sink& out) {
        using D = defaults<Tpl<A...>>;
        write_template<D::required>(out, normalized_v<&template_name_of<Tpl<A...>>>.view(), types<A...>{},
                                    typename D::type{});
    }
};

// The standard strings by the names one writes: std::string, std::u16string_view, ...
template <class C>
constexpr std::string_view string_kind() {
    if constexpr (std::is_same_v<C, char>) return "std::";
    if constexpr (std::is_same_v<C, wchar_t>) return "std::w";
    if constexpr (std::is_same_v<C, char8_t>) return "std::u8";
    if constexpr (std::is_same_v<C, char16_t>) return "std::u16";
    if constexpr (std::is_same_v<C, char32_t>) return "std::u32";
    return {};
}

template <class C, class Tr, class A>
requires(!string_kind<C>().empty() && std::is_same_v<Tr, std::char_traits<C>> &&
         std::is_same_v<A, std::allocator<C>>) struct spelling<std::basic_string<C, Tr, A>> {
    template <class Sink>
    static constexpr void write(Sink& out) {
        out.append(string_kind<C>());
        out.append("string");
    }
};
template <class C, class Tr>
requires(!string_kind<C>().empty() &&
         std::is_same_v<Tr, std::char_traits<C>>) struct spelling<std::basic_string_view<C, Tr>> {
    template <class Sink>
    static constexpr void write(Sink& out) {
        out.append(string_kind<C>());
        out.append("string_view");
    }
};

template <class T, std::size_t N>
struct spelling<std::array<T, N>> {
    template <class Sink>
    static constexpr void write(Sink& out) {
        out.append("std::array<");
        out.append(type_name_v<T>);
        out.append(", ");
        append_number(out, N);
        out.push('>');
    }
};

template <class T, class Sink>
constexpr void spell(Sink& out) {
    if constexpr (!message_name<T>.empty()) {
        out.append(message_name<T>);
    } else if constexpr (std::is_array_v<T>) {
        out.append(type_name_v<std::remove_extent_t<T>>);
        out.push('[');
        if constexpr (std::extent_v<T> != 0) append_number(out, std::extent_v<T>);
        out.push(']');
    } else if constexpr ((std::is_const_v<T> || std::is_volatile_v<T>)&&std::is_pointer_v<std::remove_cv_t<T>>) {
        out.append(type_name_v<std::remove_cv_t<T>>);  // char* const
        if constexpr (std::is_const_v<T>) out.append(" const");
        if constexpr (std::is_volatile_v<T>) out.append(" volatile");
    } else if constexpr (std::is_const_v<T> || std::is_volatile_v<T>) {
        if constexpr (std::is_const_v<T>) out.append("const ");
        if constexpr (std::is_volatile_v<T>) out.append("volatile ");
        out.append(type_name_v<std::remove_cv_t<T>>);
    } else if constexpr (std::is_pointer_v<T>) {
        out.append(type_name_v<std::remove_pointer_t<T>>);
        out.push('*');
    } else if constexpr (std::is_reference_v<T>) {
        out.append(type_name_v<std::remove_reference_t<T>>);
        out.append(std::is_lvalue_reference_v<T> ? "&" : "&&");
    } else {
        spelling<T>::write(out);
    }
}

constexpr std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 14695981039346656037ull;
    for (char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    return h;
}

// Identifies a message's C++ type on the wire: the same in every program that has the type,
// whichever of g++ and clang built it; a different type yields a different one with overwhelming
// odds.
template <class T>
inline constexpr std::uint64_t type_tag = fnv1a(type_name_v<T>) ^ (std::uint64_t{sizeof(T)} << 56);

}  // namespace detail
}  // namespace mprocess
