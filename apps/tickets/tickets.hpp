// SPDX-License-Identifier: Apache-2.0
// The lecture's capstone: a Controller reads integers and sends each, under a ticket, to queue Q1;
// a Dispatcher takes them from Q1, has worker processes compute x^2 and x^4 (even x) or x^3 and
// x^5 (odd x), and puts the assembled answer back under the ticket, to the controller that asked.
//
// Both sides meet at a manager that the dispatcher serves: Q1 is its queue "requests", and each
// controller owns a reply queue of its own name, so it sees only its own tickets.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace tickets {

namespace mp = mprocess;

inline constexpr const char* kRequests = "requests";  // the lecture's Q1

// One number to work on. An empty ticket is a stop signal for the dispatcher (local mode).
struct Request {
    std::string reply_to;  // the asking controller's reply queue
    std::string ticket;    // "<controller pid>-<sequence>"
    std::string number;    // decimal, as the controller read it
    template <class Archive>
    void serialize(Archive& ar) {
        ar(reply_to, ticket, number);
    }
};

// The assembled results of one ticket, or why there are none.
struct Answer {
    std::string ticket;
    std::string number;
    std::vector<std::pair<unsigned, std::string>> powers;  // (exponent, decimal value)
    std::string error;                                     // empty if it worked
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ticket, number, powers, error);
    }
};

// ---- arithmetic (arithmetic.cpp), exact for integers of any size, as Python's

// Digits a number may have; x^5 of the longest has five times as many.
inline constexpr std::size_t kMaxDigits = 100'000;

// Python's int(text): optional blanks around, a sign, decimal digits with single underscores
// between them. The canonical decimal form, or nothing with the reason in `why`.
std::optional<std::string> parse_integer(std::string_view text, std::string& why);
// The lecture's dispatcher rule: even -> {2, 4}, odd -> {3, 5}. `number` is canonical.
std::pair<unsigned, unsigned> exponents_for(const std::string& number);
// number^exponent in decimal; a worker's task. Throws mp::ValueError for a malformed number.
std::string power(std::string number, unsigned exponent);

// ---- the two roles

// `digits` hex digits from a non-deterministic source (std::random_device): for names others must
// not guess.
std::string random_hex(std::size_t digits);

// What ends a role early: Ctrl-C or SIGTERM set it (see install_stop_handlers).
std::atomic<bool>& stop_requested();
// SIGINT and SIGTERM set stop_requested(), interrupting blocking reads (no SA_RESTART).
void install_stop_handlers();

struct DispatcherOptions {
    std::string address;  // where the manager listens: "host:port", "@name", "/path"
    std::string authkey;
    unsigned workers = 2;
    unsigned work_delay_ms = 0;  // each power takes at least this long (demos, tests)
    bool quiet = false;          // no line per ticket on stderr
    bool announce = true;        // say where it serves, and when it stops
    bool insecure = false;       // serve a TCP address without a key (the manager warns on stderr)
};

// Serves the manager and dispatches until stop_requested() or a stop request. When it stops,
// tickets in progress are finished and those still queued are answered as failed. `ready`, if
// open, receives the address once the manager listens. Returns the process exit code.
int run_dispatcher(const DispatcherOptions& options, mp::Connection ready = {});

struct ControllerOptions {
    std::string address;
    std::string authkey;
    std::vector<std::string> numbers;  // from the command line; empty: read standard input
    double wait_s = 60.0;              // after the input ends, how long to wait for answers
    bool quiet = false;                // print failures and the summary only
    bool stop_dispatcher = false;      // at the end, ask the dispatcher to stop (local mode)
    bool insecure = false;             // reach a TCP address without a key
};

// Reads numbers, sends them as tickets, prints the answers as they come and a summary line.
// Exit code: 0 if every ticket was answered, 1 if some failed, 2 if the dispatcher was unreachable.
int run_controller(const ControllerOptions& options);

}  // namespace tickets
