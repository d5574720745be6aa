// SPDX-License-Identifier: Apache-2.0
// Test support: a user type with a serialize() member, and deterministic byte patterns.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace testing_support {

struct Reading {
    std::string sensor;
    std::vector<double> values;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(sensor, values);
    }
    bool operator==(const Reading&) const = default;
};

// n bytes that differ with the seed and with the position.
inline std::string pattern(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed) & 0xff);
    return s;
}

}  // namespace testing_support
