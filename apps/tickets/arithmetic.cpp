// SPDX-License-Identifier: Apache-2.0
// Exact powers of integers of any size, through GMP, as Python's ints give them.
#include <gmpxx.h>

#include <cctype>

#include "tickets.hpp"

namespace tickets {

std::optional<std::string> parse_integer(std::string_view text, std::string& why) {
    auto blank = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
    while (!text.empty() && blank(text.front())) text.remove_prefix(1);
    while (!text.empty() && blank(text.back())) text.remove_suffix(1);
    if (text.empty()) {
        why = "empty input";
        return std::nullopt;
    }
    std::string out;
    std::size_t i = 0;
    if (text[0] == '+' || text[0] == '-') {
        if (text[0] == '-') out += '-';
        i = 1;
    }
    std::size_t digits = 0;
    bool after_underscore = false;
    for (; i < text.size(); ++i) {
        const char c = text[i];
        if (c >= '0' && c <= '9') {
            out += c;
            ++digits;
            after_underscore = false;
        } else if (c == '_' && digits > 0 && !after_underscore) {
            after_underscore = true;
        } else {
            why = "not an integer";
            return std::nullopt;
        }
    }
    if (digits == 0 || after_underscore) {
        why = "not an integer";
        return std::nullopt;
    }
    if (digits > kMaxDigits) {
        why = "too long: at most " + std::to_string(kMaxDigits) + " digits";
        return std::nullopt;
    }
    // Canonical: no leading zeros, no "-0".
    const std::size_t sign = out[0] == '-' ? 1 : 0;
    std::size_t first = sign;
    while (first + 1 < out.size() && out[first] == '0') ++first;
    std::string canonical = (sign ? "-" : "") + out.substr(first);
    if (canonical == "-0") canonical = "0";
    return canonical;
}

std::pair<unsigned, unsigned> exponents_for(const std::string& number) {
    const char last = number.empty() ? '0' : number.back();
    return (last - '0') % 2 == 0 ? std::pair{2u, 4u} : std::pair{3u, 5u};
}

std::string power(std::string number, unsigned exponent) {
    std::string why;
    auto canonical = parse_integer(number, why);
    if (!canonical) throw mp::ValueError("cannot raise '" + number.substr(0, 40) + "' to a power: " + why);
    mpz_class x(*canonical, 10);
    mpz_class r;
    mpz_pow_ui(r.get_mpz_t(), x.get_mpz_t(), exponent);
    return r.get_str(10);
}

}  // namespace tickets
