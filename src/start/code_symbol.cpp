// SPDX-License-Identifier: Apache-2.0
#include "start/code_symbol.hpp"

#include <pthread.h>

#include <atomic>
#include <cstring>
#include <link.h>
#include <mutex>

#include "mprocess/detail/entry_point.hpp"
#include "mprocess/error.hpp"

namespace mprocess::detail {
namespace {

struct EntryNode {
    const void* code;
    EntryNode* next;
};

// Only ever grows, and its nodes live as long as the process: a static-initialization-time list.
std::atomic<EntryNode*> entry_points{nullptr};

std::string build_id_of(const dl_phdr_info* info) {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const auto& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_NOTE) continue;
        auto* p = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
        const char* end = p + ph.p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            auto* n = reinterpret_cast<const ElfW(Nhdr)*>(p);
            const char* name = p + sizeof(ElfW(Nhdr));
            const char* desc = name + ((n->n_namesz + 3) & ~3u);
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0)
                return std::string(desc, n->n_descsz);
            p = desc + ((n->n_descsz + 3) & ~3u);
        }
    }
    return {};
}

// The loaded segment of `info` holding `addr`, if any.
const ElfW(Phdr) * segment_of(const dl_phdr_info* info, std::uintptr_t addr) {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const auto& ph = info->dlpi_phdr[i];
        const std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        if (ph.p_type == PT_LOAD && addr >= lo && addr < lo + ph.p_memsz) return &ph;
    }
    return nullptr;
}

struct Lookup {
    std::uintptr_t addr = 0;       // find the object containing this address,
    const Symbol* want = nullptr;  // or the object this symbol names
    Symbol found;
    std::uintptr_t base = 0;
    bool executable = false;  // want: whether its offset lands in an executable segment
    bool ok = false;
};

int visit(dl_phdr_info* info, std::size_t, void* data) {
    auto& q = *static_cast<Lookup*>(data);
    const std::string name = info->dlpi_name ? info->dlpi_name : "";
    if (q.want) {
        if (name != q.want->object) return 0;
        q.found.build_id = build_id_of(info);
        q.base = info->dlpi_addr;
        const ElfW(Phdr)* seg = segment_of(info, info->dlpi_addr + q.want->offset);
        q.executable = seg && (seg->p_flags & PF_X);
        return q.ok = true;
    }
    if (segment_of(info, q.addr)) {
        q.found = Symbol{name, build_id_of(info), q.addr - info->dlpi_addr};
        return q.ok = true;
    }
    return 0;
}

// dl_iterate_phdr walks under the dynamic linker's lock, which glibc does not reset in a forked
// child: a fork() while another thread walks leaves it held there for good, and the child's first
// walk (a fork-method worker finding its task's code) waits forever. So every walk of ours holds
// walk_mutex, and every fork() in this process takes it first (pthread_atfork): no fork happens
// amid one of our walks. Registered at start-up, before any thread can walk or fork.
std::mutex walk_mutex;
const bool fork_waits_for_walks = [] {
    auto lock = [] { walk_mutex.lock(); };
    auto unlock = [] { walk_mutex.unlock(); };
    return pthread_atfork(lock, unlock, unlock) == 0;
}();

void walk(Lookup& q) {
    std::lock_guard lock(walk_mutex);
    dl_iterate_phdr(visit, &q);
}

void* resolve(const Symbol& s, bool& executable) {
    Lookup q;
    q.want = &s;
    walk(q);
    const std::string what = s.object.empty() ? std::string("the program") : "'" + s.object + "'";
    if (!q.ok) throw ProcessError(what + ", which holds the code to run, is not loaded here");
    if (q.found.build_id != s.build_id)
        throw ProcessError(what + " is not the same build here as in the sender (build-id differs)");
    executable = q.executable;
    return reinterpret_cast<void*>(q.base + s.offset);
}

}  // namespace

bool is_entry_point(const void* code) noexcept {
    for (EntryNode* n = entry_points.load(std::memory_order_acquire); n; n = n->next)
        if (n->code == code) return true;
    return false;
}

Symbol code_symbol(const void* addr) {
    Lookup q;
    q.addr = reinterpret_cast<std::uintptr_t>(addr);
    walk(q);
    if (!q.ok) throw ProcessError("cannot find the loaded object holding the code to run");
    return q.found;
}

void* entry_address(const Symbol& s) {
    bool executable = false;
    void* p = resolve(s, executable);
    if (!is_entry_point(p))
        throw ProcessError("refused to run code at offset " + std::to_string(s.offset) +
                           ": it is not an entry point this program registered");
    return p;
}

void* function_address(const Symbol& s) {
    bool executable = false;
    void* p = resolve(s, executable);
    if (!executable)
        throw ProcessError("refused to run code at offset " + std::to_string(s.offset) + ": it is not in code");
    return p;
}

}  // namespace mprocess::detail

namespace mprocess {

bool EntryPoints::add(const void* code) noexcept {
    auto* node = new (std::nothrow) detail::EntryNode{code, detail::entry_points.load(std::memory_order_relaxed)};
    if (!node) return false;  // then that entry is refused, never run unchecked
    while (!detail::entry_points.compare_exchange_weak(node->next, node, std::memory_order_release,
                                                       std::memory_order_relaxed)) {
    }
    return true;
}
}  // namespace mprocess
