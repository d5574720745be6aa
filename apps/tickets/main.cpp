// SPDX-License-Identifier: Apache-2.0
// tickets: the lecture's Controller and Dispatcher. See --help.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "tickets.hpp"

namespace {

namespace mp = mprocess;
using namespace tickets;

constexpr const char* kUsage = R"(tickets: the lecture's Controller and Dispatcher, over mprocess.

The controller reads integers and sends each under a ticket (its pid and a number) to queue Q1.
The dispatcher takes them, has worker processes compute x^2 and x^4 of an even x, or x^3 and x^5
of an odd one, exactly, however large, and sends the results back under the ticket.

Usage:
  tickets [options] [NUMBER...]
      All on this machine: starts a dispatcher and its workers, then runs a controller.
      Numbers come from the command line, else from standard input, one per line (with a
      prompt at a terminal). End the input with Ctrl-D; Ctrl-C stops too.
  tickets dispatcher --listen ADDRESS [options]
      Serves Q1 at ADDRESS ("0.0.0.0:5000", "127.0.0.1:0", "@name", "/path") until Ctrl-C.
  tickets controller --connect ADDRESS [options] [NUMBER...]
      A controller for a dispatcher elsewhere; many may run at once, each sees its own tickets.

Options:
  --workers N        worker processes of the dispatcher (default: the number of CPUs, at least 2)
  --authkey-file F   the shared key, for TCP addresses (or set TICKETS_AUTHKEY); the key
                     authenticates both sides but does not encrypt: use a trusted network or a tunnel
  --insecure         no key on a TCP address: a dispatcher serves anyone who can reach it (who may
                     send tickets and stop its manager); a controller trusts whoever answers there
  --wait S           after the input ends, seconds to wait for answers (default 60)
  --work-delay MS    every power takes at least MS ms (to watch tickets in flight, or to test)
  --quiet            print only failures and the summary (controller), no log (dispatcher)
  --help             this text

Exit status: 0 every ticket answered; 1 some failed; 2 the dispatcher could not be reached or started.
)";

struct Args {
    std::string mode = "local";
    std::string address;
    std::string authkey_file;
    unsigned workers = 0;
    unsigned work_delay_ms = 0;
    double wait_s = 60.0;
    bool quiet = false;
    bool insecure = false;
    std::vector<std::string> numbers;
};

[[noreturn]] void usage_error(const std::string& what) {
    std::cerr << "tickets: " << what << "\nTry 'tickets --help'.\n";
    std::exit(2);
}

unsigned to_unsigned(const std::string& opt, const std::string& v) {
    std::string why;
    auto n = parse_integer(v, why);
    if (!n || (*n)[0] == '-' || n->size() > 6) usage_error(opt + " needs a whole number, not '" + v + "'");
    return static_cast<unsigned>(std::stoul(*n));
}

Args parse(int argc, char** argv) {
    Args a;
    int i = 1;
    if (i < argc && (std::string(argv[i]) == "dispatcher" || std::string(argv[i]) == "controller")) a.mode = argv[i++];
    bool options_end = false;
    for (; i < argc; ++i) {
        const std::string arg = argv[i];
        std::string why;
        // A negative number is a number, not an option.
        if (options_end || arg.empty() || arg[0] != '-' || parse_integer(arg, why)) {
            a.numbers.push_back(arg);
            continue;
        }
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage_error(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            std::cout << kUsage;
            std::exit(0);
        } else if (arg == "--") {
            options_end = true;
        } else if (arg == "--listen" && a.mode == "dispatcher") {
            a.address = value();
        } else if (arg == "--connect" && a.mode == "controller") {
            a.address = value();
        } else if (arg == "--workers") {
            a.workers = to_unsigned(arg, value());
            if (a.workers == 0) usage_error("--workers needs at least 1");
        } else if (arg == "--work-delay") {
            a.work_delay_ms = to_unsigned(arg, value());
        } else if (arg == "--wait") {
            a.wait_s = to_unsigned(arg, value());
        } else if (arg == "--authkey-file") {
            a.authkey_file = value();
        } else if (arg == "--quiet") {
            a.quiet = true;
        } else if (arg == "--insecure" && a.mode != "local") {
            a.insecure = true;
        } else {
            usage_error("unknown option '" + arg + "'");
        }
    }
    if (a.mode != "local" && a.address.empty())
        usage_error(a.mode == "dispatcher" ? "the dispatcher needs --listen ADDRESS"
                                           : "the controller needs --connect ADDRESS");
    if (a.mode == "dispatcher" && !a.numbers.empty()) usage_error("the dispatcher takes no numbers");
    if (a.workers == 0) a.workers = static_cast<unsigned>(std::max(2, mp::cpu_count()));
    return a;
}

std::string read_authkey(const Args& a) {
    if (!a.authkey_file.empty()) {
        std::ifstream in(a.authkey_file, std::ios::binary);
        if (!in) usage_error("cannot read the key file '" + a.authkey_file + "'");
        std::ostringstream s;
        s << in.rdbuf();
        std::string key = s.str();
        while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
        if (key.empty()) usage_error("the key file '" + a.authkey_file + "' is empty");
        return key;
    }
    const char* env = std::getenv("TICKETS_AUTHKEY");
    return env ? env : "";
}

// Without a key a TCP address is open to anyone who reaches it: only with --insecure. (The
// manager's own rule tells a TCP address from a Unix one; making one neither listens nor connects.)
void refuse_keyless_tcp(const Args& a, const std::string& key) {
    try {
        mp::BaseManager rule(a.address, {.authkey = key, .insecure = a.insecure});
    } catch (const mp::ValueError&) {
        usage_error("without a key, " +
                    (a.mode == "dispatcher"
                         ? "anyone who can reach " + a.address + " could send tickets and stop the dispatcher"
                         : "whoever answers at " + a.address + " would get our numbers") +
                    ": give the key with --authkey-file F or TICKETS_AUTHKEY, or go without one with --insecure");
    }
}

void dispatcher_child(std::string address, std::string authkey, unsigned workers, unsigned delay,
                      mp::Connection ready) {
    // Ctrl-C at the terminal reaches this process too; the controller decides when it stops.
    ::signal(SIGINT, SIG_IGN);
    mp::exit(run_dispatcher({address, authkey, workers, delay, true, false}, ready));
}

// All on this machine: the dispatcher in a child process on a private address and key (this
// process's authkey, which its children inherit), and a controller here. The address is random:
// an abstract name is open to every user, and one made from the pid could be taken first.
int run_local(const Args& a) {
    const std::string address = "@tickets-" + random_hex(32);
    const std::string key = mp::current_process().authkey();
    auto [ready, ready_there] = mp::Pipe(false);
    mp::Process dispatcher(dispatcher_child, {.name = "Dispatcher", .die_with_parent = true}, address, key, a.workers,
                           a.work_delay_ms, ready_there);
    try {
        dispatcher.start();
    } catch (const std::exception& e) {
        std::cerr << "tickets: cannot start the dispatcher: " << e.what() << "\n";
        return 2;
    }
    ready_there.close();
    std::string where;
    try {
        if (ready.poll(30.0)) where = ready.recv<std::string>();
    } catch (const mp::Error&) {
    }
    if (where.empty()) {
        std::cerr << "tickets: the dispatcher did not start\n";
        dispatcher.terminate();
        dispatcher.join();
        return 2;
    }
    install_stop_handlers();
    const int code = run_controller({where, key, a.numbers, a.wait_s, a.quiet, true});
    if (!dispatcher.join(30.0)) {
        dispatcher.terminate();
        dispatcher.join();
    }
    return code;
}

}  // namespace

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    const Args a = parse(argc, argv);
    if (a.mode == "local") return run_local(a);
    const std::string key = read_authkey(a);
    refuse_keyless_tcp(a, key);
    install_stop_handlers();
    if (a.mode == "dispatcher") {
        // Workers ignore Ctrl-C (the dispatcher stops them once their tickets are done).
        return run_dispatcher({a.address, key, a.workers, a.work_delay_ms, a.quiet, true, a.insecure});
    }
    return run_controller({a.address, key, a.numbers, a.wait_s, a.quiet, false, a.insecure});
}
