// The Pool's machinery: workers, each with its own duplex pipe, and one manager thread here that
// hands tasks to idle workers, collects results, and replaces workers that die.
//
// A task message is (invoker symbol, function symbol, encoded arguments); an answer is a status
// byte (0: result, 1: exception as (type, message)) and its payload. The manager watches every
// worker's connection: a result completes the worker's task; end of file means the worker died,
// and its task fails with WorkerLost once its exit status is known.
#include "mprocess/pool.hpp"

#include <cxxabi.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <utility>
#include <deque>
#include <map>
#include <optional>
#include <thread>

#include "mprocess/connection.hpp"
#include "mprocess/context.hpp"
#include "mprocess/process.hpp"
#include "platform/posix.hpp"
#include "popen_internal.hpp"

namespace mprocess {

RemoteError::RemoteError(std::string type, std::string message, pid_t pid)
    : Error(type + ": " + message + " (in worker " + std::to_string(pid) + ")"),
      type_(std::move(type)),
      message_(std::move(message)),
      pid_(pid) {}

WorkerLost::WorkerLost(pid_t pid, int exitcode)
    : Error("worker " + std::to_string(pid) +
            (exitcode < 0 ? " was killed by signal " + std::to_string(-exitcode)
                          : " exited with code " + std::to_string(exitcode)) +
            " while running the task"),
      pid_(pid),
      signal_(exitcode < 0 ? -exitcode : 0),
      exitcode_(exitcode) {}

namespace detail {
namespace {

using TaskMessage = std::tuple<Symbol, Symbol, std::string>;
using Failure = std::tuple<std::string, std::string>;

std::string type_of_current_exception() {
    const std::type_info* t = abi::__cxa_current_exception_type();
    if (!t) return "unknown";
    int status = 0;
    char* name = abi::__cxa_demangle(t->name(), nullptr, nullptr, &status);
    std::string s = status == 0 && name ? name : t->name();
    std::free(name);
    return s;
}

// The worker's main loop. A plain function, so that it starts under every method.
void pool_worker(Connection conn, unsigned maxtasks) {
    std::map<std::string, void*> resolved;
    auto address = [&resolved](const Symbol& s) {
        const std::string key = s.object + '\0' + s.build_id + '\0' + std::to_string(s.offset);
        auto it = resolved.find(key);
        if (it == resolved.end()) it = resolved.emplace(key, code_address(s)).first;
        return it->second;
    };
    for (unsigned done = 0; maxtasks == 0 || done < maxtasks; ++done) {
        std::string msg;
        try {
            msg = conn.recv_bytes();
        } catch (const EOFError&) {
            return;  // the pool is gone
        }
        if (msg.empty()) return;  // the pool's stop
        std::string answer(1, '\0');
        try {
            auto [invoker, fn, args] = decode<TaskMessage>(msg);
            std::string result;
            reinterpret_cast<Invoker>(address(invoker))(address(fn), args, result);
            answer += result;
        } catch (const std::exception& e) {
            answer.assign(1, '\1');
            answer += encode(Failure{type_of_current_exception(), e.what()});
        } catch (...) {
            answer.assign(1, '\1');
            answer += encode(Failure{type_of_current_exception(), "a non-standard exception"});
        }
        conn.send_bytes(answer);
    }
}

struct Task {
    std::string message;
    std::shared_ptr<TaskState> st;
};

struct Worker {
    std::optional<Process> proc;
    Connection conn;
    std::optional<Task> current;
    bool initializing = false;  // current is the initializer
    unsigned done = 0;          // tasks answered
};

// The pool whose manager this thread is, if any: a wait for one of its results here would never end.
thread_local const void* t_manager_of = nullptr;

void run_hook(const std::function<void()>& hook) noexcept {
    try {
        hook();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mprocess: a Pool callback threw %s: %s\n", type_of_current_exception().c_str(),
                     e.what());
    } catch (...) {
        std::fprintf(stderr, "mprocess: a Pool callback threw %s\n", type_of_current_exception().c_str());
    }
}

}  // namespace

void finish(TaskState& st, std::string result, std::exception_ptr error) {
    std::vector<std::function<void()>> hooks;
    {
        std::lock_guard lock(st.m);
        if (st.done) return;
        st.done = true;
        st.result = std::move(result);
        st.error = std::move(error);
        hooks.swap(st.on_done);
    }
    st.cv.notify_all();
    for (const auto& h : hooks) run_hook(h);
}

void when_done(const std::shared_ptr<TaskState>& st, std::function<void()> fn) {
    {
        std::lock_guard lock(st->m);
        if (!st->done) {
            st->on_done.push_back(std::move(fn));
            return;
        }
    }
    run_hook(fn);
}

std::shared_ptr<TaskState> join_parts(std::vector<std::shared_ptr<TaskState>> parts) {
    auto whole = std::make_shared<TaskState>();
    whole->joined = true;
    whole->pool = parts.empty() ? nullptr : parts.front()->pool;
    whole->parts = parts;
    if (parts.empty()) {
        finish(*whole, {}, nullptr);
        return whole;
    }
    struct Count {
        std::mutex m;
        std::size_t left;
        std::exception_ptr first;
    };
    auto count = std::make_shared<Count>();
    count->left = parts.size();
    // Each hook holds the whole until the last part is done: a cycle that every task's end breaks.
    for (const auto& p : parts) {
        when_done(p, [count, whole, part = p.get()] {
            std::exception_ptr error;
            bool last;
            {
                std::lock_guard lock(count->m);
                if (part->error && !count->first) count->first = part->error;
                last = --count->left == 0;
                error = count->first;
            }
            if (last) finish(*whole, {}, error);
        });
    }
    return whole;
}

bool wait_task(TaskState& st, const Timeout& timeout) {
    std::unique_lock lock(st.m);
    if (!st.done && st.pool && st.pool == t_manager_of)
        throw ValueError("waiting for a Pool's result in one of its callbacks would never end: callbacks run "
                         "in the thread that collects the results");
    if (timeout.infinite()) {
        st.cv.wait(lock, [&] { return st.done; });
        return true;
    }
    return st.cv.wait_for(lock, timeout.duration(), [&] { return st.done; });
}

void report_progress(const std::vector<std::shared_ptr<TaskState>>& parts, std::size_t total, std::size_t chunksize,
                     const Progress& progress) {
    struct Count {
        std::mutex m;
        std::condition_variable cv;
        std::size_t done = 0;
    };
    auto count = std::make_shared<Count>();
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const std::size_t n = std::min(chunksize, total - i * chunksize);
        when_done(parts[i], [count, n] {
            {
                std::lock_guard lock(count->m);
                count->done += n;
            }
            count->cv.notify_all();
        });
    }
    std::size_t shown = 0;
    progress(0, total);
    while (shown < total) {
        std::unique_lock lock(count->m);
        count->cv.wait(lock, [&] { return count->done != shown; });
        shown = count->done;
        lock.unlock();
        progress(shown, total);
    }
}

class PoolCore {
public:
    PoolCore(unsigned n, std::string method, const PoolOptions& options)
        : n_(n),
          method_(std::move(method)),
          maxtasks_(options.maxtasksperchild),
          break_on_loss_(options.on_worker_lost == OnWorkerLost::break_pool),
          bell_(platform::make_eventfd()) {
        if (options.initializer)
            init_ = encode(TaskMessage{symbol(reinterpret_cast<void*>(options.initializer.invoker_)),
                                       symbol(options.initializer.fn_), options.initializer.args_});
        for (unsigned i = 0; i < n_; ++i) workers_.push_back(start_worker());
        manager_ = std::thread([this] { manage(); });
    }
    ~PoolCore() { terminate(); }

    std::shared_ptr<TaskState> submit(Invoker invoker, void* fn, std::string args) {
        auto st = std::make_shared<TaskState>();
        st->pool = this;
        std::string msg = encode(TaskMessage{symbol(reinterpret_cast<void*>(invoker)), symbol(fn), std::move(args)});
        {
            std::lock_guard lock(m_);
            if (!broken_.empty()) throw BrokenPool(broken_);
            if (closed_ || terminated_) throw ValueError("Pool not running");
            pending_.push_back({std::move(msg), st});
        }
        platform::signal_efd(bell_);
        return st;
    }

    // The tasks no worker has begun, taken back: st, or all of them if st is null.
    bool cancel(const std::shared_ptr<TaskState>& st) {
        std::deque<Task> taken;
        {
            std::lock_guard lock(m_);
            if (st) {
                auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Task& t) { return t.st == st; });
                if (it == pending_.end()) return false;
                taken.push_back(std::move(*it));
                pending_.erase(it);
            } else {
                taken.swap(pending_);
            }
        }
        const auto why = std::make_exception_ptr(CancelledError("the task was cancelled before it started"));
        for (auto& t : taken) {
            {
                std::lock_guard lock(t.st->m);
                t.st->cancelled = true;
            }
            finish(*t.st, {}, why);
        }
        return true;
    }

    void close() {
        {
            std::lock_guard lock(m_);
            closed_ = true;
        }
        platform::signal_efd(bell_);
    }

    void join() {
        {
            std::lock_guard lock(m_);
            if (!closed_ && !terminated_) throw ValueError("join() of a Pool that is still running: close() it first");
        }
        if (t_manager_of == this) throw ValueError("join() of a Pool in one of its own callbacks would never end");
        std::lock_guard lock(lifecycle_m_);
        if (manager_.joinable()) manager_.join();
    }

    // From a callback (the manager thread) this only asks: the manager stops when the callback returns.
    void terminate() noexcept {
        {
            std::lock_guard lock(m_);
            terminated_ = true;
        }
        platform::signal_efd(bell_);
        if (t_manager_of == this) return;
        std::lock_guard lock(lifecycle_m_);
        if (manager_.joinable()) manager_.join();
        shut_down();  // for a pool whose manager had already ended after close()
    }

    std::vector<pid_t> pids() const {
        std::lock_guard lock(m_);
        return pids_;
    }

private:
    Worker start_worker() {
        auto [here, there] = Pipe();
        Worker w;
        // Workers die with this process where the kernel can arrange it (not under forkserver, whose
        // server is their parent); otherwise they see their pipe close and exit.
        // Named as Python names them: ForkPoolWorker-1, SpawnPoolWorker-2, ForkServerPoolWorker-3.
        const std::string kind = method_ == "fork" ? "Fork" : method_ == "spawn" ? "Spawn" : "ForkServer";
        const unsigned messages = maxtasks_ == 0 ? 0 : maxtasks_ + (init_.empty() ? 0 : 1);
        w.proc.emplace(pool_worker,
                       ProcessOptions{.name = kind + "PoolWorker-" + std::to_string(++started_),
                                      .daemon = true,
                                      .die_with_parent = method_ != "forkserver",
                                      .start_method = method_},
                       there, messages);
        w.proc->start();
        there.close();
        w.conn = here;
        if (!init_.empty()) {
            // Its first message: the worker answers it before it takes any task.
            w.current = Task{init_, std::make_shared<TaskState>()};
            w.initializing = true;
            try {
                w.conn.send_bytes(init_);
            } catch (const Error&) {
                // It died already; serve() sees the end of its pipe.
            }
        }
        return w;
    }

    Symbol symbol(void* addr) {
        std::lock_guard lock(symbols_m_);
        auto it = symbols_.find(addr);
        if (it == symbols_.end()) it = symbols_.emplace(addr, code_symbol(addr)).first;
        return it->second;
    }

    void record_pids() {
        std::vector<pid_t> p;
        for (auto& w : workers_) p.push_back(w.proc ? w.proc->pid() : 0);
        std::lock_guard lock(m_);
        pids_ = std::move(p);
    }

    // Gives idle workers the oldest pending tasks.
    void dispatch() {
        for (auto& w : workers_) {
            // A worker that has run its maxtasksperchild tasks gets no more: it is exiting.
            if (w.current || (maxtasks_ != 0 && w.done >= maxtasks_)) continue;
            Task t;
            {
                std::lock_guard lock(m_);
                if (pending_.empty()) return;
                t = std::move(pending_.front());
                pending_.pop_front();
            }
            {
                std::lock_guard lock(t.st->m);
                t.st->started = true;
            }
            try {
                w.conn.send_bytes(t.message);
                w.current = std::move(t);
            } catch (const Error&) {
                // The worker is gone; the task goes back, the death is handled when seen.
                {
                    std::lock_guard lock(t.st->m);
                    t.st->started = false;
                }
                std::lock_guard lock(m_);
                pending_.push_front(std::move(t));
                return;
            }
        }
    }

    void break_pool(std::string why) {
        std::lock_guard lock(m_);
        if (broken_.empty()) broken_ = std::move(why);
        terminated_ = true;
    }

    // A worker answered, or died.
    void serve(Worker& w) {
        std::string answer;
        try {
            answer = w.conn.recv_bytes();
        } catch (const EOFError&) {
            lost(w);
            return;
        }
        if (!w.current) return;
        auto st = w.current->st;
        w.current.reset();
        const bool init = std::exchange(w.initializing, false);
        if (!init) ++w.done;
        if (!answer.empty() && answer[0] == '\0') {
            finish(*st, answer.substr(1), nullptr);
            return;
        }
        std::exception_ptr error;
        try {
            auto [type, what] = decode<Failure>(std::string_view(answer).substr(answer.empty() ? 0 : 1));
            error = std::make_exception_ptr(RemoteError(type, what, w.proc->pid()));
            if (init) break_pool("the Pool's initializer failed in worker " + std::to_string(w.proc->pid()) + ": " +
                                 type + ": " + what);
        } catch (const Error& e) {
            error = std::make_exception_ptr(RemoteError("DecodeError", e.what(), w.proc->pid()));
        }
        finish(*st, {}, error);
    }

    // A worker's pipe ended: it died, or it exited after its maxtasksperchild tasks.
    void lost(Worker& w) {
        const pid_t pid = w.proc->pid();
        w.proc->join();
        const int code = w.proc->exitcode().value_or(-SIGKILL);
        const bool renewal = code == 0 && maxtasks_ != 0 && w.done >= maxtasks_ && !w.current;
        if (!renewal && (break_on_loss_ || w.initializing)) {
            const std::string how = WorkerLost(pid, code).what();
            break_pool(w.initializing ? "the Pool's initializer ended worker " + std::to_string(pid) + ": " + how
                                      : "the Pool is broken: " + how);
            return;
        }
        if (w.current) finish(*w.current->st, {}, std::make_exception_ptr(WorkerLost(pid, code)));
        w.current.reset();
        w.conn.close();
        w = start_worker();
        record_pids();
    }

    // Fails what is left and stops the workers: the end of a terminate() or of a broken pool.
    void shut_down() noexcept {
        std::deque<Task> left;
        std::string broken;
        {
            std::lock_guard lock(m_);
            left.swap(pending_);
            broken = broken_;
        }
        const auto why = broken.empty()
                             ? std::make_exception_ptr(ValueError("the Pool was terminated before the task finished"))
                             : std::make_exception_ptr(BrokenPool(broken));
        for (auto& t : left) finish(*t.st, {}, why);
        for (auto& w : workers_) {
            if (w.current) finish(*w.current->st, {}, why);
            w.current.reset();
            try {
                w.conn.close();
                if (w.proc && w.proc->is_alive()) w.proc->terminate();
            } catch (...) {
            }
        }
        for (auto& w : workers_) {
            try {
                if (w.proc && !w.proc->join(1.0)) {
                    w.proc->kill();
                    w.proc->join();
                }
            } catch (...) {
            }
        }
        workers_.clear();
        record_pids();
    }

    void manage() {
        t_manager_of = this;
        record_pids();
        for (;;) {
            bool closing;
            {
                std::lock_guard lock(m_);
                if (terminated_) break;
                closing = closed_ && pending_.empty();
            }
            dispatch();
            if (closing &&
                std::none_of(workers_.begin(), workers_.end(), [](const Worker& w) { return bool(w.current); })) {
                for (auto& w : workers_) {
                    try {
                        w.conn.send_bytes("");  // stop
                    } catch (const Error&) {
                    }
                }
                for (auto& w : workers_) w.proc->join();
                return;
            }
            std::vector<Waitable> objs{Waitable(bell_.get())};
            for (auto& w : workers_) objs.emplace_back(w.conn);
            auto ready = wait(objs);
            platform::drain_efd(bell_);
            for (auto& w : workers_)
                if (std::find(ready.begin(), ready.end(), Waitable(w.conn)) != ready.end()) serve(w);
        }
        shut_down();
    }

    const unsigned n_;
    const std::string method_;
    const unsigned maxtasks_;
    const bool break_on_loss_;
    std::string init_;  // the initializer's task message, or empty
    unsigned started_ = 0;
    platform::Fd bell_;
    mutable std::mutex m_;
    std::deque<Task> pending_;
    bool closed_ = false;
    bool terminated_ = false;
    std::string broken_;  // why the pool is broken, or empty
    std::vector<pid_t> pids_;
    std::vector<Worker> workers_;  // the manager's, after construction
    std::mutex symbols_m_;
    std::map<void*, Symbol> symbols_;
    std::mutex lifecycle_m_;
    std::thread manager_;
};

std::shared_ptr<PoolCore> make_pool(unsigned processes, const PoolOptions& options) {
    if (processes == 0) throw ValueError("Number of processes must be at least 1");
    const std::string method = options.start_method.empty() ? get_start_method() : options.start_method;
    return std::make_shared<PoolCore>(processes, method, options);
}

std::shared_ptr<TaskState> submit(PoolCore& core, Invoker invoker, void* fn, std::string args) {
    return core.submit(invoker, fn, std::move(args));
}
bool cancel_task(PoolCore& core, const std::shared_ptr<TaskState>& st) {
    return st && core.cancel(st);
}
void cancel_pending(PoolCore& core) {
    core.cancel(nullptr);
}
void pool_close(PoolCore& core) {
    core.close();
}
void pool_terminate(PoolCore& core) noexcept {
    core.terminate();
}
void pool_join(PoolCore& core) {
    core.join();
}
std::vector<pid_t> pool_pids(const PoolCore& core) {
    return core.pids();
}

}  // namespace detail

Pool::Pool(std::optional<unsigned> processes, PoolOptions options)
    : core_(detail::make_pool(processes.value_or(static_cast<unsigned>(cpu_count())), options)),
      processes_(processes.value_or(static_cast<unsigned>(cpu_count()))) {}

}  // namespace mprocess
