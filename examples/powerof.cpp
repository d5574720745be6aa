// SPDX-License-Identifier: Apache-2.0
// The lecture's "Programming with Queues" program: three workers each take a list from a
// do-queue, raise every element to their power, and put the labelled result on a result queue.
//
//     Result: ['x^2', 1, 4, 9, 16]
//     Result: ['x^3', 1, 8, 27, 64]
//     Result: ['x^4', 1, 16, 81, 256]
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

// Python's ['x^2', 1, 4, 9, 16]: a label, then the numbers.
struct Result {
    std::string label;
    std::vector<long long> values;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(label, values);
    }
};

using Power = std::pair<std::string, int>;  // Python's ['x^2', 2]

long long ipow(long long x, int n) {
    long long r = 1;
    while (n-- > 0) r *= x;
    return r;
}

void powerof(mp::Queue<std::vector<long long>> doq, mp::Queue<Result> resultq, Power aa) {
    auto alist = doq.get();
    Result aresult{aa.first, {}};
    for (long long i : alist) aresult.values.push_back(ipow(i, aa.second));
    resultq.put(aresult);
}

std::ostream& operator<<(std::ostream& os, const Result& r) {
    os << "['" << r.label << "'";
    for (long long v : r.values) os << ", " << v;
    return os << "]";
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    mp::Queue<std::vector<long long>> do_queue;
    mp::Queue<Result> result_queue;

    const std::vector<Power> aalist = {{"x^2", 2}, {"x^3", 3}, {"x^4", 4}};

    for (std::size_t i = 0; i < aalist.size(); ++i) do_queue.put({1, 2, 3, 4});

    std::vector<mp::Process> procs;
    for (const auto& nn : aalist) procs.emplace_back(powerof, do_queue, result_queue, nn);

    for (auto& aproc : procs) {
        aproc.start();
        aproc.join();
    }

    // empty() is exact: each worker's put() was complete before it exited.
    while (!result_queue.empty()) std::cout << "Result: " << result_queue.get() << "\n";
}
