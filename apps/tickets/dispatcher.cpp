// SPDX-License-Identifier: Apache-2.0
// The Dispatcher: serves the manager (Q1 and the reply queues) in a thread of its own process,
// takes tickets from Q1 and fans each number out to a Pool as two tasks, one per power.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "tickets.hpp"

namespace tickets {

namespace {

std::atomic<bool> stop_flag{false};

extern "C" void on_stop_signal(int) {
    stop_flag.store(true);
}

// A worker's task: one power of one number.
std::string work(std::string number, unsigned exponent, unsigned delay_ms) {
    if (delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    return power(std::move(number), exponent);
}

// Ctrl-C at a terminal reaches the whole process group: workers leave it to the dispatcher,
// which finishes their tickets before it stops them.
void ignore_interrupts() {
    ::signal(SIGINT, SIG_IGN);
    ::signal(SIGTERM, SIG_DFL);  // the dispatcher's handler, inherited: the Pool stops workers with it
}

constexpr int kAttempts = 3;  // a ticket whose worker dies is tried again, up to this many times

class Dispatcher {
public:
    Dispatcher(const DispatcherOptions& o, mp::BaseManager& manager)
        : o_(o),
          manager_(manager),
          window_(std::max<std::size_t>(16, 8 * std::size_t{o.workers})),
          pool_(o.workers, {.initializer = mp::Initializer(ignore_interrupts)}) {}

    // Takes tickets until stopped; then finishes or fails every ticket it holds.
    void run() {
        auto requests = manager_.Queue<Request>(kRequests);
        while (!stop_flag.load()) {
            {
                // A bounded number of tickets in the pool keeps the rest in Q1: fair between
                // controllers, and answered as failed at once if the dispatcher stops.
                std::unique_lock lock(m_);
                if (!room_.wait_for(lock, std::chrono::milliseconds(200), [&] { return pending_.size() < window_; }))
                    continue;
            }
            Request r;
            try {
                r = requests.get(true, 0.2);
            } catch (const mp::Empty&) {
                continue;
            } catch (const mp::DecodeError& e) {  // not a Request: a peer's mistake, dropped
                std::cerr << "dispatcher: dropped a malformed request: " << e.what() << std::endl;
                continue;
            }
            if (r.ticket.empty()) break;                 // a stop request
            if (r.reply_to.rfind("replies/", 0) != 0) {  // an answer must never land in Q1 itself
                std::cerr << "dispatcher: dropped ticket " << r.ticket.substr(0, 40)
                          << ": its reply queue is not a controller's" << std::endl;
                continue;
            }
            start(std::move(r));
        }
        // Tickets in progress finish (each takes a worker some microseconds, or work_delay);
        // those still in Q1 are answered as failed, so that no controller waits in vain.
        {
            std::unique_lock lock(m_);
            room_.wait_for(lock, std::chrono::seconds(30), [&] { return pending_.empty(); });
        }
        for (;;) {
            try {
                auto r = requests.get_nowait();
                if (!r.ticket.empty() && r.reply_to.rfind("replies/", 0) == 0)
                    reply(r.reply_to, failure(r, "the dispatcher stopped before this ticket"));
            } catch (const mp::Empty&) {
                break;
            } catch (const mp::DecodeError&) {  // not a Request: dropped, as while serving
            } catch (const std::exception& e) {
                std::cerr << "dispatcher: " << e.what() << std::endl;
                break;
            }
        }
        pool_.terminate();  // the tickets it still holds fail through failed()
        // Answers are read by their controllers before the server goes (at most 5 s).
        const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (std::chrono::steady_clock::now() < end && !delivered()) ::usleep(20'000);
    }

private:
    struct Pending {
        Request request;
        std::pair<unsigned, unsigned> exponents;
        std::string results[2];
        int left = 2;
        int attempts[2] = {0, 0};
    };

    // Whether every reply queue this dispatcher answered has been emptied (or released).
    bool delivered() {
        std::lock_guard lock(replies_m_);
        for (auto it = replies_.begin(); it != replies_.end();) {
            try {
                if (it->second.qsize() != 0) return false;
            } catch (const std::exception&) {  // released by its controller, or the server is gone
            }
            it = replies_.erase(it);
        }
        return true;
    }

    static Answer failure(const Request& r, std::string why) { return Answer{r.ticket, r.number, {}, std::move(why)}; }

    void start(Request r) {
        std::string why;
        auto number = parse_integer(r.number, why);
        if (!number) {  // the controller checks, but the dispatcher trusts no peer
            reply(r.reply_to, failure(r, why));
            return;
        }
        r.number = *number;
        const std::string key = r.reply_to + '\n' + r.ticket;
        {
            std::lock_guard lock(m_);
            auto& p = pending_[key];
            p.request = std::move(r);
            p.exponents = exponents_for(p.request.number);
        }
        submit(key, 0);
        submit(key, 1);
    }

    // A power of a pending ticket to the pool; if the pool refuses it, the ticket fails.
    void submit(const std::string& key, int slot) {
        std::string number;
        unsigned exponent;
        {
            std::lock_guard lock(m_);
            auto it = pending_.find(key);
            if (it == pending_.end()) return;  // already failed
            ++it->second.attempts[slot];
            number = it->second.request.number;
            exponent = slot == 0 ? it->second.exponents.first : it->second.exponents.second;
        }
        try {
            auto task = pool_.apply_async(work, number, exponent, o_.work_delay_ms);
            task.callback([this, key, slot](const std::string& value) { done(key, slot, value); });
            task.error_callback([this, key, slot](const std::exception& e) { failed(key, slot, e, false); });
        } catch (const std::exception& e) {
            failed(key, slot, e, true);
        }
    }

    // Callbacks run one at a time in the pool's manager thread.
    void done(const std::string& key, int slot, const std::string& value) {
        std::unique_lock lock(m_);
        auto it = pending_.find(key);
        if (it == pending_.end()) return;
        it->second.results[slot] = value;
        if (--it->second.left > 0) return;
        Pending p = std::move(it->second);
        pending_.erase(it);
        Answer a{p.request.ticket,
                 p.request.number,
                 {{p.exponents.first, std::move(p.results[0])}, {p.exponents.second, std::move(p.results[1])}},
                 ""};
        room_.notify_all();
        lock.unlock();
        reply(p.request.reply_to, a);
    }

    void failed(const std::string& key, int slot, const std::exception& e, bool refused) {
        std::unique_lock lock(m_);
        auto it = pending_.find(key);
        if (it == pending_.end()) return;
        const bool lost = dynamic_cast<const mp::WorkerLost*>(&e) != nullptr;
        if (lost && !refused && it->second.attempts[slot] < kAttempts && !stop_flag.load()) {
            std::cerr << "dispatcher: " << e.what() << "; ticket " << it->second.request.ticket << " is tried again"
                      << std::endl;
            lock.unlock();
            submit(key, slot);
            return;
        }
        Request r = std::move(it->second.request);
        pending_.erase(it);
        room_.notify_all();
        lock.unlock();
        reply(r.reply_to, failure(r, e.what()));
    }

    // Puts the answer on the asking controller's queue. One that has gone away loses nothing
    // but its own answers.
    void reply(const std::string& to, const Answer& a) {
        try {
            std::unique_lock lock(replies_m_);
            if (released_.count(to)) return;  // its controller has gone: made again, it would leak
            auto it = replies_.find(to);
            if (it == replies_.end()) it = replies_.emplace(to, manager_.Queue<Answer>(to)).first;
            auto q = it->second;
            lock.unlock();
            try {
                q.put(a);
            } catch (const mp::RemoteError&) {  // its controller released the queue: it has gone
                std::lock_guard again(replies_m_);
                replies_.erase(to);
                released_.insert(to);
                throw;
            }
            if (!o_.quiet)
                std::cerr << "dispatcher: ticket " << a.ticket
                          << (a.error.empty() ? " answered" : " failed: " + a.error) << std::endl;
        } catch (const std::exception& e) {
            std::cerr << "dispatcher: cannot answer ticket " << a.ticket << ": " << e.what() << std::endl;
        }
    }

    const DispatcherOptions& o_;
    mp::BaseManager& manager_;
    const std::size_t window_;
    std::mutex m_;
    std::condition_variable room_;            // pending_ shrank
    std::map<std::string, Pending> pending_;  // by reply queue and ticket
    std::mutex replies_m_;
    std::map<std::string, mp::QueueProxy<Answer>> replies_;
    std::set<std::string> released_;  // reply queues whose controllers have gone
    // Last, so that it goes first: its callbacks use everything above.
    mp::Pool pool_;
};

}  // namespace

std::atomic<bool>& stop_requested() {
    return stop_flag;
}

void install_stop_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a blocking read ends with EINTR
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
}

int run_dispatcher(const DispatcherOptions& o, mp::Connection ready) {
    try {
        mp::BaseManager manager(o.address, {.authkey = o.authkey, .insecure = o.insecure});
        manager.register_queue(kRequests);
        auto server = manager.get_server();  // listens from here on
        // The dispatcher is a client of its own server, like any controller. Its workers start
        // before the server's threads do.
        mp::BaseManager client(server.address(), {.authkey = o.authkey, .insecure = o.insecure});
        Dispatcher dispatcher(o, client);
        std::thread serving([&] { server.serve_forever(); });
        struct Stop {
            mp::ManagerServer& s;
            std::thread& t;
            ~Stop() {
                s.stop();
                t.join();
            }
        } stop{server, serving};
        client.connect();
        if (o.announce)
            std::cout << "dispatcher: serving on " << server.address() << " with " << o.workers
                      << " worker processes; Ctrl-C stops it" << std::endl;
        if (!ready.closed()) ready.send(server.address());
        dispatcher.run();
        if (o.announce) std::cout << "dispatcher: stopped" << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "dispatcher: " << e.what() << std::endl;
        return 2;
    }
}

}  // namespace tickets
