// SPDX-License-Identifier: Apache-2.0
// A manager serving a job queue and a result queue on a TCP address; workers connect to it from
// elsewhere (other processes here, or other machines):
//
//     remote_queue                          all of it here: a server, two workers, a submitter
//     remote_queue serve 0.0.0.0:5000       the server, until a submitter says stop
//     remote_queue worker HOST:5000         a worker: squares jobs until told to stop
//     remote_queue submit HOST:5000 N W     N jobs, then stops W workers and the server
//
// The key comes from MPROCESS_AUTHKEY (default "lecture").
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

using Result = std::tuple<long, long, int>;  // job, its square, the worker's pid

std::string authkey() {
    const char* k = std::getenv("MPROCESS_AUTHKEY");
    return k && *k ? k : "lecture";
}

void worker(std::string address) {
    mp::BaseManager m(address, {.authkey = authkey()});
    m.connect();
    auto jobs = m.Queue<long>("jobs");
    auto results = m.Queue<Result>("results");
    for (long x; (x = jobs.get()) >= 0;) results.put(Result{x, x * x, static_cast<int>(::getpid())});
}

// Puts n jobs and prints their results; then stops `workers` workers, and the server if asked.
void submit(const std::string& address, long n, int workers, bool stop_server) {
    mp::BaseManager m(address, {.authkey = authkey()});
    m.connect();
    auto jobs = m.Queue<long>("jobs");
    auto results = m.Queue<Result>("results");
    for (long x = 1; x <= n; ++x) jobs.put(x);
    std::map<long, Result> got;
    while (static_cast<long>(got.size()) < n) {
        auto r = results.get();
        got[std::get<0>(r)] = r;
    }
    std::map<int, int> per_worker;
    for (auto& [x, r] : got) {
        std::cout << "job " << x << " -> " << std::get<1>(r) << " (worker " << std::get<2>(r) << ")" << std::endl;
        ++per_worker[std::get<2>(r)];
    }
    std::cout << n << " results from " << per_worker.size() << " worker(s)" << std::endl;
    for (int i = 0; i < workers; ++i) jobs.put(-1);
    if (!stop_server) return;
    while (jobs.qsize() != 0) ::usleep(10000);  // every worker has taken its stop
    m.shutdown();
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "serve") {
        mp::BaseManager m(args[1], {.authkey = authkey()});
        std::cout << "serving jobs and results on " << args[1] << std::endl;
        m.serve_forever();
        return 0;
    }
    if (args.size() == 2 && args[0] == "worker") {
        worker(args[1]);
        return 0;
    }
    if (args.size() == 4 && args[0] == "submit") {
        submit(args[1], std::atol(args[2].c_str()), std::atoi(args[3].c_str()), true);
        return 0;
    }
    if (!args.empty()) {
        std::cerr << "usage: remote_queue | serve HOST:PORT | worker HOST:PORT | submit HOST:PORT N WORKERS\n";
        return 2;
    }

    mp::BaseManager server("127.0.0.1:0", {.authkey = authkey()});
    server.start();
    std::cout << "server: jobs and results on " << server.address() << std::endl;
    std::vector<mp::Process> workers;
    for (int i = 0; i < 2; ++i) {
        workers.emplace_back(worker, server.address());
        workers.back().start();
    }
    submit(server.address(), 10, 2, false);
    for (auto& w : workers) w.join();
    server.shutdown();
    return 0;
}
