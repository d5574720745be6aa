// SPDX-License-Identifier: Apache-2.0
// The lecture's answer to mprocessShared1: the result lives in shared memory (mp.Array('i', 3)),
// so what the child writes, the parent sees.
//
//     Process-1 ::in::  [9, 25, 49]
//     MainProcess ::out::  [9, 25, 49]
#include <iostream>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

std::ostream& operator<<(std::ostream& os, const std::vector<int>& v) {
    os << "[";
    for (std::size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
    return os << "]";
}

void do_square(std::vector<int> sequence, mp::Array<int> result) {
    for (std::size_t index = 0; index < sequence.size(); ++index) result[index] = sequence[index] * sequence[index];
    std::cout << mp::current_process().name() << " ::in::  " << result.values() << std::endl;
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    std::vector<int> numbers = {3, 5, 7};
    // define the shared object as array
    mp::Array<int> result(3);
    mp::Process pp(do_square, numbers, result);

    pp.start();
    pp.join();

    std::cout << mp::current_process().name() << " ::out::  " << result.values() << std::endl;
}
