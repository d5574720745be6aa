// The manager's server and the proxies' calls.
//
// A call is one request and one reply on a Client connection: (object id, method, encoded
// arguments) -> (status, error type, error message, encoded results). Each client thread has its
// own connection (a blocking get() holds only its own), made again in a child process. The server
// serves each connection in its own thread; objects keep items as encoded messages. A waiting
// call looks every 100 ms whether its client is still there, so a dead client's call ends.
//
// Admission. After the Listener's handshake the server speaks first, with a reply of the same
// shape: status 0, the connection is served; or status 1 and "ServerBusy", when the address
// serves kMaxConnections already (the client raises ServerBusy), and the server closes it. Only
// authenticated connections count, and each address (the TCP port, its local door) counts its
// own, so strangers that never finish a handshake cannot lock a client out.
#include "mprocess/manager.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <list>
#include <mutex>
#include <set>
#include <thread>

#include "channel/channel.hpp"
#include "channel/handshake.hpp"
#include "mprocess/process.hpp"
#include "platform/posix.hpp"
#include "platform/socket.hpp"
#include "resource_tracker.hpp"
#include "channel/shm_channel.hpp"
#include "channel/socket_channel.hpp"

namespace mprocess {

namespace detail {

namespace {

using Request = std::tuple<std::string, std::string, std::vector<std::string>>;
using Reply = std::tuple<std::uint8_t, std::string, std::string, std::vector<std::string>>;
using Results = std::vector<std::string>;

constexpr auto kLook = std::chrono::milliseconds(100);  // how often a waiting call checks its client

bool is_unix_address(const std::string& a) {
    return !a.empty() && (a[0] == '@' || a[0] == '/' || a[0] == '.' || a.rfind("unix:", 0) == 0);
}

// The key of a TCP server's local door: derived from its key and the door's name, so that a
// handshake made for the door cannot be passed on to the TCP port (or to another door).
std::string door_key(const std::string& authkey, const std::string& door) {
    return hmac_sha256(authkey, "mprocess manager local door " + door);
}

std::string hex(const std::string& bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : bytes) {
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

// An error for the caller, with Python's name for it.
struct Fail {
    std::string type, message;
};

// What a method needs besides its arguments: who calls, and whether to give up waiting.
class Caller {
public:
    Caller(Connection& conn, std::atomic<bool>& stopping, std::uint64_t id)
        : conn_(conn), stopping_(stopping), id_(id) {}
    // The client left, or the server stops. A client sends its next request only once it has
    // the reply (proxies never pipeline), so a connection readable while its call waits shows
    // end of file, or a client that broke the protocol: either way the call ends.
    bool gone() { return stopping_.load() || conn_.poll(0.0); }
    std::uint64_t id() const noexcept { return id_; }
    // The object the call is on: if it is released meanwhile, a waiting call ends.
    void watch(const std::atomic<bool>* released) noexcept { released_ = released; }

    // Waits on cv until pred or the timeout (false then); Fail if the client or server goes.
    template <class Pred>
    bool wait(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, const Timeout& timeout, Pred pred) {
        if (pred()) return true;
        if (timeout.duration().count() == 0) return false;  // not blocking
        const auto end = timeout.deadline();
        while (!pred()) {
            if (released_ && released_->load())
                throw Fail{"KeyError", "the object was released while this call waited"};
            if (end && std::chrono::steady_clock::now() >= *end) return false;
            cv.wait_for(lock, kLook);
            if (!pred()) {
                lock.unlock();
                const bool left = gone();
                lock.lock();
                if (left) throw Fail{"EOFError", "the caller or the server went away while waiting"};
            }
        }
        return true;
    }

private:
    Connection& conn_;
    std::atomic<bool>& stopping_;
    std::uint64_t id_;
    const std::atomic<bool>* released_ = nullptr;
};

Timeout timeout_of(const Results& a, std::size_t i) {
    const auto ns = std::chrono::nanoseconds(decode<std::int64_t>(a.at(i)));
    return ns == ns.max() ? forever : Timeout(ns);
}

class Object {
public:
    virtual ~Object() = default;
    virtual Results call(Op method, const Results& args, Caller& caller) = 0;
    // Python's name for its type, in errors.
    virtual std::string_view python_name() const = 0;
    virtual void left(std::uint64_t /*connection*/) {}
    virtual void wake_all() {}
    std::atomic<bool> released{false};

    [[noreturn]] void no_method(std::string_view method) const {
        throw Fail{"AttributeError",
                   "'" + std::string(python_name()) + "' object has no method '" + std::string(method) + "'"};
    }
};

class QueueObject final : public Object {
public:
    std::string_view python_name() const override { return joinable_ ? "JoinableQueue" : "Queue"; }
    QueueObject(std::size_t maxsize, bool joinable) : maxsize_(maxsize), joinable_(joinable) {}
    Results call(Op m, const Results& a, Caller& c) override {
        std::unique_lock lock(m_);
        if (m == Op::put) {
            if (!c.wait(lock, cv_, timeout_of(a, 1), [&] { return maxsize_ == 0 || items_.size() < maxsize_; }))
                throw Fail{"Full", "the queue is full"};
            items_.push_back(a.at(0));
            ++unfinished_;
            cv_.notify_all();
            return {};
        }
        if (m == Op::get) {
            if (!c.wait(lock, cv_, timeout_of(a, 0), [&] { return !items_.empty(); }))
                throw Fail{"Empty", "the queue is empty"};
            std::string item = std::move(items_.front());
            items_.pop_front();
            cv_.notify_all();
            return {std::move(item)};
        }
        if (m == Op::qsize) return {encode(std::uint64_t{items_.size()})};
        if (m == Op::full) return {encode(maxsize_ != 0 && items_.size() >= maxsize_)};
        if (m == Op::task_done && joinable_) {
            if (unfinished_ == 0) throw Fail{"ValueError", "task_done() called too many times"};
            if (--unfinished_ == 0) cv_.notify_all();
            return {};
        }
        if (m == Op::join && joinable_) {
            c.wait(lock, cv_, forever, [&] { return unfinished_ == 0; });
            return {};
        }
        no_method(name_of(m));
    }
    void wake_all() override { cv_.notify_all(); }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::string> items_;
    const std::size_t maxsize_;
    const bool joinable_;
    std::size_t unfinished_ = 0;
};

class DictObject final : public Object {
public:
    std::string_view python_name() const override { return "dict"; }
    Results call(Op m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        if (m == Op::get || m == Op::get_or_none) {
            auto it = map_.find(a.at(0));
            if (it != map_.end()) return {it->second};
            if (m == Op::get_or_none) return {};
            throw Fail{"KeyError", "no such key in the dict"};
        }
        if (m == Op::set) {
            map_[a.at(0)] = a.at(1);
            return {};
        }
        if (m == Op::del) {
            if (map_.erase(a.at(0)) == 0) throw Fail{"KeyError", "no such key in the dict"};
            return {};
        }
        if (m == Op::contains) return {encode(map_.count(a.at(0)) != 0)};
        if (m == Op::len) return {encode(std::uint64_t{map_.size()})};
        if (m == Op::clear) {
            map_.clear();
            return {};
        }
        if (m == Op::items) {
            Results out;
            for (auto& [k, v] : map_) {
                out.push_back(k);
                out.push_back(v);
            }
            return out;
        }
        no_method(name_of(m));
    }

private:
    std::mutex m_;
    std::map<std::string, std::string> map_;  // keyed by the encoded key
};

class ListObject final : public Object {
public:
    std::string_view python_name() const override { return "list"; }
    Results call(Op m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        if (m == Op::append) {
            items_.push_back(a.at(0));
            return {};
        }
        if (m == Op::len) return {encode(std::uint64_t{items_.size()})};
        if (m == Op::values) return items_;
        if (m == Op::get || m == Op::set || m == Op::pop) {
            auto i = decode<std::int64_t>(a.at(0));
            const auto n = static_cast<std::int64_t>(items_.size());
            if (i < 0) i += n;
            if (i < 0 || i >= n) throw Fail{"IndexError", "list index out of range"};
            const auto at = static_cast<std::size_t>(i);
            if (m == Op::get) return {items_[at]};
            if (m == Op::set) {
                items_[at] = a.at(1);
                return {};
            }
            std::string item = std::move(items_[at]);
            items_.erase(items_.begin() + i);
            return {std::move(item)};
        }
        no_method(name_of(m));
    }

private:
    std::mutex m_;
    std::vector<std::string> items_;
};

class ValueObject final : public Object {
public:
    std::string_view python_name() const override { return "Value"; }
    explicit ValueObject(std::string v) : value_(std::move(v)) {}
    Results call(Op m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        if (m == Op::get) return {value_};
        if (m == Op::set) {
            value_ = a.at(0);
            return {};
        }
        no_method(name_of(m));
    }

private:
    std::mutex m_;
    std::string value_;
};

class LockObject final : public Object {
public:
    std::string_view python_name() const override { return "Lock"; }
    Results call(Op m, const Results& a, Caller& c) override {
        std::unique_lock lock(m_);
        if (m == Op::acquire) {
            const bool got = c.wait(lock, cv_, timeout_of(a, 0), [&] { return owner_ == 0; });
            if (got) owner_ = c.id();
            return {encode(got)};
        }
        if (m == Op::release) {
            if (owner_ == 0) throw Fail{"ValueError", "release of an unlocked lock"};
            owner_ = 0;
            cv_.notify_one();
            return {};
        }
        no_method(name_of(m));
    }
    // The connection that held it ended: its process died or let go. The lock is free again.
    void left(std::uint64_t connection) override {
        std::lock_guard lock(m_);
        if (owner_ == connection) {
            owner_ = 0;
            cv_.notify_one();
        }
    }
    void wake_all() override { cv_.notify_all(); }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::uint64_t owner_ = 0;  // a connection id; 0: free
};

class EventObject final : public Object {
public:
    std::string_view python_name() const override { return "Event"; }
    Results call(Op m, const Results& a, Caller& c) override {
        std::unique_lock lock(m_);
        if (m == Op::set) {
            set_ = true;
            cv_.notify_all();
            return {};
        }
        if (m == Op::clear) {
            set_ = false;
            return {};
        }
        if (m == Op::is_set) return {encode(set_)};
        if (m == Op::wait) {
            return {encode(c.wait(lock, cv_, timeout_of(a, 0), [&] { return set_; }))};
        }
        no_method(name_of(m));
    }
    void wake_all() override { cv_.notify_all(); }

private:
    std::mutex m_;
    std::condition_variable cv_;
    bool set_ = false;
};

class NamespaceObject final : public Object {
public:
    std::string_view python_name() const override { return "Namespace"; }
    Results call(Op m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        const std::string name = decode<std::string>(a.at(0));
        if (m == Op::get) {
            auto it = attrs_.find(name);
            if (it == attrs_.end()) throw Fail{"AttributeError", "'Namespace' object has no attribute '" + name + "'"};
            return {it->second};
        }
        if (m == Op::set) {
            attrs_[name] = a.at(1);
            return {};
        }
        if (m == Op::has) return {encode(attrs_.count(name) != 0)};
        if (m == Op::del) {
            if (attrs_.erase(name) == 0)
                throw Fail{"AttributeError", "'Namespace' object has no attribute '" + name + "'"};
            return {};
        }
        no_method(name_of(m));
    }

private:
    std::mutex m_;
    std::map<std::string, std::string> attrs_;
};

std::unique_ptr<Object> make_kind(const std::string& name, const Results& a) {
    const auto kind = kind_named(name);
    if (!kind) throw Fail{"ValueError", "no kind of shared object is called '" + name + "'"};
    switch (*kind) {
        case Kind::queue:
        case Kind::joinable_queue:
            return std::make_unique<QueueObject>(static_cast<std::size_t>(decode<std::uint64_t>(a.at(0))),
                                                 kind == Kind::joinable_queue);
        case Kind::dict: return std::make_unique<DictObject>();
        case Kind::list: return std::make_unique<ListObject>();
        case Kind::value: return std::make_unique<ValueObject>(a.at(0));
        case Kind::lock: return std::make_unique<LockObject>();
        case Kind::event: return std::make_unique<EventObject>();
        case Kind::namespace_: return std::make_unique<NamespaceObject>();
    }
    throw Fail{"ValueError", "no kind of shared object is called '" + name + "'"};
}

constexpr std::size_t kMaxRequest = std::size_t{256} << 20;  // one request's bytes

// A manager without a key on TCP serves anyone who reaches it: said at start, where it is seen.
void warn_without_key(const std::string& address) {
    std::fprintf(stderr,
                 "mprocess: WARNING: the manager at %s has no authkey: anyone who can reach %s can use it (every "
                 "object, and shutdown). Give it a key unless only trusted hosts can reach that address.\n",
                 address.c_str(), address.c_str());
    std::fflush(stderr);
}

class Server {
public:
    Server(const std::string& address, const std::string& authkey, const std::vector<Declared>& registered,
           bool registered_only)
        : port_(address, authkey, is_unix_address(address)), registered_only_(registered_only) {
        if (!port_.local) {
            const std::string door = "@mprocess-manager-" + hex(platform::random_bytes(16));
            door_.emplace(door, door_key(authkey, door), true);
            // A Unix address is for this user's processes only (the Listener checks the peer's
            // uid), so only a key-less TCP port is open to others.
            if (authkey.empty()) warn_without_key(this->address());
        }
        for (const auto& [kind, name, args] : registered) {
            objects_[name] = make_kind(kind, args);
            kinds_[name] = kind;
            registered_.insert(name);
        }
    }
    const std::string& address() const { return port_.listener.address(); }
    // Ends run() within a fraction of a second, as a client's shutdown call does.
    void stop() { stopping_ = true; }
    // Ends run() once the process behind this pidfd has ended.
    void end_with(platform::Fd owner) { owner_ = std::move(owner); }

    // Accepts until shutdown, on the port and its local door.
    void run() {
        std::thread side;
        if (door_) side = std::thread([this] { accept_loop(*door_); });
        accept_loop(port_);
        if (side.joinable()) side.join();
        std::vector<std::shared_ptr<ServedConnection>> all;
        {
            std::lock_guard lock(m_);
            for (auto& [id, obj] : objects_) obj->wake_all();
            all.assign(connections_.begin(), connections_.end());
        }
        for (auto& c : all) c->close();  // wakes a thread blocked reading or writing its client
        for (auto& c : all) c->thread.join();
    }

private:
    // Clients served at once on one address. Only authenticated ones count (they know the key).
    static constexpr std::size_t kMaxConnections = 1024;

    // An address the server listens on, and the clients it serves there.
    struct Endpoint {
        Endpoint(const std::string& address, const std::string& key, bool is_local)
            : listener(address, {.authkey = key, .max_message = kMaxRequest}),
              local(is_local) {}
        Listener listener;
        const bool local;        // a Unix socket: clients may move to shared memory
        std::size_t served = 0;  // its connections being served, under the server's m_
    };

    // A client's connection and the thread that serves it.
    struct ServedConnection {
        std::mutex m;
        Connection conn;  // replaced once, by the upgrade
        std::thread thread;
        std::atomic<bool> done{false};
        void close() {
            std::lock_guard lock(m);
            conn.close();
        }
    };

    // Threads start here, not before: a process may fork between making a server and serving.
    void accept_loop(Endpoint& at) {
        // The Listener runs every handshake under way side by side, each within its deadline, and
        // bounds how many wait (in all, and per source): a silent or hostile stranger holds up
        // nobody and costs at most one small buffer.
        while (!stopping_.load()) {
            if (owner_gone()) stopping_ = true;
            reap();
            Connection conn;
            try {
                conn = at.listener.accept(0.2);
            } catch (const TimeoutError&) {
                continue;
            } catch (const AuthenticationError&) {
                continue;  // that client only
            } catch (const std::exception&) {
                std::this_thread::sleep_for(std::chrono::milliseconds(50));  // out of descriptors, say: later
                continue;
            }
            admit(at, std::move(conn));
        }
    }

    bool owner_gone() {
        if (!owner_.valid()) return false;
        pollfd p{owner_.get(), POLLIN, 0};
        return platform::poll_until(&p, 1, platform::Clock::now()) > 0;
    }

    // An authenticated connection is served in its own thread, unless its address serves all it
    // may: then it is told so (see the protocol above) and closed.
    void admit(Endpoint& at, Connection conn) {
        {
            std::lock_guard lock(m_);
            if (at.served < kMaxConnections) {
                auto c = std::make_shared<ServedConnection>();
                c->conn = conn;
                try {
                    c->thread = std::thread([this, c, &at, id = ++next_connection_] { serve(*c, id, at); });
                } catch (const std::exception&) {
                    return;  // no thread to spare: the connection closes
                }
                ++at.served;
                connections_.push_back(c);
                return;
            }
        }
        try {
            conn.send(Reply{1, "ServerBusy", "server busy (" + std::to_string(kMaxConnections) + " connections)", {}});
        } catch (const Error&) {
        }
        conn.close();
    }

    // Joins the threads of connections that have ended.
    void reap() {
        std::vector<std::shared_ptr<ServedConnection>> ended;
        {
            std::lock_guard lock(m_);
            for (auto it = connections_.begin(); it != connections_.end();) {
                if ((*it)->done.load()) {
                    ended.push_back(*it);
                    it = connections_.erase(it);
                } else {
                    ++it;
                }
            }
        }
        for (auto& c : ended) c->thread.join();
    }

    void serve(ServedConnection& client, std::uint64_t id, Endpoint& at) {
        Connection conn = client.conn;
        try {
            conn.send(Reply{0, {}, {}, {}});  // admitted
            Caller caller(conn, stopping_, id);
            bool upgraded = false;
            while (!stopping_.load()) {
                if (!conn.poll(0.2)) continue;
                auto [object, method, args] = conn.recv<Request>();
                if (object.empty() && method == name_of(Op::upgrade) && at.local && !upgraded) {
                    Connection pipe = upgrade(conn);
                    std::lock_guard lock(client.m);
                    client.conn = conn = pipe;
                    upgraded = true;
                    continue;
                }
                Reply reply{0, {}, {}, {}};
                try {
                    std::get<3>(reply) = dispatch(object, method, args, caller);
                } catch (const Fail& f) {
                    reply = Reply{1, f.type, f.message, {}};
                } catch (const std::exception& e) {
                    reply = Reply{1, "Error", e.what(), {}};
                }
                conn.send(reply);
            }
        } catch (...) {
            // The client went away, or sent what is not a request (even one too big to hold):
            // that connection ends, and only it.
        }
        try {
            conn.close();
        } catch (...) {
        }
        {
            std::lock_guard lock(m_);
            for (auto& [oid, obj] : objects_) obj->left(id);
            --at.served;
        }
        client.done = true;
    }

    // A client on this machine asks to go on over shared memory: it gets one end of a new Pipe
    // through the Unix socket (SCM_RIGHTS), and the calls are served on the other end.
    static Connection upgrade(Connection& sock) {
        auto [mine, theirs] = Pipe();
        send_pipe_end(sock.fileno(), theirs);
        sock.close();
        return mine;
    }

    Results dispatch(const std::string& object, const std::string& method, const Results& args, Caller& caller) {
        const auto op = op_named(method);
        if (object.empty()) {
            if (op == Op::shutdown) {
                stopping_ = true;
                return {};
            }
            if (op == Op::local) return door_ ? Results{door_->listener.address()} : Results{};
            if (op == Op::release) {
                const std::string name = args.at(0);
                std::shared_ptr<Object> gone;
                {
                    std::lock_guard lock(m_);
                    if (registered_.count(name))
                        throw Fail{"ValueError", "'" + name + "' is registered by the server: it stays"};
                    auto it = objects_.find(name);
                    if (it == objects_.end()) throw Fail{"KeyError", "the manager has no object '" + name + "'"};
                    gone = std::move(it->second);
                    objects_.erase(it);
                    kinds_.erase(name);
                }
                gone->released = true;
                gone->wake_all();  // its waiting calls end with KeyError
                return {};
            }
            if (op == Op::make) {
                const std::string kind = args.at(0), name = args.at(1);
                if (!name.empty() && name[0] == '#')
                    throw Fail{"ValueError", "names starting with '#' are the manager's"};
                std::lock_guard lock(m_);
                const std::string id = name.empty() ? "#" + std::to_string(++next_object_) : name;
                auto it = objects_.find(id);
                if (it == objects_.end() && registered_only_ && !name.empty())
                    throw Fail{"KeyError", "the manager has no object registered as '" + name + "'"};
                if (it == objects_.end()) {
                    it = objects_.emplace(id, make_kind(kind, Results(args.begin() + 2, args.end()))).first;
                    kinds_[id] = kind;
                } else if (kinds_[id] != kind) {
                    throw Fail{"TypeError", "'" + id + "' is a " + kinds_[id] + ", not a " + kind};
                }
                return {id};
            }
            throw Fail{"AttributeError", "the manager has no method '" + method + "'"};
        }
        std::shared_ptr<Object> obj;  // a call in progress keeps a released object alive
        {
            std::lock_guard lock(m_);
            auto it = objects_.find(object);
            if (it == objects_.end()) throw Fail{"KeyError", "the manager has no object '" + object + "'"};
            obj = it->second;
        }
        if (!op) obj->no_method(method);
        caller.watch(&obj->released);
        return obj->call(*op, args, caller);
    }

    Endpoint port_;
    // On TCP, a local door for clients on this machine: a random abstract Unix name, which only
    // processes of the same host and network namespace can reach. They move there, and on to
    // shared memory, so a manager reached at a loopback or own address is as fast as a local one.
    std::optional<Endpoint> door_;
    const bool registered_only_;
    std::atomic<bool> stopping_{false};
    std::mutex m_;
    std::map<std::string, std::shared_ptr<Object>> objects_;
    std::map<std::string, std::string> kinds_;
    std::set<std::string> registered_;  // the server's own names: never released
    std::list<std::shared_ptr<ServedConnection>> connections_;
    std::uint64_t next_connection_ = 0;
    std::uint64_t next_object_ = 0;
    platform::Fd owner_;  // a pidfd: the server ends with that process
};

// The server's first word on a new connection (see the protocol above): ServerBusy if it serves
// all it may on that address.
void expect_admission(Connection& c, const std::string& address) {
    if (!c.poll(30.0)) throw TimeoutError("the manager at " + address + " did not answer within 30 s of the handshake");
    auto [status, type, message, results] = c.recv<Reply>();
    if (status == 0) return;
    if (type == "ServerBusy")
        throw ServerBusy("the manager at " + address + " turned this connection away: " + message +
                         "; try again once some of its clients have gone");
    std::rethrow_exception(make_remote_error(type, message, "manager " + address));
}

// A Unix socket reaches a server on this machine: the calls go on over a shared-memory Pipe,
// whose end the server sends through the socket. A call then costs about a microsecond instead
// of two socket system calls and, often, a sleep and a wake-up on each side.
Connection upgraded(Connection& sock) {
    // The descriptors come with their bytes, so the socket is read directly here: nothing is read
    // ahead, since the server said nothing after its admission but what answers this request.
    sock.send(Request{"", std::string(name_of(Op::upgrade)), {}});
    std::optional<Connection> pipe = recv_pipe_end(sock.fileno());
    if (!pipe) throw EOFError("the manager's server went away while moving the connection to shared memory");
    sock.close();
    return std::move(*pipe);
}

// A TCP connection to a server that may be on this machine: if the server's local door (an
// abstract Unix name) answers here, the calls go there instead, and on over shared memory;
// otherwise over TCP.
Connection through_local_door(Connection& tcp, const std::string& authkey) {
    tcp.send(Request{"", std::string(name_of(Op::local)), {}});
    auto [status, type, message, results] = tcp.recv<Reply>();
    if (status != 0 || results.empty()) return tcp;
    try {
        const std::string& door = results.at(0);
        Connection local = Client(door, {.authkey = door_key(authkey, door), .timeout = 5.0});
        expect_admission(local, door);
        Connection pipe = upgraded(local);
        tcp.close();
        return pipe;
    } catch (const std::exception&) {
        return tcp;  // another host or network namespace (the name is not there), or a busy door
    }
}

Connection connect_to_server(const std::string& address, const std::string& authkey) {
    Connection c = Client(address, {.authkey = authkey});
    expect_admission(c, address);
    return is_unix_address(address) ? upgraded(c) : through_local_door(c, authkey);
}

// One thread's connections to servers, by address and key: a thread uses only its own, so that a
// blocking call holds up no other thread.
struct ThreadConnections {
    std::mutex m;  // the thread's calls, and forget_server() from any thread
    std::map<std::string, Connection> by_key;
};

std::string connection_key(const std::string& address, const std::string& authkey) {
    return address + '\0' + authkey;
}

// Every thread's connections in this process, so that a server's shutdown drops them all: a
// thread that never calls again would otherwise keep its descriptors for good.
struct AllConnections {
    explicit AllConnections(pid_t p) : pid(p) {}
    const pid_t pid;
    std::mutex m;
    std::vector<std::weak_ptr<ThreadConnections>> threads;
};

// This process's table. A forked child makes its own: its parent's, and that one's lock, which a
// thread of the parent may have held at the fork, are left as they are.
AllConnections& all_connections() {
    static std::atomic<AllConnections*> all{nullptr};
    const pid_t me = ::getpid();
    AllConnections* a = all.load(std::memory_order_acquire);
    while (!a || a->pid != me) {
        auto* fresh = new AllConnections(me);
        if (all.compare_exchange_weak(a, fresh, std::memory_order_acq_rel)) return *fresh;
        delete fresh;
    }
    return *a;
}

ThreadConnections& this_thread_connections() {
    thread_local std::shared_ptr<ThreadConnections> mine;
    thread_local pid_t owner = 0;
    if (owner == ::getpid()) return *mine;
    if (mine && mine->m.try_lock()) {
        // After a fork: the parent's connections are not ours to use. Dropping them closes only
        // this process's copies of their descriptors.
        mine->by_key.clear();
        mine->m.unlock();
    } else if (mine) {
        // Locked at the fork by a thread of the parent, its table may be half changed: left as it is.
        new std::shared_ptr<ThreadConnections>(std::move(mine));
    }
    if (!mine) mine = std::make_shared<ThreadConnections>();
    owner = ::getpid();
    auto& all = all_connections();
    std::lock_guard lock(all.m);
    std::erase_if(all.threads, [](const auto& t) { return t.expired(); });
    all.threads.push_back(mine);
    return *mine;
}

// This thread's connection to a server (and key), made at first use.
Connection connection_to(const std::string& address, const std::string& authkey) {
    auto& mine = this_thread_connections();
    const std::string key = connection_key(address, authkey);
    {
        std::lock_guard lock(mine.m);
        auto it = mine.by_key.find(key);
        if (it != mine.by_key.end() && !it->second.closed()) return it->second;
    }
    Connection c = connect_to_server(address, authkey);
    std::lock_guard lock(mine.m);
    mine.by_key.insert_or_assign(key, c);
    return c;
}

// This thread's connection failed: the next call connects again.
void forget_connection(const std::string& address, const std::string& authkey) {
    auto& mine = this_thread_connections();
    std::lock_guard lock(mine.m);
    mine.by_key.erase(connection_key(address, authkey));
}

// The server at `address` has shut down: every thread's connections to it go. A call in progress
// on one keeps it until that call ends.
void forget_server(const std::string& address) {
    std::vector<std::shared_ptr<ThreadConnections>> threads;
    {
        auto& all = all_connections();
        std::lock_guard lock(all.m);
        for (auto& t : all.threads)
            if (auto alive = t.lock()) threads.push_back(std::move(alive));
    }
    const std::string prefix = connection_key(address, "");
    for (auto& t : threads) {
        std::lock_guard lock(t->m);
        std::erase_if(t->by_key, [&](const auto& kv) { return kv.first.compare(0, prefix.size(), prefix) == 0; });
    }
}

// The process that starts a server, as a pidfd the server watches: it travels with the server's
// other arguments under every start method.
struct Owner {
    int pidfd = -1;
};

}  // namespace

template <>
struct SpawnArg<Owner> {
    static constexpr bool handle = true;
    static std::string write(SpawnArgs& args, const Owner& o) { return encode(std::int32_t{args.add_fd(o.pidfd)}); }
    static Owner read(const SpawnArgs& args, const std::string& blob) {
        const auto i = decode<std::int32_t>(blob);
        if (i < 0 || static_cast<std::size_t>(i) >= args.fds.size())
            throw DecodeError("a manager server's owner: no such descriptor");
        platform::Fd borrowed(args.fds[static_cast<std::size_t>(i)]);
        platform::Fd own = platform::dup_fd(borrowed);
        borrowed.release();
        return Owner{own.release()};
    }
};

namespace {

// A server that start() made: it ends when the process that started it does, however that ends.
void run_server(std::string address, std::string authkey, std::vector<Declared> registered, bool registered_only,
                Connection report, Owner owner) {
    platform::Fd watch(owner.pidfd);
    // Forked, it shares its owner's resource tracker, whose watch over the owner's named blocks
    // would then wait for the server too; it makes no named block, so it lets go.
    tracker_leave();
    Server server(address, authkey, registered, registered_only);
    server.end_with(std::move(watch));
    report.send(server.address());
    report.close();
    server.run();
}

}  // namespace

struct ServerHandle {
    template <class... A>
    explicit ServerHandle(A&&... a) : server(std::forward<A>(a)...) {}
    Server server;
};

std::vector<std::string> call(const ObjectRef& ref, Op method, std::vector<std::string> args) {
    std::string key = ref.authkey;
    if (ref.needs_key) {
        auto known = authkey_for(ref.address);
        if (!known)
            throw AuthenticationError("this process knows no key for the manager at " + ref.address +
                                      ": connect a BaseManager to it with its key, or call "
                                      "mp::remember_authkey(address, key), before using proxies it sent");
        key = *known;
    }
    Connection conn = connection_to(ref.address, key);
    try {
        conn.send(Request{ref.id, std::string(name_of(method)), std::move(args)});
        auto [status, type, message, results] = conn.recv<Reply>();
        if (status == 0) return std::move(results);
        if (type == "Empty") throw Empty(message);
        if (type == "Full") throw Full(message);
        if (type == "EOFError") throw EOFError(message);
        std::rethrow_exception(make_remote_error(type, message, "manager " + ref.address));
    } catch (const EOFError&) {
        forget_connection(ref.address, key);  // the next call connects again
        throw;
    } catch (const BrokenPipeError&) {
        forget_connection(ref.address, key);
        throw;
    }
}

ObjectRef make_object(const std::string& address, const std::string& authkey, Kind kind, const std::string& name,
                      std::vector<std::string> args) {
    args.insert(args.begin(), {std::string(name_of(kind)), name});
    ObjectRef server{address, authkey, std::string(name_of(kind)), ""};
    auto r = call(server, Op::make, std::move(args));
    return ObjectRef{address, authkey, std::string(name_of(kind)), r.at(0)};
}

}  // namespace detail

BaseManager::BaseManager(std::string address, ManagerOptions options)
    : address_(std::move(address)), options_(std::move(options)) {
    if (options_.authkey.empty() && !detail::is_unix_address(address_) && !options_.insecure)
        throw ValueError(
            "a manager on a TCP address needs an authkey: without one, anyone who can reach the port "
            "could use its objects or stop it ({.insecure = true} serves without one all the same)");
}

BaseManager::~BaseManager() {
    try {
        if (server_) shutdown();
    } catch (...) {
    }
}

void BaseManager::start() {
    if (server_) throw ProcessError("the manager has already been started");
    auto [here, there] = Pipe();
    // A pidfd of this process, made while it lives, so that it cannot name another by the time the
    // server watches it (a pid could be reused).
    platform::Fd owner = platform::pidfd_open(::getpid());
    server_.emplace(detail::run_server, ProcessOptions{.name = "SyncManager", .start_method = options_.start_method},
                    address_, options_.authkey, registered_, options_.registered_only, there,
                    detail::Owner{owner.get()});
    server_->start();
    owner.reset();
    there.close();
    if (!here.poll(30.0)) throw ProcessError("the manager's server did not start listening within 30 s");
    address_ = here.recv<std::string>();
    if (!options_.authkey.empty()) remember_authkey(address_, options_.authkey);
    connected_ = true;
}

void BaseManager::serve_forever() {
    detail::Server server(address_, options_.authkey, registered_, options_.registered_only);
    address_ = server.address();
    if (!options_.authkey.empty()) remember_authkey(address_, options_.authkey);
    server.run();
}

ManagerServer BaseManager::get_server() {
    if (server_ || connected_) throw ProcessError("the manager has already been started or connected");
    ManagerServer s;
    s.handle_ =
        std::make_shared<detail::ServerHandle>(address_, options_.authkey, registered_, options_.registered_only);
    if (!options_.authkey.empty()) remember_authkey(s.address(), options_.authkey);
    return s;
}

const std::string& ManagerServer::address() const {
    return handle_->server.address();
}

void ManagerServer::serve_forever() {
    handle_->server.run();
}

void ManagerServer::stop() {
    handle_->server.stop();
}

void BaseManager::connect() {
    detail::connection_to(address_, options_.authkey);  // fails here, not at the first call
    if (!options_.authkey.empty()) remember_authkey(address_, options_.authkey);
    connected_ = true;
}

void BaseManager::shutdown() {
    if (!connected_ && !server_) return;
    if (connected_) {
        try {
            detail::call(detail::ObjectRef{address_, options_.authkey, "", ""}, detail::Op::shutdown, {});
        } catch (const Error&) {
        }
    }
    if (server_) {
        if (!server_->join(10.0)) {
            server_->terminate();
            server_->join();
        }
        server_.reset();
    }
    detail::forget_server(address_);
    connected_ = false;
}

void BaseManager::release(const std::string& name) {
    if (!connected_) throw ValueError("the manager is not started or connected: call start() or connect()");
    detail::call(detail::ObjectRef{address_, options_.authkey, "", ""}, detail::Op::release, {name});
}

void BaseManager::declare(Kind kind, const std::string& name, std::vector<std::string> args) {
    if (server_ || connected_) throw ValueError("register objects before start() or serve_forever()");
    if (name.empty()) throw ValueError("a registered object needs a name");
    registered_.emplace_back(std::string(detail::name_of(kind)), name, std::move(args));
}

detail::ObjectRef BaseManager::make(Kind kind, const std::string& name, std::vector<std::string> args) {
    if (!connected_) throw ValueError("the manager is not started or connected: call start() or connect()");
    return detail::make_object(address_, options_.authkey, kind, name, std::move(args));
}

Manager::Manager(ManagerOptions options)
    // A random name: any user may bind an abstract name, so a guessable one could be taken first.
    : BaseManager("@mprocess-manager-" + detail::hex(platform::random_bytes(16)),
                  [&] {
                      // A key of its own, known to this process and the children it starts.
                      if (options.authkey.empty()) options.authkey = platform::random_bytes(32);
                      return options;
                  }()) {
    start();
}

Manager::~Manager() = default;

}  // namespace mprocess
