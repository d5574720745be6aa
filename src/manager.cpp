// The manager's server and the proxies' calls.
//
// A call is one request and one reply on a Client connection: (object id, method, encoded
// arguments) -> (status, error type, error message, encoded results). Each client thread has its
// own connection (a blocking get() holds only its own), made again in a child process. The server
// serves each connection in its own thread; objects keep items as encoded messages. A waiting
// call looks every 100 ms whether its client is still there, so a dead client's call ends.
#include "mprocess/manager.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <set>
#include <thread>

#include "channel.hpp"
#include "mprocess/process.hpp"
#include "platform/posix.hpp"
#include "platform/socket.hpp"
#include "shm_channel.hpp"
#include "socket_channel.hpp"

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
    bool wait(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, bool block, double timeout, Pred pred) {
        if (pred()) return true;
        if (!block) return false;
        const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout < 0 ? 1e9 : timeout);
        while (!pred()) {
            if (released_ && released_->load())
                throw Fail{"KeyError", "the object was released while this call waited"};
            if (std::chrono::steady_clock::now() >= end) return false;
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

std::pair<bool, double> timeout_of(const Results& a, std::size_t i) {
    return decode<std::pair<bool, double>>(a.at(i));
}

class Object {
public:
    virtual ~Object() = default;
    virtual Results call(const std::string& method, const Results& args, Caller& caller) = 0;
    virtual void left(std::uint64_t /*connection*/) {}
    virtual void wake_all() {}
    std::atomic<bool> released{false};

protected:
    [[noreturn]] static void no_method(const std::string& kind, const std::string& method) {
        throw Fail{"AttributeError", "'" + kind + "' object has no method '" + method + "'"};
    }
};

class QueueObject final : public Object {
public:
    QueueObject(std::size_t maxsize, bool joinable) : maxsize_(maxsize), joinable_(joinable) {}
    Results call(const std::string& m, const Results& a, Caller& c) override {
        std::unique_lock lock(m_);
        if (m == "put") {
            auto [block, timeout] = timeout_of(a, 1);
            if (!c.wait(lock, cv_, block, timeout, [&] { return maxsize_ == 0 || items_.size() < maxsize_; }))
                throw Fail{"Full", "the queue is full"};
            items_.push_back(a.at(0));
            ++unfinished_;
            cv_.notify_all();
            return {};
        }
        if (m == "get") {
            auto [block, timeout] = timeout_of(a, 0);
            if (!c.wait(lock, cv_, block, timeout, [&] { return !items_.empty(); }))
                throw Fail{"Empty", "the queue is empty"};
            std::string item = std::move(items_.front());
            items_.pop_front();
            cv_.notify_all();
            return {std::move(item)};
        }
        if (m == "qsize") return {encode(std::uint64_t{items_.size()})};
        if (m == "full") return {encode(maxsize_ != 0 && items_.size() >= maxsize_)};
        if (m == "task_done" && joinable_) {
            if (unfinished_ == 0) throw Fail{"ValueError", "task_done() called too many times"};
            if (--unfinished_ == 0) cv_.notify_all();
            return {};
        }
        if (m == "join" && joinable_) {
            c.wait(lock, cv_, true, -1, [&] { return unfinished_ == 0; });
            return {};
        }
        no_method(joinable_ ? "JoinableQueue" : "Queue", m);
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
    Results call(const std::string& m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        if (m == "get" || m == "get_or_none") {
            auto it = map_.find(a.at(0));
            if (it != map_.end()) return {it->second};
            if (m == "get_or_none") return {};
            throw Fail{"KeyError", "no such key in the dict"};
        }
        if (m == "set") {
            map_[a.at(0)] = a.at(1);
            return {};
        }
        if (m == "del") {
            if (map_.erase(a.at(0)) == 0) throw Fail{"KeyError", "no such key in the dict"};
            return {};
        }
        if (m == "contains") return {encode(map_.count(a.at(0)) != 0)};
        if (m == "len") return {encode(std::uint64_t{map_.size()})};
        if (m == "clear") {
            map_.clear();
            return {};
        }
        if (m == "items") {
            Results out;
            for (auto& [k, v] : map_) {
                out.push_back(k);
                out.push_back(v);
            }
            return out;
        }
        no_method("dict", m);
    }

private:
    std::mutex m_;
    std::map<std::string, std::string> map_;  // keyed by the encoded key
};

class ListObject final : public Object {
public:
    Results call(const std::string& m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        if (m == "append") {
            items_.push_back(a.at(0));
            return {};
        }
        if (m == "len") return {encode(std::uint64_t{items_.size()})};
        if (m == "values") return items_;
        if (m == "get" || m == "set" || m == "pop") {
            auto i = decode<std::int64_t>(a.at(0));
            const auto n = static_cast<std::int64_t>(items_.size());
            if (i < 0) i += n;
            if (i < 0 || i >= n) throw Fail{"IndexError", "list index out of range"};
            const auto at = static_cast<std::size_t>(i);
            if (m == "get") return {items_[at]};
            if (m == "set") {
                items_[at] = a.at(1);
                return {};
            }
            std::string item = std::move(items_[at]);
            items_.erase(items_.begin() + i);
            return {std::move(item)};
        }
        no_method("list", m);
    }

private:
    std::mutex m_;
    std::vector<std::string> items_;
};

class ValueObject final : public Object {
public:
    explicit ValueObject(std::string v) : value_(std::move(v)) {}
    Results call(const std::string& m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        if (m == "get") return {value_};
        if (m == "set") {
            value_ = a.at(0);
            return {};
        }
        no_method("Value", m);
    }

private:
    std::mutex m_;
    std::string value_;
};

class LockObject final : public Object {
public:
    Results call(const std::string& m, const Results& a, Caller& c) override {
        std::unique_lock lock(m_);
        if (m == "acquire") {
            auto [block, timeout] = timeout_of(a, 0);
            const bool got = c.wait(lock, cv_, block, timeout, [&] { return owner_ == 0; });
            if (got) owner_ = c.id();
            return {encode(got)};
        }
        if (m == "release") {
            if (owner_ == 0) throw Fail{"ValueError", "release of an unlocked lock"};
            owner_ = 0;
            cv_.notify_one();
            return {};
        }
        no_method("Lock", m);
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
    Results call(const std::string& m, const Results& a, Caller& c) override {
        std::unique_lock lock(m_);
        if (m == "set") {
            set_ = true;
            cv_.notify_all();
            return {};
        }
        if (m == "clear") {
            set_ = false;
            return {};
        }
        if (m == "is_set") return {encode(set_)};
        if (m == "wait") {
            auto [block, timeout] = timeout_of(a, 0);
            return {encode(c.wait(lock, cv_, block, timeout, [&] { return set_; }))};
        }
        no_method("Event", m);
    }
    void wake_all() override { cv_.notify_all(); }

private:
    std::mutex m_;
    std::condition_variable cv_;
    bool set_ = false;
};

class NamespaceObject final : public Object {
public:
    Results call(const std::string& m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        const std::string name = decode<std::string>(a.at(0));
        if (m == "get") {
            auto it = attrs_.find(name);
            if (it == attrs_.end()) throw Fail{"AttributeError", "'Namespace' object has no attribute '" + name + "'"};
            return {it->second};
        }
        if (m == "set") {
            attrs_[name] = a.at(1);
            return {};
        }
        if (m == "has") return {encode(attrs_.count(name) != 0)};
        if (m == "del") {
            if (attrs_.erase(name) == 0)
                throw Fail{"AttributeError", "'Namespace' object has no attribute '" + name + "'"};
            return {};
        }
        no_method("Namespace", m);
    }

private:
    std::mutex m_;
    std::map<std::string, std::string> attrs_;
};

std::unique_ptr<Object> make_kind(const std::string& kind, const Results& a) {
    if (kind == "queue" || kind == "joinable_queue")
        return std::make_unique<QueueObject>(static_cast<std::size_t>(decode<std::uint64_t>(a.at(0))),
                                             kind == "joinable_queue");
    if (kind == "dict") return std::make_unique<DictObject>();
    if (kind == "list") return std::make_unique<ListObject>();
    if (kind == "value") return std::make_unique<ValueObject>(a.at(0));
    if (kind == "lock") return std::make_unique<LockObject>();
    if (kind == "event") return std::make_unique<EventObject>();
    if (kind == "namespace") return std::make_unique<NamespaceObject>();
    throw Fail{"ValueError", "no kind of shared object is called '" + kind + "'"};
}

class Server {
public:
    Server(const std::string& address, const std::string& authkey, const std::vector<Declared>& registered,
           bool registered_only)
        : listener_(address, {.authkey = authkey, .handshake_timeout = 10.0, .max_message = kMaxRequest}),
          local_(is_unix_address(address)),
          registered_only_(registered_only) {
        if (!local_) {
            const std::string door = "@mprocess-manager-" + hex(platform::random_bytes(16));
            shortcut_.emplace(
                door, ListenerOptions{
                          .authkey = door_key(authkey, door), .handshake_timeout = 10.0, .max_message = kMaxRequest});
        }
        for (const auto& [kind, name, args] : registered) {
            objects_[name] = make_kind(kind, args);
            kinds_[name] = kind;
            registered_.insert(name);
        }
    }
    const std::string& address() const { return listener_.address(); }
    // Ends run() within a fraction of a second, as a client's shutdown call does.
    void stop() { stopping_ = true; }

    // Accepts until shutdown, on both listeners.
    void run() {
        std::thread side;
        if (shortcut_) side = std::thread([this] { accept_loop(*shortcut_, true); });
        accept_loop(listener_, local_);
        if (side.joinable()) side.join();
        std::vector<std::shared_ptr<Live>> all;
        {
            std::lock_guard lock(m_);
            for (auto& [id, obj] : objects_) obj->wake_all();
            all.assign(live_.begin(), live_.end());
        }
        for (auto& c : all) c->close();  // wakes a thread blocked reading or writing its client
        for (auto& c : all) c->thread.join();
    }

private:
    static constexpr std::size_t kMaxRequest = std::size_t{256} << 20;  // one request's bytes
    static constexpr std::size_t kMaxConnections = 1024;

    struct Live {
        std::mutex m;
        Connection conn;  // replaced once, by the upgrade
        std::thread thread;
        std::atomic<bool> done{false};
        void close() {
            std::lock_guard lock(m);
            conn.close();
        }
    };

    // Each connection authenticates and is served in its own thread, so a slow or silent client
    // holds up nobody else. `local`: a Unix socket, whose clients may move to shared memory.
    void accept_loop(Listener& listener, bool local) {
        while (!stopping_.load()) {
            reap();
            Connection conn;
            try {
                conn = accept_unauthenticated(listener, 0.2);
            } catch (const TimeoutError&) {
                continue;
            } catch (const std::exception&) {
                std::this_thread::sleep_for(std::chrono::milliseconds(50));  // out of descriptors, say: later
                continue;
            }
            std::lock_guard lock(m_);
            if (live_.size() >= kMaxConnections) continue;  // refused: the connection closes
            auto c = std::make_shared<Live>();
            c->conn = conn;
            try {
                c->thread = std::thread(
                    [this, c, &listener, local, id = ++next_connection_] { serve(*c, id, listener, local); });
            } catch (const std::exception&) {
                continue;
            }
            live_.push_back(c);
        }
    }

    // Joins the threads of connections that have ended.
    void reap() {
        std::vector<std::shared_ptr<Live>> ended;
        {
            std::lock_guard lock(m_);
            for (auto it = live_.begin(); it != live_.end();) {
                if ((*it)->done.load()) {
                    ended.push_back(*it);
                    it = live_.erase(it);
                } else {
                    ++it;
                }
            }
        }
        for (auto& c : ended) c->thread.join();
    }

    void serve(Live& live, std::uint64_t id, const Listener& listener, bool local) {
        Connection conn = live.conn;
        try {
            authenticate_accepted(listener, conn);
            Caller caller(conn, stopping_, id);
            bool upgraded = false;
            while (!stopping_.load()) {
                if (!conn.poll(0.2)) continue;
                auto [object, method, args] = conn.recv<Request>();
                if (object.empty() && method == "upgrade" && local && !upgraded) {
                    Connection pipe = upgrade(conn);
                    std::lock_guard lock(live.m);
                    live.conn = conn = pipe;
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
            // The client went away, failed to authenticate, or sent what is not a request (even
            // one too big to hold): that connection ends, and only it.
        }
        try {
            conn.close();
        } catch (...) {
        }
        {
            std::lock_guard lock(m_);
            for (auto& [oid, obj] : objects_) obj->left(id);
        }
        live.done = true;
    }

    // A client on this machine asks to go on over shared memory: it gets one end of a new Pipe
    // through the Unix socket (SCM_RIGHTS), and the calls are served on the other end.
    static Connection upgrade(Connection& sock) {
        auto [mine, theirs] = Pipe();
        SpawnArgs args;
        const std::string blob = ConnectionAccess::channel(theirs).export_to(args);
        const std::uint64_t n = blob.size();
        const std::string msg = std::string(reinterpret_cast<const char*>(&n), sizeof n) + blob;
        platform::send_with_fds(sock.fileno(), msg.data(), msg.size(), args.fds);
        sock.close();
        return mine;
    }

    Results dispatch(const std::string& object, const std::string& method, const Results& args, Caller& caller) {
        if (object.empty()) {
            if (method == "shutdown") {
                stopping_ = true;
                return {};
            }
            if (method == "local") return shortcut_ ? Results{shortcut_->address()} : Results{};
            if (method == "release") {
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
            if (method == "make") {
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
        caller.watch(&obj->released);
        return obj->call(method, args, caller);
    }

    Listener listener_;
    const bool local_;  // a Unix socket: clients may move to shared memory
    // On TCP, a second door for clients on this machine: a random abstract Unix name, which only
    // processes of the same host and network namespace can reach. They move there, and on to
    // shared memory, so a manager reached at a loopback or own address is as fast as a local one.
    std::optional<Listener> shortcut_;
    const bool registered_only_;
    std::atomic<bool> stopping_{false};
    std::mutex m_;
    std::map<std::string, std::shared_ptr<Object>> objects_;
    std::map<std::string, std::string> kinds_;
    std::set<std::string> registered_;  // the server's own names: never released
    std::list<std::shared_ptr<Live>> live_;
    std::uint64_t next_connection_ = 0;
    std::uint64_t next_object_ = 0;
};

// A Unix socket reaches a server on this machine: the calls go on over a shared-memory Pipe,
// whose end the server sends through the socket. A call then costs about a microsecond instead
// of two socket system calls and, often, a sleep and a wake-up on each side.
Connection upgraded(Connection& sock) {
    // The descriptors come with their bytes and must not be read ahead: so a key-less client
    // takes the listener's welcome first, while nothing can follow it.
    if (auto* ch = as_socket_channel(ConnectionAccess::channel(sock)))
        take_welcome(*ch, platform::Clock::now() + std::chrono::seconds(30));
    sock.send(Request{"", "upgrade", {}});
    std::uint64_t n = 0;
    std::vector<int> fds;
    std::string blob;
    bool ok = platform::recv_with_fds(sock.fileno(), &n, sizeof n, fds) && n <= (1u << 16);
    if (ok) {
        blob.resize(n);
        ok = platform::recv_with_fds(sock.fileno(), blob.data(), n, fds);
    }
    std::vector<platform::Fd> owned;
    for (int fd : fds) owned.emplace_back(fd);  // closed when done: the channel keeps its own copies
    if (!ok) throw EOFError("the manager's server went away while moving the connection to shared memory");
    SpawnArgs args;
    args.fds = fds;
    auto ch = import_shm_channel(args, blob);
    sock.close();
    return ConnectionAccess::wrap(std::move(ch));
}

// A TCP connection to a server that may be on this machine: if the server's abstract Unix name
// answers here, the calls go there instead, and on over shared memory; otherwise over TCP.
Connection shortcut(Connection& tcp, const std::string& authkey) {
    tcp.send(Request{"", "local", {}});
    auto [status, type, message, results] = tcp.recv<Reply>();
    if (status != 0 || results.empty()) return tcp;
    try {
        Connection local = Client(results.at(0), {.authkey = door_key(authkey, results.at(0)), .timeout = 5.0});
        Connection pipe = upgraded(local);
        tcp.close();
        return pipe;
    } catch (const std::exception&) {
        return tcp;  // another host or network namespace: the name is not there
    }
}

// This thread's connection to each server (and key), made again after a fork.
Connection& connection_to(const std::string& address, const std::string& authkey) {
    thread_local std::map<std::string, Connection> conns;
    thread_local pid_t owner = 0;
    if (owner != ::getpid()) {
        for (auto& [a, c] : conns) {
            (void)a;
            c = Connection();  // the parent's: not ours to use, nor to close
        }
        conns.clear();
        owner = ::getpid();
    }
    const std::string key = address + '\0' + authkey;
    auto it = conns.find(key);
    if (it == conns.end() || it->second.closed()) {
        Connection c = Client(address, {.authkey = authkey});
        c = is_unix_address(address) ? upgraded(c) : shortcut(c, authkey);
        it = conns.insert_or_assign(key, std::move(c)).first;
    }
    return it->second;
}

void run_server(std::string address, std::string authkey, std::vector<Declared> registered, bool registered_only,
                Connection report) {
    Server server(address, authkey, registered, registered_only);
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

std::vector<std::string> call(const ObjectRef& ref, const std::string& method, std::vector<std::string> args) {
    std::string key = ref.authkey;
    if (ref.needs_key) {
        auto known = authkey_for(ref.address);
        if (!known)
            throw AuthenticationError("this process knows no key for the manager at " + ref.address +
                                      ": connect a BaseManager to it with its key, or call "
                                      "mp::remember_authkey(address, key), before using proxies it sent");
        key = *known;
    }
    Connection& conn = connection_to(ref.address, key);
    try {
        conn.send(Request{ref.id, method, std::move(args)});
        auto [status, type, message, results] = conn.recv<Reply>();
        if (status == 0) return std::move(results);
        if (type == "Empty") throw Empty(message);
        if (type == "Full") throw Full(message);
        if (type == "EOFError") throw EOFError(message);
        std::rethrow_exception(make_remote_error(type, message, "manager " + ref.address));
    } catch (const EOFError&) {
        conn.close();  // the next call connects again
        throw;
    } catch (const BrokenPipeError&) {
        conn.close();
        throw;
    }
}

ObjectRef make_object(const std::string& address, const std::string& authkey, const std::string& kind,
                      const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), {kind, name});
    ObjectRef server{address, authkey, kind, ""};
    auto r = call(server, "make", std::move(args));
    return ObjectRef{address, authkey, kind, r.at(0)};
}

}  // namespace detail

BaseManager::BaseManager(std::string address, ManagerOptions options)
    : address_(std::move(address)), options_(std::move(options)) {
    if (options_.authkey.empty() && !detail::is_unix_address(address_))
        throw ValueError(
            "a manager on a TCP address needs an authkey: without one, anyone who can reach the port "
            "could use its objects or stop it");
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
    server_.emplace(detail::run_server, ProcessOptions{.name = "SyncManager", .start_method = options_.start_method},
                    address_, options_.authkey, registered_, options_.registered_only, there);
    server_->start();
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
    if (connected_) {
        try {
            detail::call(detail::ObjectRef{address_, options_.authkey, "", ""}, "shutdown", {});
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
    connected_ = false;
}

void BaseManager::release(const std::string& name) {
    if (!connected_) throw ValueError("the manager is not started or connected: call start() or connect()");
    detail::call(detail::ObjectRef{address_, options_.authkey, "", ""}, "release", {name});
}

void BaseManager::declare(const std::string& kind, const std::string& name, std::vector<std::string> args) {
    if (server_ || connected_) throw ValueError("register objects before start() or serve_forever()");
    if (name.empty()) throw ValueError("a registered object needs a name");
    registered_.emplace_back(kind, name, std::move(args));
}

detail::ObjectRef BaseManager::make(const std::string& kind, const std::string& name, std::vector<std::string> args) {
    if (!connected_) throw ValueError("the manager is not started or connected: call start() or connect()");
    return detail::make_object(address_, options_.authkey, kind, name, std::move(args));
}

Manager::Manager(ManagerOptions options)
    : BaseManager("@mprocess-manager-" + std::to_string(::getpid()) + "-" +
                      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()),
                  [&] {
                      // A key of its own, known to this process and the children it starts.
                      if (options.authkey.empty()) options.authkey = platform::random_bytes(32);
                      return options;
                  }()) {
    start();
}

Manager::~Manager() = default;

}  // namespace mprocess
