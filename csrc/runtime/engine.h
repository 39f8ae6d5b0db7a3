// The background side of fasttb: one process-wide worker thread behind one byte-bounded queue,
// shared by every writer and every add_scalars sub-run, so threads never grow with runs.
//
// Who owns what, across threads:
// - An Item belongs to the producer that made it until it is queued, then to the worker, which
//   frees it once its record is in the file's buffer (a streamed payload: see Item::streamed).
// - An EventFile is created by a producer and belongs to the worker from its first item on. The
//   worker deletes it when it handles the file's close item, and its writer queues that item
//   only after every other item naming the file (EventWriter: pins), so no item outlives its file.
// - A Completion is shared by a waiting producer and a control item; the last to let go frees it.
// - Engine and BlockPool live as long as the process (a forked child abandons its parent's).
// The worker never touches Python, never takes the GIL, and turns every failure, allocation
// included, into the failed state of the file it was writing (EventFile::fail).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/block_pool.h"
#include "runtime/caller_lock.h"
#include "runtime/item.h"
#include "runtime/queue.h"
#include "runtime/status.h"

namespace fasttb {

class Hold;

class Engine {
public:
    // The engine of this process, started (with its thread) on first use. On failure (a bad
    // FASTTB_* variable, or no thread could be started) returns nullptr with *status set, and a
    // later call tries again. After fork() the child starts a fresh engine: the parent's is left
    // untouched, thread and files alike.
    static Engine* start(Status* status);
    // The engine of this process if one was started, else nullptr.
    static Engine* current();
    static uint64_t generation();

    BlockPool& pool() { return pool_; }

    enum class Admit { queued, full, dropped };
    // Never blocks. `full`: not queued, still the caller's; `dropped`: the drop policy freed it.
    // While anyone waits for room, everyone else waits behind them (full), so a large item is
    // never starved by a stream of small ones.
    Admit try_push(Item* item, bool drop_when_full);

    enum class Waited { queued, gave_up, interrupted };
    // Queues `item` once it fits and every earlier waiter has gone, releasing `lock` meanwhile.
    // gave_up: `give_up` became true first; interrupted: a signal handler raised. Either way the
    // item is still the caller's.
    Waited push_when_room(Item* item, const std::atomic<bool>& give_up, CallerLock& lock);
    // Wakes the worker now: a caller is about to wait for an item queued without `urgent`.
    void wake();
    // Lets waiting pushes look at their give_up flag now (a writer is closing).
    void wake_room_waiters();
    // The calling thread, waiting for room, will never come back (abandon_calling_thread).
    void leave_line_for_good();

    // The records a hold's filler makes (EventWriter::fill) are counted as pushes are, so that
    // holds filled faster than the worker writes them are bounded by the same limit. The record
    // goes into its hold, not the queue. The filler does not join the line, but it lets callers
    // in line go first: they block the caller's loop, and the filler is a background thread.
    // Never blocks. True: counted; false: no room now.
    bool count_held(size_t bytes);
    // Waits without `lock` until the record fits, then counts it (queued). The bound gives way
    // while the worker waits at `hold`, or at a hold still unfilled (one filled out of order
    // could otherwise wait for room that comes only after it): no room comes back meanwhile.
    // gave_up: `give_up` became true, or `hold` was cancelled; interrupted: a signal handler
    // raised.
    Waited count_held_when_room(size_t bytes, Hold& hold, const std::atomic<bool>& give_up,
                                CallerLock& lock);
    // Takes back what count_held counted, for a record its hold refused (cancelled).
    void uncount_held(size_t bytes) { pushed_.fetch_sub(bytes, std::memory_order_relaxed); }

    // A control item (flush, close, a file's first records): never counted, never refused.
    // `urgent` (a caller waits for it) wakes the worker at once; otherwise the worker takes it
    // at the end of its nap, as it takes records, and a sleeping worker is woken.
    void push_control(Item* item, bool urgent);

    size_t limit() const { return limit_.load(std::memory_order_relaxed); }
    void set_limit(size_t bytes) {
        limit_.store(bytes, std::memory_order_relaxed);
        pool_.set_queue_limit(bytes);
    }
    size_t queued_bytes() const {
        return pushed_.load(std::memory_order_relaxed) - released_.load(std::memory_order_relaxed);
    }
    size_t high_water() const { return high_water_.load(std::memory_order_relaxed); }
    void reset_high_water() { high_water_.store(queued_bytes(), std::memory_order_relaxed); }
    uint64_t items_processed() const { return processed_.load(std::memory_order_relaxed); }

    // Asks the worker to write everything queued so far and returns a ticket; drained() reaches
    // the ticket once it has. Both are lock-free atomics, safe in a signal handler.
    uint64_t request_drain() { return drain_requests_.fetch_add(1, std::memory_order_acq_rel) + 1; }
    uint64_t drained() const { return drained_.load(std::memory_order_acquire); }

    // For benchmarks and tests of the worker alone: while paused it takes nothing from the queue
    // (fill the queue, resume, time the drain). Never pause around a flush: it would wait
    // forever. Pausing returns once the worker has stopped (it finishes the drain it is in), so
    // nothing queued after it is taken; call it without the caller's lock (that drain may be
    // waiting for a hold to be filled).
    void set_paused(bool paused);

    // The end of the process (exit(), or the SIGTERM watcher just before it raises the signal
    // again): has the worker write what is queued, waiting at most `drain_for`, then stops it for
    // good between two records and returns once it has stopped (or after 2 s more, if it is stuck
    // in a write to a hung file system). A process that ended during a write left its last record
    // torn, when other threads were still logging. Nothing queued after it is written.
    void halt(std::chrono::milliseconds drain_for);

private:
    Engine(size_t limit, std::chrono::microseconds max_nap);
    bool start_thread(int* err);
    void release(size_t bytes);

    // worker.cc
    void run();
    void drain_once(uint64_t* handled);
    void handle(Item* item);
    void handle_control(Item* item);
    void handle_side_file(Item* item);
    void handle_hold(Item* item);
    void retire(Item* item);
    void mark_dirty(EventFile* f);
    // only_due: just the files last written longer ago than their flush_secs or max_nap_,
    // whichever is shorter; check_names: see EventFile::flush.
    void write_dirty(double now, bool only_due, bool check_names);
    void rest(uint64_t handled, std::chrono::microseconds* idle_for);
    bool idle_wait(std::chrono::microseconds timeout);  // true when woken, false on timeout

    MpscQueue queue_;
    BlockPool pool_;
    // Queued bytes are pushed_ - released_: producers only add to the first and the worker only
    // to the second, so a push does not fight the worker for a cache line.
    alignas(64) std::atomic<size_t> pushed_{0};
    std::atomic<size_t> high_water_{0};
    std::atomic<size_t> limit_;
    std::atomic<uint32_t> waiting_{0};  // producers in line for room
    std::atomic<uint32_t> fillers_waiting_{0};  // fillers of holds waiting for room (not in line)
    alignas(64) std::atomic<size_t> released_{0};
    std::atomic<bool> sleeping_{false};      // worker waits for a wake(); producers must wake it
    std::atomic<bool> wake_pending_{false};  // a producer already asked for an early wake-up
    std::atomic<uint64_t> processed_{0};
    std::atomic<uint64_t> drain_requests_{0};
    std::atomic<uint64_t> drained_{0};
    std::atomic<bool> halting_{false};  // halt(): the worker takes nothing more from the queue

    // The line of producers waiting for room, first come first served: each waits on its own
    // stack node, linked here.
    struct Waiter {
        size_t bytes;
        Waiter* next;
    };
    std::mutex mutex_;
    std::condition_variable wake_cv_;
    std::condition_variable room_cv_;
    static thread_local Waiter* place_in_line_;  // the calling thread's, while it waits
    Waiter* line_head_ = nullptr;  // guarded by mutex_
    Waiter* line_tail_ = nullptr;  // guarded by mutex_
    bool woken_ = false;           // guarded by mutex_
    bool paused_ = false;          // guarded by mutex_
    bool parked_ = false;          // guarded by mutex_: the worker is waiting while paused_
    // The hold the worker waits at, guarded by mutex_. The worker holds a reference to it until
    // it has set this back to null, so it may be looked at with mutex_ held.
    Hold* awaited_ = nullptr;
    std::condition_variable parked_cv_;
    bool fits(size_t bytes) const;
    void note_high_water(size_t queued);
    void enqueue_counted(Item* item);  // counts it as queued, then queues it, whatever the bound
    void leave_line(Waiter* w);

    std::chrono::microseconds nap_;      // worker only: how long it waits before looking again
    std::chrono::microseconds max_nap_;  // FASTTB_MAX_NAP_US, 20 ms by default
    std::vector<EventFile*> dirty_;      // worker only: files whose buffer holds records
    std::string png_scratch_;            // worker only: the PNG being encoded
    std::thread thread_;
};

double wall_clock_now();

// Parses a size in bytes as FASTTB_QUEUE_BYTES takes it: a positive number, optionally with a
// binary suffix (k, M, G, T, with or without "iB"/"B") or an exponent ("1e9"). False if malformed.
bool parse_size(const char* text, size_t* bytes);

}  // namespace fasttb
