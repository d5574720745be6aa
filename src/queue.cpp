// SPDX-License-Identifier: Apache-2.0
// The shared-memory queue behind Queue, JoinableQueue and SimpleQueue.
//
// Memory: one memfd = [control page][hot ring][warm ring][overflow]. The hot ring
// (QueueOptions::ring_bytes, 256 KiB by default) carries the usual traffic, items up to a quarter
// of it, and stays resident. The warm ring (512 MiB of address space, pages touched only when
// used) takes items up to half its size, and gives its pages back when the queue is found idle.
// The overflow (cold: a sparse area of up to 32 GiB of address space) takes larger items and the
// backlog that fills the rings; consumers punch the pages they have drained, so a backlog's
// memory goes back to the system. Positions only grow and are taken modulo the area's size.
//
// Records: [u64 header][payload][pad to 8]. The header holds the payload length (39 bits) and a
// stamp (25 bits: the item's sequence number's low 24 and a bit always set, so never 0). The
// slot after every record is zeroed before the record's header is stored, so a consumer
// recognises a published record by its stamp alone: one release store publishes, and no stale
// bytes can pass for a record. A jump record (a length of all ones less the area it leads to,
// then the target position) sends the reader to another area or to the start of the next lap;
// producers keep room for one at the end of every area.
//
// Locks: one for producers, one for consumers (ShmLock: a dead owner's lock is taken over). State
// changes are ordered so that whoever takes over a dead owner's lock can finish or undo its step
// by looking at the record at its position (repair_producer, repair_consumer).
//
// Waiting (wait/wait.hpp): spin briefly, then sleep on a futex word (a sequence number plus a
// sleeper count). A waker stores, fences, and rings only if someone sleeps; a sleeper announces
// itself, fences, and looks again before it sleeps, so no wake-up is missed. Sleepers look again
// at least every 200 ms in case a waker was killed between its store and its ring.
#include "queue_core.hpp"
#include "start/popen.hpp"
#include "wait/wait.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <tuple>

namespace mprocess::detail {
namespace {

using platform::Deadline;

constexpr std::uint64_t kMagic = 0x3175657551706d;  // "mpQueu1"
constexpr std::uint64_t kCtlBytes = 4096;
constexpr std::uint64_t kLenBits = 39;
constexpr std::uint64_t kLenMask = (std::uint64_t{1} << kLenBits) - 1;
// A jump's length field names the area it leads to: kJump - area (areas 0..2); the target
// position, a full 64 bits, follows.
constexpr std::uint64_t kJump = kLenMask;
constexpr std::uint64_t kMaxItem = kJump - 3;
constexpr std::uint64_t kJumpBytes = 16;
constexpr std::uint64_t kReserve = kJumpBytes + 8;  // a jump record and the zeroed slot after it
constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kPunchChunk = std::uint64_t{1} << 20;
constexpr std::uint64_t kWarmSize = std::uint64_t{512} << 20;
constexpr std::uint64_t kColdMax = std::uint64_t{32} << 30;
constexpr std::uint64_t kColdMin = std::uint64_t{1} << 30;
// A spinning consumer looks rarely: each look pulls the line the producer is writing away from
// it (see try_take).
constexpr Pace kLookRarely{.pauses_per_look = 8};

constexpr std::uint64_t align8(std::uint64_t n) {
    return (n + 7) & ~std::uint64_t{7};
}
constexpr std::uint64_t record_bytes(std::uint64_t len) {
    return 8 + align8(len);
}
// The low 24 bits of the sequence number and a bit that is always set: never 0.
constexpr std::uint64_t stamp(std::uint64_t seq) {
    return (seq & 0xFFFFFF) | 0x1000000;
}
constexpr std::uint64_t header(std::uint64_t seq, std::uint64_t len) {
    return stamp(seq) << kLenBits | len;
}
constexpr std::uint64_t stamp_of(std::uint64_t h) {
    return h >> kLenBits;
}
constexpr std::uint64_t length_of(std::uint64_t h) {
    return h & kLenMask;
}

constexpr bool is_jump(std::uint64_t h) {
    return (h & kLenMask) > kMaxItem;
}
constexpr int jump_area(std::uint64_t h) {
    return static_cast<int>(kJump - (h & kLenMask));
}

std::uint64_t pow2_at_least(std::uint64_t want, std::uint64_t floor) {
    std::uint64_t v = floor;
    while (v < want) v <<= 1;
    return v;
}

}  // namespace

// ---- waiting ------------------------------------------------------------------------------------

template <class Ready, class Idle>
bool QueueCore::wait_on(WaitWord& w, Ready ready, const Deadline& deadline, Idle idle) {
    auto look = [&](bool asleep) {
        if (ready(asleep)) return true;
        if (asleep) check_open(" while waiting on it");
        return false;
    };
    return wait_until(look, FutexSleeper(w.seq, w.sleepers), deadline, kLookRarely, idle);
}

void QueueCore::wake(WaitWord& w, int n) noexcept {
    FutexSleeper(w.seq, w.sleepers).ring_after_locked_op(n);  // the caller's unlock was one
}

// ---- records ------------------------------------------------------------------------------------

void QueueCore::copy_in(int r, std::uint64_t pos, std::string_view src) noexcept {
    if (src.empty()) return;
    const std::uint64_t off = pos & mask_[r];
    const std::size_t first = std::min<std::uint64_t>(src.size(), size_[r] - off);
    std::memcpy(area_[r] + off, src.data(), first);
    std::memcpy(area_[r], src.data() + first, src.size() - first);
}

// Writes a record at (r, pos) and publishes it: payload, zeroed next slot, then the header.
void QueueCore::write_record(int r, std::uint64_t pos, std::uint64_t seq, const Item& item) noexcept {
    copy_in(r, pos + 8, item.head);
    copy_in(r, pos + 8 + item.head.size(), item.body);
    slot(r, pos + record_bytes(item.size())).store(0, std::memory_order_relaxed);
    slot(r, pos).store(header(seq, item.size()), std::memory_order_release);
}

void QueueCore::write_jump(int r, std::uint64_t pos, std::uint64_t seq, int to, std::uint64_t target) noexcept {
    slot(r, pos + 8).store(target, std::memory_order_relaxed);
    slot(r, pos + kJumpBytes).store(0, std::memory_order_relaxed);
    slot(r, pos).store(header(seq, kJump - static_cast<std::uint64_t>(to)), std::memory_order_release);
}

// ---- put ----------------------------------------------------------------------------------------

// How far the area's positions may go: consumers' position plus the size for the rings, the
// given-back mark plus the size for the overflow. `fresh` rereads the consumers' line.
std::uint64_t QueueCore::limit(int x, bool fresh) {
    Ctl& c = *ctl_;
    if (fresh) seen_[x] = (x == kCold ? c.punched : c.head[x]).load(std::memory_order_acquire);
    return seen_[x] + size_[x];
}

// Where a record of `rec` bytes would go in area x, if it has room now. The hot ring lets a
// record wrap around its end; the others keep a record in one piece, skipping to the next lap.
std::optional<std::uint64_t> QueueCore::target_in(int x, std::uint64_t rec) {
    const std::uint64_t tail = ctl_->tail[x].load(std::memory_order_relaxed);
    const std::uint64_t off = tail & mask_[x];
    const std::uint64_t lap = tail + (size_[x] - off);
    auto fits = [&](std::uint64_t at) {
        return at + rec + kReserve <= limit(x, false) || at + rec + kReserve <= limit(x, true);
    };
    // The warm ring starts again at its beginning as soon as consumers are far enough into the
    // lap: the pages in use stay few and warm instead of creeping around the whole ring.
    if (x == kWarm && off != 0 && fits(lap)) return lap;
    const std::uint64_t at = (x != kHot && off + rec + kReserve > size_[x]) ? lap : tail;
    if (fits(at)) return at;
    return std::nullopt;
}

// Producers prefer the hot ring for small items and the warm ring for medium ones; the overflow
// takes what they cannot. Once away from a ring, they return only when it is at most half full,
// so that a full ring does not make every other record a jump.
bool QueueCore::place(const Item& item) {
    Ctl& c = *ctl_;
    const std::uint64_t rec = record_bytes(item.size());
    const std::uint64_t seq = c.nput.load(std::memory_order_relaxed) + 1;
    const int r = static_cast<int>(c.pregion.load(std::memory_order_relaxed));
    const std::uint64_t tail = c.tail[r].load(std::memory_order_relaxed);
    if (r == kHot && rec + kReserve <= size_[kHot] / 4 && tail + rec + kReserve <= seen_[kHot] + size_[kHot]) {
        // The usual case, kept short: a small item, and room in the hot ring as last seen.
        write_record(kHot, tail, seq, item);
        c.nput.store(seq, std::memory_order_release);
        c.tail[kHot].store(tail + rec, std::memory_order_relaxed);
        return true;
    }

    int to = -1;
    std::uint64_t target = 0;
    for (int x = rec + kReserve <= size_[kHot] / 4    ? kHot
                 : rec + kReserve <= size_[kWarm] / 2 ? kWarm
                                                      : kCold;
         x <= kCold && to < 0; ++x) {
        if (x != r && x != kCold) {
            const std::uint64_t used = c.tail[x].load(std::memory_order_relaxed) + size_[x] - limit(x, true);
            if (used > size_[x] / 2) continue;
        }
        if (auto at = target_in(x, rec)) {
            to = x;
            target = *at;
        }
    }
    if (to < 0) return false;
    if (to == kWarm) c.warm_used.store(1, std::memory_order_relaxed);
    if (to == r && target == tail) {
        write_record(r, tail, seq, item);
        c.nput.store(seq, std::memory_order_release);
        c.tail[r].store(tail + rec, std::memory_order_relaxed);
        return true;
    }
    // The item first, then the jump that leads to it: until the jump is published, neither is seen.
    write_record(to, target, seq, item);
    write_jump(r, tail, seq, to, target);
    // Each store leaves a state repair_producer() can finish: the new area's tail at the item
    // before the switch, the old area's tail past the jump after it.
    c.nput.store(seq, std::memory_order_release);
    c.tail[to].store(target, std::memory_order_relaxed);
    c.pregion.store(static_cast<std::uint32_t>(to), std::memory_order_relaxed);
    if (to != r) c.tail[r].store(tail + kJumpBytes, std::memory_order_relaxed);
    c.tail[to].store(target + rec, std::memory_order_relaxed);
    return true;
}

// A producer died holding the lock. Its record, if its header was stored, is in the queue; finish
// the bookkeeping it did not get to. (The slot at the tail is zero unless it wrote there.)
void QueueCore::repair_producer() {
    Ctl& c = *ctl_;
    // Died after switching areas but before moving past the jump it left in the old one: that
    // area's tail slot holds a jump, which in a consistent state it never does.
    const int now_in = static_cast<int>(c.pregion.load(std::memory_order_relaxed));
    for (int x : {kHot, kWarm, kCold}) {
        const std::uint64_t tail = c.tail[x].load(std::memory_order_relaxed);
        if (x != now_in && is_jump(slot(x, tail).load(std::memory_order_acquire)))
            c.tail[x].store(tail + kJumpBytes, std::memory_order_relaxed);
    }
    for (;;) {
        const int r = static_cast<int>(c.pregion.load(std::memory_order_relaxed));
        const std::uint64_t tail = c.tail[r].load(std::memory_order_relaxed);
        const std::uint64_t h = slot(r, tail).load(std::memory_order_acquire);
        const std::uint64_t n = c.nput.load(std::memory_order_relaxed);
        const bool counted = n != 0 && stamp_of(h) == stamp(n);
        if (!counted && stamp_of(h) != stamp(n + 1)) return;
        if (is_jump(h)) {
            const int to = jump_area(h);
            const std::uint64_t target = slot(r, tail + 8).load(std::memory_order_relaxed);
            c.tail[to].store(target, std::memory_order_relaxed);
            c.pregion.store(static_cast<std::uint32_t>(to), std::memory_order_relaxed);
            if (to != r) c.tail[r].store(tail + kJumpBytes, std::memory_order_relaxed);
            continue;
        }
        if (!counted) c.nput.store(n + 1, std::memory_order_release);
        c.tail[r].store(tail + record_bytes(length_of(h)), std::memory_order_relaxed);
    }
}

void QueueCore::put(const Item& item, bool block, const Timeout& timeout) {
    check_open();
    const std::uint64_t rec = record_bytes(item.size());
    // An overflow record sits whole within one lap, wherever the lap happens to be: at most half.
    if (item.size() > kMaxItem || rec + kReserve > size_[kCold] / 2)
        throw ValueError("queue item of " + std::to_string(item.size()) +
                         " bytes is larger than this queue can hold (" +
                         std::to_string(size_[kCold] / 2 - kReserve - 8) + " bytes)");
    Ctl& c = *ctl_;
    const auto deadline = timeout.deadline();
    for (;;) {
        bool full = false;
        std::uint64_t nget = 0, punched = 0, warm = 0, hot = 0;
        {
            ShmLockGuard lock(c.plock);
            if (lock.owner_died) repair_producer();
            if (c.maxsize != 0 && c.nput.load(std::memory_order_relaxed) - nget_seen_ >= c.maxsize) {
                nget_seen_ = c.nget.load(std::memory_order_acquire);
                full = c.nput.load(std::memory_order_relaxed) - nget_seen_ >= c.maxsize;
            }
            if (!full && place(item)) break;
            // No room. Note how far consumers are, then decide again from there: progress made
            // before this point is seen by the second try, any later progress ends the wait.
            nget = c.nget.load(std::memory_order_acquire);
            punched = c.punched.load(std::memory_order_acquire);
            hot = c.head[kHot].load(std::memory_order_acquire);
            warm = c.head[kWarm].load(std::memory_order_acquire);
            nget_seen_ = nget;
            full = c.maxsize != 0 && c.nput.load(std::memory_order_relaxed) - nget >= c.maxsize;
            if (!full && place(item)) break;
        }
        if (!block) throw Full(full ? "queue is full" : "queue's overflow area is full");
        // Wait for a consumer to make progress, then look again.
        auto moved = [&](bool) {
            return c.nget.load(std::memory_order_acquire) != nget ||
                   c.punched.load(std::memory_order_acquire) != punched ||
                   c.head[kHot].load(std::memory_order_acquire) != hot ||
                   c.head[kWarm].load(std::memory_order_acquire) != warm;
        };
        if (!wait_on(c.space, moved, deadline, [] {})) throw Full("queue is full (timed out)");
    }
    wake(c.data, 1);
}

// ---- get ----------------------------------------------------------------------------------------

// True if a record (or a jump) awaits the next consumer. Read without the lock: a hint.
bool QueueCore::peek(bool before_sleep) const noexcept {
    const Ctl& c = *ctl_;
    const int r = std::min<int>(static_cast<int>(c.cregion.load(std::memory_order_acquire)), kCold);
    const std::uint64_t pos = c.head[r].load(std::memory_order_acquire);
    const std::uint64_t n = c.nget.load(std::memory_order_acquire);
    if (stamp_of(slot(r, pos).load(std::memory_order_acquire)) == stamp(n + 1)) return true;
    // The position and count just read may be torn by a consumer taking an item right now: before
    // sleeping, trust the counts too (the producers' line, so not while spinning).
    return before_sleep && c.nput.load(std::memory_order_acquire) > n;
}

// Returns drained overflow pages to the system, up to `upto` (rounded down to a page).
void QueueCore::punch(std::uint64_t upto) noexcept {
    Ctl& c = *ctl_;
    const std::uint64_t from = c.punched.load(std::memory_order_relaxed);
    upto &= ~(kPage - 1);
    if (upto <= from) return;
    for (std::uint64_t pos = from; pos < upto;) {
        const std::uint64_t off = pos & mask_[kCold];
        const std::uint64_t n = std::min(upto - pos, size_[kCold] - off);
        platform::punch_hole(memfd_.get(), offset_[kCold] + off, n);
        pos += n;
    }
    c.punched.store(upto, std::memory_order_release);
}

// The warm ring keeps its pages while items flow, since filling fresh shared pages costs several
// times a memcpy. A consumer that finds the queue empty and not about to be fed (get_nowait, or
// a get that has waited 200 ms) gives them back if the ring is empty.
void QueueCore::release_idle_memory() noexcept {
    Ctl& c = *ctl_;
    if (c.warm_used.load(std::memory_order_relaxed) == 0) return;
    ShmLockGuard consumers(c.clock);
    if (consumers.owner_died) repair_consumer();
    ShmLockGuard producers(c.plock);  // always in this order: producers never take clock
    if (producers.owner_died) repair_producer();
    if (c.head[kWarm].load(std::memory_order_relaxed) != c.tail[kWarm].load(std::memory_order_relaxed)) return;
    platform::punch_hole(memfd_.get(), offset_[kWarm], size_[kWarm]);
    c.warm_used.store(0, std::memory_order_relaxed);
}

// A consumer died holding the lock. If it had counted its item but not moved past it, move on.
void QueueCore::repair_consumer() {
    Ctl& c = *ctl_;
    const int r = static_cast<int>(c.cregion.load(std::memory_order_relaxed));
    const std::uint64_t pos = c.head[r].load(std::memory_order_relaxed);
    const std::uint64_t h = slot(r, pos).load(std::memory_order_acquire);
    const std::uint64_t n = c.nget.load(std::memory_order_relaxed);
    if (n != 0 && stamp_of(h) == stamp(n) && !is_jump(h))
        c.head[r].store(pos + record_bytes(length_of(h)), std::memory_order_release);
}

[[noreturn]] void QueueCore::corrupt(std::uint64_t h) const {
    throw DecodeError("corrupt record in queue shared memory (header " + std::to_string(h) + ")");
}

bool QueueCore::try_take(QueueReader& reader, int patience) {
    Ctl& c = *ctl_;
    std::exception_ptr error;
    {
        ShmLockGuard lock(c.clock);
        if (lock.owner_died) repair_consumer();
        const std::uint64_t seq = c.nget.load(std::memory_order_relaxed) + 1;
        int r;
        std::uint64_t pos, h;
        for (;;) {
            r = std::min<int>(static_cast<int>(c.cregion.load(std::memory_order_relaxed)), kCold);
            pos = c.head[r].load(std::memory_order_relaxed);
            h = slot(r, pos).load(std::memory_order_acquire);
            // A consumer that keeps up finds the next record about to be published: look again
            // for a moment before letting the lock go and preparing to sleep.
            for (int i = 0; i < patience && stamp_of(h) != stamp(seq); ++i) {
                // Look rarely: each look pulls the line the producer is writing away from it.
                for (int k = 0; k < 16; ++k) platform::cpu_relax();
                h = slot(r, pos).load(std::memory_order_acquire);
            }
            if (stamp_of(h) != stamp(seq)) {
                if (r == kCold) punch(pos);  // drained for now: give the pages back
                return false;
            }
            if (!is_jump(h)) break;
            const int to = jump_area(h);
            const std::uint64_t target = slot(r, pos + 8).load(std::memory_order_relaxed);
            if (to > kCold || (target < pos && to == r)) corrupt(h);
            // Target first, then the switch, then the old area's head: a death at any point leaves
            // the reader on a path to the record (repair_consumer needs nothing here).
            c.head[to].store(target, std::memory_order_release);
            c.cregion.store(static_cast<std::uint32_t>(to), std::memory_order_release);
            if (to != r) c.head[r].store(pos + kJumpBytes, std::memory_order_release);
            if (r == kCold) punch(to == r ? target : pos + kJumpBytes);
        }
        const std::uint64_t len = length_of(h);
        const std::uint64_t rec = record_bytes(len);
        if (rec + kReserve > size_[r]) corrupt(h);
        const std::uint64_t off = (pos + 8) & mask_[r];
        const std::uint64_t first = std::min(len, size_[r] - off);
        try {
            reader.read({area_[r] + off, first}, {area_[r], len - first});
        } catch (const std::bad_alloc&) {
            throw;  // not taken: the item stays for a consumer with memory to spare
        } catch (...) {
            error = std::current_exception();  // an item that does not decode is taken all the same
        }
        c.nget.store(seq, std::memory_order_release);
        c.head[r].store(pos + rec, std::memory_order_release);
        if (r == kCold && ((pos + rec) & ~(kPunchChunk - 1)) > c.punched.load(std::memory_order_relaxed))
            punch((pos + rec) & ~(kPunchChunk - 1));
    }
    // Producers wait for room in a bounded queue (any of them fits: wake one), or for a ring or
    // the overflow to drain (whose item fits depends on its size: wake them all).
    wake(c.space, c.maxsize != 0 ? 1 : INT32_MAX);
    if (error) std::rethrow_exception(error);
    return true;
}

void QueueCore::get(QueueReader& reader, bool block, const Timeout& timeout) {
    check_open();
    const auto deadline = timeout.deadline();
    for (;;) {
        if (try_take(reader, block ? 32 : 0)) return;
        if (!block) {
            release_idle_memory();
            throw Empty("queue is empty");
        }
        if (!wait_on(
                ctl_->data, [this](bool before_sleep) { return peek(before_sleep); }, deadline,
                [this] { release_idle_memory(); }))
            throw Empty("queue is empty (timed out)");
    }
}

// ---- counts and tasks ---------------------------------------------------------------------------

std::size_t QueueCore::qsize() const noexcept {
    const std::uint64_t got = ctl_->nget.load(std::memory_order_acquire);
    const std::uint64_t put = ctl_->nput.load(std::memory_order_acquire);
    return put > got ? static_cast<std::size_t>(put - got) : 0;
}

void QueueCore::task_done() {
    Ctl& c = *ctl_;
    if (!c.joinable) throw ValueError("task_done() on a queue that is not a JoinableQueue");
    std::uint64_t done = c.ndone.load(std::memory_order_acquire);
    for (;;) {
        // A get() may return before its producer counted the item: either count will do.
        const std::uint64_t limit =
            std::max(c.nput.load(std::memory_order_acquire), c.nget.load(std::memory_order_acquire));
        if (done >= limit) throw ValueError("task_done() called too many times");
        if (c.ndone.compare_exchange_weak(done, done + 1, std::memory_order_acq_rel)) break;
    }
    if (done + 1 >= c.nput.load(std::memory_order_acquire)) wake(c.join, INT32_MAX);
}

bool QueueCore::join(const Timeout& timeout) {
    Ctl& c = *ctl_;
    if (!c.joinable) throw ValueError("join() on a queue that is not a JoinableQueue");
    check_open();
    auto all_done = [&](bool) {
        return c.ndone.load(std::memory_order_acquire) >= c.nput.load(std::memory_order_acquire);
    };
    return wait_on(c.join, all_done, timeout.deadline(), [] {});
}

void QueueCore::close() noexcept {
    if (closed_.exchange(true)) return;
    // Let this process's sleepers see it (others wake, look, and sleep again).
    for (WaitWord* w : {&ctl_->data, &ctl_->space, &ctl_->join}) {
        w->seq.fetch_add(1, std::memory_order_seq_cst);
        platform::futex_wake(&w->seq, INT32_MAX);
    }
}

void QueueCore::check_open(const char* when) const {
    if (closed_.load(std::memory_order_relaxed)) throw ValueError(std::string("queue is closed") + when);
}

// ---- creation and transfer ----------------------------------------------------------------------

QueueCore::QueueCore(platform::Fd memfd, void* base, std::uint64_t map_size)
    : memfd_(std::move(memfd)), base_(base), map_size_(map_size), ctl_(static_cast<Ctl*>(base)) {
    size_[kHot] = ctl_->hot_size;
    size_[kWarm] = kWarmSize;
    size_[kCold] = ctl_->cold_size;
    std::uint64_t off = kCtlBytes;
    for (int x : {kHot, kWarm, kCold}) {
        offset_[x] = off;
        area_[x] = static_cast<char*>(base) + off;
        mask_[x] = size_[x] - 1;
        off += size_[x];
    }
}

QueueCore::~QueueCore() {
    platform::unmap(base_, map_size_);
}

std::shared_ptr<QueueCore> QueueCore::create(std::uint64_t type_tag, const QueueOptions& options, bool joinable) {
    static_assert(sizeof(Ctl) <= kCtlBytes);
    const std::uint64_t hot = pow2_at_least(std::max<std::uint64_t>(options.ring_bytes, 4096), 4096);
    auto memfd = platform::make_memfd("mprocess-queue", 0);
    // As much overflow as the address space allows, within reason; pages cost only when used.
    for (std::uint64_t cold = kColdMax; cold >= kColdMin; cold >>= 1) {
        const std::uint64_t size = kCtlBytes + hot + kWarmSize + cold;
        platform::set_file_size(memfd.get(), size, "a queue");
        void* base = platform::try_map_sparse(memfd.get(), size);
        if (base == nullptr) continue;
        auto* c = new (base) Ctl{};
        c->magic = kMagic;
        c->type_tag = type_tag;
        c->maxsize = options.maxsize;
        c->hot_size = hot;
        c->cold_size = cold;
        c->joinable = joinable ? 1 : 0;
        return std::shared_ptr<QueueCore>(new QueueCore(std::move(memfd), base, size));
    }
    throw OSError(ENOMEM, "no address space left to map a queue");
}

using ExportedQueue = std::tuple<std::uint64_t, int>;  // mapping size, descriptor index

std::string QueueCore::export_to(SpawnArgs& args) const {
    check_open();
    return encode(ExportedQueue{map_size_, args.add_fd(memfd_.get())});
}

std::shared_ptr<QueueCore> QueueCore::import(const SpawnArgs& args, const std::string& blob, std::uint64_t type_tag,
                                             std::string_view type_name, bool joinable) {
    auto [size, index] = decode<ExportedQueue>(blob);
    platform::Fd memfd = copy_spawn_fd(args, index, "queue");
    if (size < kCtlBytes || size != platform::file_size(memfd.get()))
        throw DecodeError("exported queue: size does not match its memory");
    void* base = platform::try_map_sparse(memfd.get(), size);
    if (base == nullptr) throw OSError(ENOMEM, "no address space left to map a queue");
    auto core = std::shared_ptr<QueueCore>(new QueueCore(std::move(memfd), base, size));
    const Ctl& c = *core->ctl_;
    const bool shape_ok = c.magic == kMagic && c.hot_size >= 4096 && (c.hot_size & (c.hot_size - 1)) == 0 &&
                          c.cold_size >= kColdMin && (c.cold_size & (c.cold_size - 1)) == 0 &&
                          kCtlBytes + c.hot_size + kWarmSize + c.cold_size == size;
    if (!shape_ok) throw DecodeError("exported queue: inconsistent shape");
    if (c.type_tag != type_tag)
        throw TypeMismatch("a queue of another item type was passed where a queue of " + std::string(type_name) +
                           " was expected");
    if (joinable && c.joinable == 0) throw TypeMismatch("a Queue was passed where a JoinableQueue was expected");
    return core;
}

std::uint64_t QueueCore::resident_bytes() const {
    return platform::allocated_bytes(memfd_.get());
}

}  // namespace mprocess::detail

namespace mprocess {

// ---- the handle ---------------------------------------------------------------------------------

RawQueue::RawQueue(std::uint64_t type_tag, std::string_view, const QueueOptions& options, bool joinable)
    : core_(detail::QueueCore::create(type_tag, options, joinable)) {}

detail::QueueCore& RawQueue::core() const {
    if (!core_) throw ValueError("queue handle is empty");
    return *core_;
}

void RawQueue::put(std::string_view head, std::string_view body, bool block, const Timeout& timeout) {
    core().put({head, body}, block, timeout);
}

void RawQueue::get(Reader& reader, bool block, const Timeout& timeout) {
    core().get(reader, block, timeout);
}
std::size_t RawQueue::qsize() const {
    return core().qsize();
}
std::size_t RawQueue::maxsize() const {
    return core().maxsize();
}
void RawQueue::close() noexcept {
    if (core_) core_->close();
}
bool RawQueue::closed() const noexcept {
    return !core_ || core_->closed();
}
void RawQueue::join_thread() const {
    if (!closed()) throw ValueError("join_thread() before close()");
}
void RawQueue::task_done() {
    core().task_done();
}
bool RawQueue::join(const Timeout& timeout) {
    return core().join(timeout);
}
std::string RawQueue::export_to(SpawnArgs& args) const {
    return core().export_to(args);
}
RawQueue RawQueue::import(const SpawnArgs& args, const std::string& blob, std::uint64_t type_tag,
                          std::string_view type_name, bool joinable) {
    return RawQueue(detail::QueueCore::import(args, blob, type_tag, type_name, joinable));
}

}  // namespace mprocess
