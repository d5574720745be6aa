// SPDX-License-Identifier: Apache-2.0
// The lecture's mapReduce1.py: map toFahrenheit, then toCentigrade, over four temperatures, all in
// one process; then the same over a Pool, where the pids show which processes did the work, and
// the lecture's filter and reduce across the pool too.
//
//     4711 ::toF::  36
//     ...
//     <map object at 0x7ffd5a1c2b40>
//     [96.8, 98.60000000000001, 100.4, 102.2]
//     =====
//     [96.8, 98.60000000000001, 100.4, 102.2]
//     [36.0, 37.00000000000001, 38.00000000000001, 39.0]
#include <unistd.h>

#include <charconv>
#include <iostream>
#include <ranges>
#include <string>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

std::string py(double x);

double toFahrenheit(int tempC) {
    std::cout << ::getpid() << " ::toF::  " << tempC << std::endl;
    return (9.0 / 5) * tempC + 32;
}

double toCentigrade(double tempF) {
    std::cout << ::getpid() << " ::toC::  " << py(tempF) << std::endl;
    return (5.0 / 9) * (tempF - 32);
}

bool above99F(double tempF) {
    return tempF > 99;
}

double add(double a, double b) {
    return a + b;
}

// As Python prints a float: the shortest digits that read back the same, and ".0" if whole.
std::string py(double x) {
    char buf[32];
    std::string s(buf, std::to_chars(buf, buf + sizeof buf, x).ptr);
    if (s.find_first_of(".en") == std::string::npos) s += ".0";
    return s;
}

std::string py(const std::vector<double>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + py(v[i]);
    return s + "]";
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    const std::vector<int> temps{36, 37, 38, 39};

    // Python's map is lazy: nothing runs until list() asks; a view is the same.
    auto F = temps | std::views::transform(toFahrenheit);
    std::vector<double> F1(F.begin(), F.end());
    auto C = F1 | std::views::transform(toCentigrade);
    std::vector<double> C1(C.begin(), C.end());

    std::cout << "<map object at " << static_cast<const void*>(&F) << ">" << std::endl;
    std::cout << py(F1) << std::endl;
    std::cout << "=====" << std::endl;
    std::cout << py(F1) << std::endl;
    std::cout << py(C1) << std::endl;

    std::cout << "\n== the same over a Pool of 2 processes; this one is " << ::getpid() << std::endl;
    mp::Pool pool(2);
    auto PF = mp::parallel_map(pool, toFahrenheit, temps, 1);
    auto PC = mp::parallel_map(pool, toCentigrade, PF, 1);
    std::cout << py(PF) << std::endl;
    std::cout << py(PC) << std::endl;
    std::cout << "the work was done by pids";
    for (pid_t p : pool.pids()) std::cout << ' ' << p;
    std::cout << std::endl;
    std::cout << "filter, above 99 F: " << py(mp::parallel_filter(pool, above99F, PF)) << std::endl;
    std::cout << "reduce, sum of F: " << py(mp::parallel_reduce(pool, add, PF)) << std::endl;
    std::cout << "same as one process: " << (PF == F1 && PC == C1 ? "yes" : "no") << std::endl;
}
