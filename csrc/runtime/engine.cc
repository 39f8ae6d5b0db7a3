// The engine's producer side: start-up, the queue's byte bound, the line of producers waiting
// for room, and waking the worker. The worker's loop is in worker.cc.
//
// Wake-ups: after draining the queue and handing everything to the OS, the worker naps;
// producers do not signal it then, so a busy training loop pays no system call per record.
// Flush, close and a queue past its wake threshold wake it at once; after 200 ms without
// records it sleeps until the first producer to push wakes it (worker.cc says more).
#include "runtime/engine.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <new>
#include <pthread.h>
#include <system_error>
#include <thread>
#include <time.h>

#include "runtime/event_file.h"
#include "runtime/hold.h"
#include "runtime/termination.h"

namespace fasttb {
namespace {

constexpr size_t kDefaultLimit = size_t(256) << 20;
constexpr auto kMinNap = std::chrono::microseconds(1000);
constexpr auto kDefaultMaxNap = std::chrono::microseconds(20000);
constexpr size_t kWakeBytes = size_t(8) << 20;  // a producer wakes a napping worker past this
// At exit, after every Python thread has stopped: how long the worker may take to write what was
// logged after the atexit flush (by daemon threads, or by __del__ during teardown), and how long
// it may take after that to reach the end of the record it is on.
constexpr auto kExitDrain = std::chrono::milliseconds(5000);
constexpr auto kHaltWait = std::chrono::milliseconds(2000);

std::atomic<Engine*> g_engine{nullptr};
std::atomic<uint64_t> g_generation{0};
std::atomic_flag g_start_lock = ATOMIC_FLAG_INIT;

void after_fork_in_child() {
    // The worker does not exist in the child, and its mutexes may be held forever: abandon the
    // whole engine (leaked on purpose; destroying it would join a thread that is not there).
    g_generation.fetch_add(1, std::memory_order_relaxed);
    g_engine.store(nullptr, std::memory_order_relaxed);
    BlockPool::set_live(nullptr);
    EventFile::close_inherited();
    Hold::forget_in_child();
    termination_forget_in_child();  // the parent's SIGTERM ends the parent, not this child
    g_start_lock.clear();
}

// Registered with atexit() when the first engine starts, so it runs after Py_Finalize: no Python
// thread logs any more, and what the teardown logged is queued.
void halt_at_exit() {
    if (Engine* e = Engine::current()) e->halt(kExitDrain);
}

struct StartLock {
    StartLock() {
        while (g_start_lock.test_and_set(std::memory_order_acquire)) std::this_thread::yield();
    }
    ~StartLock() { g_start_lock.clear(std::memory_order_release); }
};

bool parse_microseconds(const char* text, std::chrono::microseconds* out) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text, &end, 10);
    while (end && *end == ' ') ++end;
    if (errno || end == text || !end || *end || v <= 0) return false;
    *out = std::max(std::chrono::microseconds(v), kMinNap);
    return true;
}

}  // namespace

bool parse_size(const char* text, size_t* bytes) {
    while (*text == ' ') ++text;
    // A decimal number only: strtod would also take "0x10", "inf" and "nan".
    if (!std::isdigit(static_cast<unsigned char>(*text)) && *text != '.') return false;
    if (text[0] == '0' && (text[1] | 0x20) == 'x') return false;
    char* end = nullptr;
    errno = 0;
    const double number = std::strtod(text, &end);
    if (errno || end == text || !std::isfinite(number) || number <= 0) return false;
    const char* p = end;
    while (*p == ' ') ++p;
    double scale = 1;
    static const char kUnits[] = "kmgt";  // binary: k is 2**10, m 2**20, ...
    if (*p) {
        if (const char* unit = std::strchr(kUnits, *p | 0x20); unit && *unit) {
            scale = std::ldexp(1.0, 10 * int(unit - kUnits + 1));
            if (*++p == 'i') ++p;
        }
        if (*p == 'B' || *p == 'b') ++p;
    }
    while (*p == ' ') ++p;
    if (*p) return false;
    const double value = std::floor(number * scale);
    if (value < 1 || value >= 0x1p63) return false;
    *bytes = static_cast<size_t>(value);
    return true;
}

double wall_clock_now() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    // The same arithmetic as Python's time.time(): integer nanoseconds, then one division.
    return static_cast<double>(int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec) / 1e9;
}

thread_local Engine::Waiter* Engine::place_in_line_ = nullptr;

Engine* Engine::current() { return g_engine.load(std::memory_order_acquire); }

uint64_t Engine::generation() { return g_generation.load(std::memory_order_relaxed); }

Engine* Engine::start(Status* status) {
    if (Engine* e = g_engine.load(std::memory_order_acquire)) return e;
    StartLock lock;
    if (Engine* e = g_engine.load(std::memory_order_acquire)) return e;
    static const int registered = pthread_atfork(nullptr, nullptr, after_fork_in_child);
    static const int at_exit = std::atexit(halt_at_exit);
    (void)registered;
    (void)at_exit;
    size_t limit = kDefaultLimit;
    if (const char* env = std::getenv("FASTTB_QUEUE_BYTES"); env && *env && !parse_size(env, &limit)) {
        *status = Status::value_error(std::string("FASTTB_QUEUE_BYTES: expected a size in bytes such as "
                                                  "268435456, 256M or 1GiB, got '") + env + "'");
        return nullptr;
    }
    auto max_nap = kDefaultMaxNap;
    if (const char* env = std::getenv("FASTTB_MAX_NAP_US"); env && *env && !parse_microseconds(env, &max_nap)) {
        *status = Status::value_error(std::string("FASTTB_MAX_NAP_US: expected a positive number of "
                                                  "microseconds, got '") + env + "'");
        return nullptr;
    }
    Engine* e = new (std::nothrow) Engine(limit, max_nap);
    if (!e) {
        *status = Status::no_memory();
        return nullptr;
    }
    int err = 0;
    if (!e->start_thread(&err)) {
        delete e;  // no thread was started: nothing refers to it
        *status = Status::os_error(err, "fasttb: cannot start the background writer thread");
        return nullptr;
    }
    BlockPool::set_live(&e->pool_);
    install_termination_handler();
    g_engine.store(e, std::memory_order_release);
    return e;
}

Engine::Engine(size_t limit, std::chrono::microseconds max_nap)
    : limit_(limit), nap_(kMinNap), max_nap_(max_nap) {
    pool_.set_queue_limit(limit);
}

bool Engine::start_thread(int* err) {
    // The worker blocks every signal: handlers (Python's, and fasttb's SIGTERM drain, which
    // waits for this very thread) must run on the threads that log.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    bool started = true;
    try {
        thread_ = std::thread([this] { run(); });
        thread_.detach();  // lives as long as the process; see after_fork_in_child
    } catch (const std::system_error& e) {
        *err = e.code().value() ? e.code().value() : EAGAIN;
        started = false;
    } catch (const std::bad_alloc&) {
        *err = ENOMEM;
        started = false;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return started;
}

bool Engine::fits(size_t bytes) const {
    const size_t queued = queued_bytes();
    return queued == 0 || queued + bytes <= limit_.load(std::memory_order_relaxed);
}

void Engine::note_high_water(size_t queued) {
    size_t hw = high_water_.load(std::memory_order_relaxed);
    while (queued > hw && !high_water_.compare_exchange_weak(hw, queued, std::memory_order_relaxed)) {
    }
}

void Engine::enqueue_counted(Item* item) {
    const size_t queued = pushed_.fetch_add(item->accounted, std::memory_order_relaxed) + item->accounted -
                          released_.load(std::memory_order_relaxed);
    note_high_water(queued);
    queue_.push(item);
}

Engine::Admit Engine::try_push(Item* item, bool drop_when_full) {
    const size_t size = item->accounted;
    const auto refuse = [&] {
        if (!drop_when_full) return Admit::full;
        Item::discard(pool_, item);
        return Admit::dropped;
    };
    // A thread already in line (a signal handler run inside its own wait) is not sent behind it.
    if (waiting_.load(std::memory_order_relaxed) != 0 && !place_in_line_) return refuse();
    if (item->kind != ItemKind::hold && termination_pending()) {
        // A SIGTERM is being drained: the process ends once the queue is written, and records
        // logged after the signal would only keep the queue from ever being empty.
        Item::discard(pool_, item);
        return Admit::dropped;
    }
    const size_t pushed = pushed_.fetch_add(size, std::memory_order_relaxed) + size;
    // released_ may lag behind the worker a little, which only overstates the queue.
    const size_t queued = pushed - released_.load(std::memory_order_relaxed);
    const size_t limit = limit_.load(std::memory_order_relaxed);
    // An item larger than the whole bound still goes through once the queue is empty.
    if (queued > limit && queued != size) {
        pushed_.fetch_sub(size, std::memory_order_relaxed);
        return refuse();
    }
    note_high_water(queued);
    const bool streamed = item->streamed;  // the item is the worker's once pushed
    queue_.push(item);
    if (sleeping_.load(std::memory_order_seq_cst) ||
        ((streamed || queued > std::min(limit / 2, kWakeBytes)) &&
         !wake_pending_.exchange(true, std::memory_order_relaxed)))
        wake();
    return Admit::queued;
}

Engine::Waited Engine::push_when_room(Item* item, const std::atomic<bool>& give_up,
                                      CallerLock& lock) {
    if (place_in_line_) {
        // This thread already waits in line, further down its stack: Python runs signal handlers
        // inside that wait, and one that logs would wait behind its own thread forever. The
        // record goes in over the bound instead.
        enqueue_counted(item);
        wake();
        return Waited::queued;
    }
    Waiter me{item->accounted, nullptr};
    {
        std::lock_guard<std::mutex> guard(mutex_);
        (line_tail_ ? line_tail_->next : line_head_) = &me;
        line_tail_ = &me;
        waiting_.fetch_add(1, std::memory_order_seq_cst);
        place_in_line_ = &me;
    }
    wake();
    Waited result = Waited::queued;
    const bool done = wait_released(lock, [&](std::chrono::milliseconds slice) {
        std::unique_lock<std::mutex> guard(mutex_);
        const auto ready = [&] {
            return give_up.load(std::memory_order_acquire) || (line_head_ == &me && fits(me.bytes));
        };
        if (!room_cv_.wait_for(guard, slice, ready)) return false;
        if (give_up.load(std::memory_order_acquire)) {
            result = Waited::gave_up;
        } else {
            // First in line and it fits: queue it before anyone behind can look.
            enqueue_counted(item);
        }
        leave_line(&me);
        return true;
    });
    if (!done) {
        std::lock_guard<std::mutex> guard(mutex_);
        leave_line(&me);
        return Waited::interrupted;
    }
    if (result == Waited::queued) wake();
    return result;
}

bool Engine::count_held(size_t bytes) {
    if (waiting_.load(std::memory_order_seq_cst) != 0 && !halting_.load(std::memory_order_relaxed))
        return false;  // callers wait in line: they go first
    const size_t pushed = pushed_.fetch_add(bytes, std::memory_order_seq_cst) + bytes;
    const size_t queued = pushed - released_.load(std::memory_order_seq_cst);
    // As in try_push, a record larger than the whole bound goes through once the queue is empty.
    // Once halting, the worker takes nothing more: no room would ever come.
    if (queued > limit_.load(std::memory_order_relaxed) && queued != bytes &&
        !halting_.load(std::memory_order_relaxed)) {
        pushed_.fetch_sub(bytes, std::memory_order_relaxed);
        return false;
    }
    note_high_water(queued);
    return true;
}

Engine::Waited Engine::count_held_when_room(size_t bytes, Hold& hold, const std::atomic<bool>& give_up,
                                            CallerLock& lock) {
    // Counted before the first look at released_: release() then sees it (both seq_cst) and
    // wakes us, or we see what it released.
    fillers_waiting_.fetch_add(1, std::memory_order_seq_cst);
    wake();  // a napping worker may have room to give back
    Waited result = Waited::queued;
    const bool done = wait_released(lock, [&](std::chrono::milliseconds slice) {
        std::unique_lock<std::mutex> guard(mutex_);
        // A cancel does not wake us: it is seen within a slice (it happens only at exit).
        return room_cv_.wait_for(guard, slice, [&] {
            if (give_up.load(std::memory_order_acquire) || hold.resolved()) {
                result = Waited::gave_up;
                return true;
            }
            if (awaited_ == &hold || (awaited_ && !awaited_->resolved())) {
                note_high_water(pushed_.fetch_add(bytes, std::memory_order_seq_cst) + bytes -
                                released_.load(std::memory_order_seq_cst));
                return true;
            }
            return count_held(bytes);
        });
    });
    fillers_waiting_.fetch_sub(1, std::memory_order_seq_cst);
    return done ? result : Waited::interrupted;
}

void Engine::leave_line_for_good() {
    if (!place_in_line_) return;
    std::lock_guard<std::mutex> guard(mutex_);
    leave_line(place_in_line_);
}

// Called with mutex_ held. Leaving twice is harmless: the second time finds nothing.
void Engine::leave_line(Waiter* w) {
    if (place_in_line_ == w) place_in_line_ = nullptr;
    Waiter* prev = nullptr;
    for (Waiter* p = line_head_; p; prev = p, p = p->next) {
        if (p != w) continue;
        (prev ? prev->next : line_head_) = p->next;
        if (line_tail_ == p) line_tail_ = prev;
        waiting_.fetch_sub(1, std::memory_order_seq_cst);
        room_cv_.notify_all();  // the next in line may be first now
        return;
    }
}

void Engine::wake_room_waiters() {
    std::lock_guard<std::mutex> guard(mutex_);
    room_cv_.notify_all();
}

void Engine::push_control(Item* item, bool urgent) {
    item->accounted = 0;
    queue_.push(item);
    if (urgent || sleeping_.load(std::memory_order_seq_cst)) wake();
}

void Engine::wake() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        woken_ = true;
    }
    wake_cv_.notify_one();
}

void Engine::release(size_t bytes) {
    if (!bytes) return;
    released_.fetch_add(bytes, std::memory_order_seq_cst);
    if (waiting_.load(std::memory_order_seq_cst) > 0 || fillers_waiting_.load(std::memory_order_seq_cst) > 0) {
        std::lock_guard<std::mutex> lock(mutex_);
        room_cv_.notify_all();
    }
}

void Engine::set_paused(bool paused) {
    std::unique_lock<std::mutex> lock(mutex_);
    paused_ = paused;
    woken_ = true;
    wake_cv_.notify_one();
    if (paused) parked_cv_.wait(lock, [this] { return parked_ || !paused_; });
}

void Engine::halt(std::chrono::milliseconds drain_for) {
    using Clock = std::chrono::steady_clock;
    const uint64_t ticket = request_drain();
    wake();
    const auto drain_deadline = Clock::now() + drain_for;
    while (drained() < ticket && Clock::now() < drain_deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::unique_lock<std::mutex> lock(mutex_);
    halting_.store(true, std::memory_order_relaxed);
    paused_ = true;
    woken_ = true;
    wake_cv_.notify_one();
    parked_cv_.wait_for(lock, kHaltWait, [this] { return parked_; });
}

}  // namespace fasttb
