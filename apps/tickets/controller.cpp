// SPDX-License-Identifier: Apache-2.0
// The Controller: reads integers, sends each under a ticket to Q1, and prints the answers as they
// come back on its own reply queue, with a summary line at the end.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "tickets.hpp"

namespace tickets {

namespace {

using Clock = std::chrono::steady_clock;

// Lines from standard input; a signal (Ctrl-C) ends the input as end of file does. A line longer
// than any number we take is cut: its first bytes and the rest skipped, so memory stays bounded.
class LineReader {
public:
    static constexpr std::size_t kLongest = kMaxDigits + 1024;

    std::optional<std::string> next() {
        for (;;) {
            if (auto nl = buf_.find('\n'); nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                if (std::exchange(skipping_, false)) continue;  // the tail of a line already cut
                return line;
            }
            if (buf_.size() > kLongest) {
                if (!skipping_) {
                    skipping_ = true;
                    std::string head = buf_.substr(0, kLongest);
                    buf_.clear();
                    return head;  // too long: refused by parse_integer
                }
                buf_.clear();
            }
            if (eof_ || stop_requested().load()) {
                if (buf_.empty() || skipping_ || stop_requested().load()) return std::nullopt;
                return std::exchange(buf_, {});
            }
            char chunk[65536];
            const ssize_t n = ::read(0, chunk, sizeof chunk);
            if (n > 0)
                buf_.append(chunk, static_cast<std::size_t>(n));
            else if (n == 0 || errno != EINTR)
                eof_ = true;
        }
    }

private:
    std::string buf_;
    bool eof_ = false;
    bool skipping_ = false;
};

std::string host_name() {
    char h[256] = {};
    ::gethostname(h, sizeof h - 1);
    return h;
}

class Controller {
public:
    explicit Controller(const ControllerOptions& o) : o_(o), tty_(::isatty(0) && o.numbers.empty()) {}

    int run() {
        mp::BaseManager manager(o_.address, {.authkey = o_.authkey, .insecure = o_.insecure});
        try {
            manager.connect();
        } catch (const mp::AuthenticationError& e) {
            std::cerr << "controller: the dispatcher at " << o_.address << " refused our key: " << e.what() << "\n";
            return 2;
        } catch (const mp::ServerBusy& e) {
            std::cerr << "controller: the dispatcher at " << o_.address << " is busy: " << e.what() << "\n";
            return 2;
        } catch (const std::exception& e) {
            std::cerr << "controller: cannot reach the dispatcher at " << o_.address << ": " << e.what() << "\n";
            return 2;
        }
        const std::string me = std::to_string(::getpid());
        // A reply queue of our own: pids repeat across machines, so the host and a random tail
        // make the name ours alone.
        const std::string reply_to = "replies/" + host_name() + "/" + me + "/" + random_hex(12);
        auto requests = manager.Queue<Request>(kRequests);
        replies_ = manager.Queue<Answer>(reply_to);
        std::thread reader([this] { read_answers(); });
        // However this ends, the reader stops and is joined, and the reply queue is given back.
        struct Finally {
            Controller& c;
            std::thread& reader;
            mp::BaseManager& manager;
            const std::string& queue;
            ~Finally() {
                {
                    std::lock_guard lock(c.m_);
                    c.input_done_ = true;
                    c.deadline_ = Clock::now();
                }
                if (reader.joinable()) reader.join();
                try {
                    manager.release(queue);
                } catch (const std::exception&) {
                }
            }
        } finally{*this, reader, manager, reply_to};

        LineReader stdin_lines;
        std::size_t next_arg = 0;
        auto next_line = [&]() -> std::optional<std::string> {
            if (!o_.numbers.empty()) {
                if (next_arg == o_.numbers.size() || stop_requested().load()) return std::nullopt;
                return o_.numbers[next_arg++];
            }
            return stdin_lines.next();
        };
        unsigned long seq = 0;
        prompt();
        while (auto line = next_line()) {
            entered();
            std::string why;
            auto number = parse_integer(*line, why);
            if (!number) {
                if (why != "empty input") {  // a blank line is no request
                    std::string shown = line->size() > 60 ? line->substr(0, 60) + "..." : *line;
                    say("'" + shown + "' is " + (why == "not an integer" ? "not an integer" : why) +
                        ": type a whole number such as 42 or -7");
                }
                prompt();
                continue;
            }
            const std::string ticket = me + "-" + std::to_string(++seq);
            {
                std::lock_guard lock(m_);
                if (gone_) break;
                if (outstanding_.empty() && sent_ == 0) first_sent_ = Clock::now();
                outstanding_[ticket] = {*number, Clock::now()};
                ++sent_;
            }
            try {
                requests.put(Request{reply_to, ticket, *number});
            } catch (const std::exception& e) {
                lost("the dispatcher went away (" + std::string(e.what()) + ")");
                break;
            }
            if (tty_) {
                std::lock_guard lock(m_);
                std::cout << "sent ticket " << ticket << std::endl;
            }
            prompt();
        }
        if (tty_) {
            std::lock_guard lock(m_);
            prompt_shown_ = false;  // what follows is no longer typed at it
            std::cout << std::endl;
        }
        {
            // Answers still on their way get o_.wait_s after the input ends (2 s after Ctrl-C).
            std::unique_lock lock(m_);
            input_done_ = true;
            deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                           stop_requested().load() ? std::min(2.0, o_.wait_s) : o_.wait_s));
        }
        reader.join();
        lost("no answer within " + std::to_string(static_cast<int>(o_.wait_s)) + " s");
        if (o_.stop_dispatcher) {
            try {
                requests.put(Request{});
            } catch (const std::exception&) {
            }
        }
        summary();
        return failed_ == 0 ? 0 : 1;
    }

private:
    struct Sent {
        std::string number;
        Clock::time_point at;
    };

    // The prompt is drawn once per line the user is to type: answers printed while it is up draw
    // it again below them, and the loop draws it after each line typed.
    void prompt() {
        if (!tty_) return;
        std::lock_guard lock(m_);
        if (std::exchange(prompt_shown_, true)) return;
        std::cout << "number> " << std::flush;
    }

    // The user ended a line (Enter): the terminal moved below the prompt.
    void entered() {
        std::lock_guard lock(m_);
        prompt_shown_ = false;
    }

    // A line of the session; at a terminal, above the prompt if it is up, which is drawn again.
    void say(const std::string& text) {
        std::lock_guard lock(m_);
        if (tty_) std::cout << "\r\033[K";
        std::cout << text << "\n";
        if (tty_ && prompt_shown_) std::cout << "number> ";
        std::cout << std::flush;
    }

    void read_answers() {
        try {
            read_answers_until_done();
        } catch (const std::exception& e) {  // an answer this controller cannot read
            {
                std::lock_guard lock(m_);
                gone_ = true;  // nothing reads the answers any more: stop sending
            }
            lost(std::string("the dispatcher's answers cannot be read (") + e.what() + ")");
        }
    }

    void read_answers_until_done() {
        for (;;) {
            {
                std::lock_guard lock(m_);
                if (gone_ || (input_done_ && (outstanding_.empty() || Clock::now() >= deadline_))) return;
            }
            Answer a;
            try {
                a = replies_.get(true, 0.2);
            } catch (const mp::Empty&) {
                continue;
            } catch (const mp::DecodeError&) {
                throw;
            } catch (const std::exception& e) {
                lost("the dispatcher went away (" + std::string(e.what()) + ")");
                return;
            }
            if (a.error.empty() && a.powers.size() != 2) a.error = "a malformed answer";
            Sent s;
            {
                std::lock_guard lock(m_);
                auto it = outstanding_.find(a.ticket);
                if (it == outstanding_.end()) continue;  // not ours, or already given up on
                s = std::move(it->second);
                outstanding_.erase(it);
                last_answer_ = Clock::now();
                latencies_.push_back(std::chrono::duration<double, std::milli>(last_answer_ - s.at).count());
                (a.error.empty() ? answered_ : failed_)++;
            }
            if (!a.error.empty()) {
                say("ticket " + a.ticket + ": " + s.number + " failed: " + a.error);
            } else if (!o_.quiet) {
                std::string line = "ticket " + a.ticket + ": " + s.number + " is " +
                                   (a.powers.at(0).first == 2 ? "even" : "odd") + ":";
                for (std::size_t i = 0; i < a.powers.size(); ++i)
                    line += (i ? ", x^" : " x^") + std::to_string(a.powers[i].first) + " = " + a.powers[i].second;
                say(line);
            }
        }
    }

    // Every ticket not answered yet is reported as failed, with the reason.
    void lost(const std::string& why) {
        std::map<std::string, Sent> left;
        {
            std::lock_guard lock(m_);
            left.swap(outstanding_);
            failed_ += left.size();
            if (why.rfind("the dispatcher went away", 0) == 0) gone_ = true;
        }
        for (auto& [ticket, s] : left) say("ticket " + ticket + ": " + s.number + " failed: " + why);
    }

    void summary() {
        std::lock_guard lock(m_);
        std::ostringstream out;
        out << "summary: " << sent_ << " tickets, " << answered_ << " answered, " << failed_ << " failed";
        if (!latencies_.empty()) {
            std::sort(latencies_.begin(), latencies_.end());
            double sum = 0;
            for (double l : latencies_) sum += l;
            const std::size_t p99 = std::min(latencies_.size() - 1, (latencies_.size() * 99 + 99) / 100 - 1);
            const double span = std::chrono::duration<double>(last_answer_ - first_sent_).count();
            out << std::fixed << std::setprecision(2) << "; latency avg " << sum / latencies_.size() << " ms, p99 "
                << latencies_[p99] << " ms";
            // A rate over the time someone took to type says nothing: only input that came at once
            // (a pipe, a file, the command line) measures the dispatcher.
            if (!tty_ && span > 0) out << std::setprecision(0) << "; " << latencies_.size() / span << " tickets/s";
        }
        std::cout << out.str() << std::endl;
    }

    const ControllerOptions& o_;
    const bool tty_;
    mp::QueueProxy<Answer> replies_;
    std::mutex m_;  // everything below, and the terminal
    std::map<std::string, Sent> outstanding_;
    std::vector<double> latencies_;  // ms, of the tickets answered
    std::size_t sent_ = 0, answered_ = 0, failed_ = 0;
    Clock::time_point first_sent_{}, last_answer_{}, deadline_{};
    bool input_done_ = false;
    bool gone_ = false;
    bool prompt_shown_ = false;  // the last thing on the terminal is "number> " (tty_ only)
};

}  // namespace

std::string random_hex(std::size_t digits) {
    static constexpr char hex[] = "0123456789abcdef";
    std::random_device source;  // libstdc++: the CPU's or the kernel's entropy, never a seeded generator
    std::string out;
    while (out.size() < digits)
        for (unsigned n = source(), i = 0; i < 8 && out.size() < digits; ++i, n >>= 4) out += hex[n & 15];
    return out;
}

int run_controller(const ControllerOptions& options) {
    try {
        return Controller(options).run();
    } catch (const std::exception& e) {
        std::cerr << "controller: " << e.what() << std::endl;
        return 2;
    }
}

}  // namespace tickets
