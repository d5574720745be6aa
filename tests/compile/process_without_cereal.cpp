// SPDX-License-Identifier: Apache-2.0
// A program that starts a Process with raw values only parses no serialization library.
#include <mprocess/process.hpp>

#ifdef CEREAL_CEREAL_HPP_
#error "<mprocess/process.hpp> includes cereal"
#endif

struct Point {
    int x;
    double y;
};

void target(int, Point) {}

int main() {
    mprocess::Process p(target, 1, Point{2, 3.0});
    mprocess::Process q([](long) {}, 4L);
}
