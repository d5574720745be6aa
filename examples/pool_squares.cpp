// SPDX-License-Identifier: Apache-2.0
// The lecture's Pool example (selfSquared): a Pool of 3 processes maps a function over a list,
// each worker printing its name and the number it got.
//
//     cpu_count =  2
//     ForkPoolWorker-1 :: number =  31
//     ForkPoolWorker-2 :: number =  53
//     ForkPoolWorker-3 :: number =  79
//     MainProcess ::  [961, 2809, 6241]
#include <iostream>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

int selfSquared(int anumber) {
    std::cout << mp::current_process().name() << " :: number =  " << anumber << std::endl;
    return anumber * anumber;
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    std::cout << "cpu_count =  " << mp::cpu_count() << std::endl;
    std::vector<int> numberSequence = {31, 53, 79};
    mp::Pool pool(3);
    auto result = pool.map(selfSquared, numberSequence);
    std::cout << mp::current_process().name() << " ::  [";
    for (std::size_t i = 0; i < result.size(); ++i) std::cout << (i ? ", " : "") << result[i];
    std::cout << "]" << std::endl;
}
