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
    unsigned done = 0;  // tasks answered
};

void finish(TaskState& st, std::string result, std::exception_ptr error) {
    {
        std::lock_guard lock(st.m);
        if (st.done) return;
        st.done = true;
        st.result = std::move(result);
        st.error = std::move(error);
    }
    st.cv.notify_all();
    if (st.notifier) {
        std::lock_guard lock(st.notifier->m);  // so that a waiter between its check and its wait sees it
        st.notifier->cv.notify_all();
    }
}

}  // namespace

class PoolCore {
public:
    PoolCore(unsigned n, std::string method, unsigned maxtasks)
        : n_(n), method_(std::move(method)), maxtasks_(maxtasks), bell_(platform::make_eventfd()) {
        for (unsigned i = 0; i < n_; ++i) workers_.push_back(start_worker());
        manager_ = std::thread([this] { manage(); });
    }
    ~PoolCore() { terminate(); }

    std::shared_ptr<TaskState> submit(Invoker invoker, void* fn, std::string args, std::shared_ptr<Notifier> notifier) {
        auto st = std::make_shared<TaskState>();
        st->notifier = std::move(notifier);
        std::string msg = encode(TaskMessage{symbol(reinterpret_cast<void*>(invoker)), symbol(fn), std::move(args)});
        {
            std::lock_guard lock(m_);
            if (closed_ || terminated_) throw ValueError("Pool not running");
            pending_.push_back({std::move(msg), st});
        }
        platform::signal_efd(bell_);
        return st;
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
        if (manager_.joinable()) manager_.join();
    }

    void terminate() noexcept {
        {
            std::lock_guard lock(m_);
            terminated_ = true;
        }
        platform::signal_efd(bell_);
        if (manager_.joinable()) manager_.join();
        std::deque<Task> left;
        {
            std::lock_guard lock(m_);
            left.swap(pending_);
        }
        auto gone = std::make_exception_ptr(ValueError("the Pool was terminated before the task ran"));
        for (auto& t : left) finish(*t.st, {}, gone);
        for (auto& w : workers_) {
            if (w.current) finish(*w.current->st, {}, gone);
            w.current.reset();
            try {
                w.conn.close();
                if (w.proc && w.proc->is_alive()) {
                    w.proc->terminate();
                    if (!w.proc->join(1.0)) {
                        w.proc->kill();
                        w.proc->join();
                    }
                }
            } catch (...) {
            }
        }
        workers_.clear();
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
        w.proc.emplace(pool_worker,
                       ProcessOptions{.name = kind + "PoolWorker-" + std::to_string(++started_),
                                      .daemon = true,
                                      .die_with_parent = method_ != "forkserver",
                                      .start_method = method_},
                       there, maxtasks_);
        w.proc->start();
        there.close();
        w.conn = here;
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
            try {
                w.conn.send_bytes(t.message);
                w.current = std::move(t);
            } catch (const Error&) {
                // The worker is gone; the task goes back, the death is handled when seen.
                std::lock_guard lock(m_);
                pending_.push_front(std::move(t));
                return;
            }
        }
    }

    // A worker answered, or died.
    void serve(Worker& w) {
        std::string answer;
        try {
            answer = w.conn.recv_bytes();
        } catch (const EOFError&) {
            replace(w);
            return;
        }
        if (!w.current) return;
        auto st = w.current->st;
        w.current.reset();
        ++w.done;
        if (!answer.empty() && answer[0] == '\0') {
            finish(*st, answer.substr(1), nullptr);
            return;
        }
        std::exception_ptr error;
        try {
            auto [type, what] = decode<Failure>(std::string_view(answer).substr(answer.empty() ? 0 : 1));
            error = std::make_exception_ptr(RemoteError(type, what, w.proc->pid()));
        } catch (const Error& e) {
            error = std::make_exception_ptr(RemoteError("DecodeError", e.what(), w.proc->pid()));
        }
        finish(*st, {}, error);
    }

    void replace(Worker& w) {
        const pid_t pid = w.proc->pid();
        w.proc->join();
        const int code = w.proc->exitcode().value_or(-SIGKILL);
        if (w.current) finish(*w.current->st, {}, std::make_exception_ptr(WorkerLost(pid, code)));
        w.current.reset();
        w.conn.close();
        w = start_worker();
        record_pids();
    }

    void manage() {
        record_pids();
        for (;;) {
            bool closing;
            {
                std::lock_guard lock(m_);
                if (terminated_) return;
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
    }

    const unsigned n_;
    const std::string method_;
    const unsigned maxtasks_;
    unsigned started_ = 0;
    platform::Fd bell_;
    mutable std::mutex m_;
    std::deque<Task> pending_;
    bool closed_ = false;
    bool terminated_ = false;
    std::vector<pid_t> pids_;
    std::vector<Worker> workers_;  // the manager's, after construction
    std::mutex symbols_m_;
    std::map<void*, Symbol> symbols_;
    std::thread manager_;
};

std::shared_ptr<PoolCore> make_pool(unsigned processes, const PoolOptions& options) {
    if (processes == 0) throw ValueError("Number of processes must be at least 1");
    const std::string method = options.start_method.empty() ? get_start_method() : options.start_method;
    return std::make_shared<PoolCore>(processes, method, options.maxtasksperchild);
}

std::shared_ptr<TaskState> submit(PoolCore& core, Invoker invoker, void* fn, std::string args,
                                  std::shared_ptr<Notifier> notifier) {
    return core.submit(invoker, fn, std::move(args), std::move(notifier));
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

bool wait_task(TaskState& st, const Timeout& timeout) {
    std::unique_lock lock(st.m);
    if (timeout.infinite()) {
        st.cv.wait(lock, [&] { return st.done; });
        return true;
    }
    return st.cv.wait_for(lock, timeout.duration(), [&] { return st.done; });
}

}  // namespace detail

Pool::Pool(std::optional<unsigned> processes, PoolOptions options)
    : core_(detail::make_pool(processes.value_or(static_cast<unsigned>(cpu_count())), options)),
      processes_(processes.value_or(static_cast<unsigned>(cpu_count()))) {}

}  // namespace mprocess
