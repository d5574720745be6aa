// SPDX-License-Identifier: Apache-2.0
// The lecture's mprocessShared1.py: a global list is NOT shared. The child appends to its own
// copy of `result` (fork copies the whole process), so the parent's stays empty.
//
//     Process-1 ::in::  [9, 25, 49]
//     MainProcess ::out::  []
#include <iostream>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

std::vector<int> result;

std::ostream& operator<<(std::ostream& os, const std::vector<int>& v) {
    os << "[";
    for (std::size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
    return os << "]";
}

void do_square(std::vector<int> sequence) {
    for (int n : sequence) result.push_back(n * n);
    std::cout << mp::current_process().name() << " ::in::  " << result << std::endl;
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    std::vector<int> numbers = {3, 5, 7};
    mp::Process pp(do_square, numbers);

    pp.start();
    pp.join();

    std::cout << mp::current_process().name() << " ::out::  " << result << std::endl;
}
