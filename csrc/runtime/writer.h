// EventWriter: the caller's handle on one event file. It makes items on the caller's thread and
// queues them; the worker does the rest. Python-free: the caller lock it is given (the GIL, in
// the bindings) is held whenever it is called, and that lock guards its state. Only `pins_` and
// `closing_` are shared with threads that have let the lock go.
//
// The file's lifetime (engine.h): the worker deletes it at its close item, so that item must be
// the last one naming it. Items are made and queued under the caller lock; a producer that lets
// the lock go in between (a long copy, a wait for room) holds a Pin, and close() queues the close
// item only once the writer is closing and no pin is left.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "runtime/caller_lock.h"
#include "runtime/engine.h"
#include "runtime/event_file.h"
#include "runtime/hold.h"
#include "runtime/item.h"
#include "runtime/status.h"

namespace fasttb {

class EventWriter : public std::enable_shared_from_this<EventWriter> {
public:
    // Starts the engine if needed, creates `path` (which must not exist yet) and queues its first
    // record. Returns nullptr with *status set on failure. `later`: the worker creates the file
    // and its directories (a failure is raised on a later call, like a write's). `with_source`:
    // the first record names the writer in source_metadata, as torch's writer does (tensorboardX
    // leaves it out).
    static std::shared_ptr<EventWriter> open(const std::string& path, double flush_secs,
                                             bool drop_when_full, double wall_time, Status* status,
                                             bool later = false, bool with_source = true);
    ~EventWriter();
    EventWriter(const EventWriter&) = delete;
    EventWriter& operator=(const EventWriter&) = delete;

    // True when a record can be queued right now with nothing to report first: open, in the
    // process that opened it, and no error from the worker. The fast paths check only this.
    bool ready() const {
        return file_ && generation_ == Engine::generation() &&
               state_->error.load(std::memory_order_relaxed) == 0;
    }
    // Why the writer is not ready: inherited through fork, failed, or closed.
    Status check() const;
    bool closed() const { return file_ == nullptr; }
    bool stale() const { return generation_ != Engine::generation(); }
    // The worker's error as the caller sees it (ok while healthy); marks it reported.
    Status error() const;
    bool error_unreported() const;
    const FileState& state() const { return *state_; }
    const std::string& path() const { return state_->path; }

    // A new item for this file, or nullptr when memory is exhausted. Precondition: ready().
    Item* make_item(ItemKind kind, std::string_view tag, size_t payload_len) {
        return Item::make(engine_->pool(), kind, file_, tag, payload_len);
    }
    void discard(Item* item) { Item::discard(engine_->pool(), item); }

    // Queues `item` (made by make_item, under the lock or under a Pin). When the queue is full
    // it waits for room without the lock, unless the drop policy is on; such a wait gives up with
    // Status::closed if the writer starts closing meanwhile. The item is consumed either way;
    // *queued (when given) says whether it was queued rather than dropped or given up. While
    // this thread fills a hold it waits whatever the policy: the filler is not the logging call
    // (it is the device's waiter thread), and the calls behind it wait, or drop, at their ring.
    Status push(Item* item, CallerLock& lock, bool* queued = nullptr) {
        if (try_push(item)) {
            if (queued) *queued = !last_dropped_;
            return {};
        }
        return push_waiting(item, lock, queued);
    }
    // The part of push() that never waits: true when the item was queued or dropped (then not
    // the caller's any more), false when the queue is full (still the caller's).
    bool try_push(Item* item) {
        if (Hold* hold = Hold::filling()) return fill(hold, item);
        switch (engine_->try_push(item, drop_when_full_)) {
            case Engine::Admit::queued:
                last_dropped_ = false;
                return true;
            case Engine::Admit::dropped:
                state_->dropped.fetch_add(1, std::memory_order_relaxed);
                last_dropped_ = true;
                return true;
            case Engine::Admit::full:
                break;
        }
        return false;
    }
    Status push_waiting(Item* item, CallerLock& lock, bool* queued = nullptr);

    // Queues a hold (hold.h) where the next record would go and returns it with one reference,
    // the caller's. Fails as a push would (closed, failed, forked), or while this thread is
    // filling a hold.
    Status push_hold(Hold** out);

    // Keeps the file open while its holder has let the caller lock go with an item it made for
    // the file not yet queued; it also keeps the writer alive. Take it with the lock held, before
    // letting go; it may be dropped without the lock. Pins nest on their thread's stack.
    class Pin {
    public:
        explicit Pin(std::shared_ptr<EventWriter> w);
        ~Pin();
        Pin(const Pin&) = delete;
        Pin& operator=(const Pin&) = delete;
        void release();  // lets the file close now (the destructor does it otherwise)

    private:
        friend void abandon_calling_thread();
        friend class EventWriter;
        std::shared_ptr<EventWriter> w_;
        Pin* next_;  // the thread's previous pin
        bool held_ = true;
    };
    Pin pin() { return Pin(shared_from_this()); }

    // Both return once the worker has written everything queued before them, waiting without
    // the lock (Ctrl-C interrupts the wait, not the work). Both do nothing more after close().
    // close(lock, false) queues the close and returns at once; a later close() waits for it and
    // reports what failed.
    Status flush(CallerLock& lock);
    Status close(CallerLock& lock, bool wait = true);
    // A flush that also ends the file's segment (EventFile::rotate): the next record starts a
    // new event file at `next_path`, in the same directory. Returns as flush() does, once the
    // segment is closed on disk; after close(), waits for the close instead.
    Status rotate(const std::string& next_path, bool with_source, CallerLock& lock);
    // Fails the file as a worker failure does, for a failure met outside the worker (a remote
    // upload): records buffered so far are written, later ones are lost, and every call raises
    // OSError(err, "fasttb: " + context, path). Queued, not waited for; ignored once closing.
    Status fail(int err, std::string_view context, std::string_view path);

private:
    // try_push while filling: the item goes into `hold`, counted against the queue's bound
    // (Engine::count_held). False when there is no room now (the item is still the caller's).
    bool fill(Hold* hold, Item* item);
    void add_to_hold(Hold* hold, Item* item);  // once counted: appended, or dropped if cancelled
    EventWriter(Engine* engine, EventFile* file, std::shared_ptr<FileState> state, bool drop_when_full);
    Status wait(Completion* done, CallerLock& lock);
    Status wait_for_close(CallerLock& lock);  // once closing: the close's end, and its error

    Engine* engine_;
    uint64_t generation_;
    EventFile* file_;  // the worker's once its first item is queued; null once closing
    std::shared_ptr<FileState> state_;
    bool drop_when_full_;
    bool last_dropped_ = false;  // what the last try_push did (guarded by the caller lock)
    Completion* close_done_ = nullptr;  // the close in progress or done, for later callers
    std::atomic<bool> closing_{false};
    int pins_of_this_thread() const;  // held pins on this writer, on the calling thread
    std::atomic<int> pins_{0};
    std::mutex pins_mutex_;
    std::condition_variable pins_cv_;
};

// For a thread that will never run again (parked at interpreter exit, python_interop.cc): it leaves the
// queue's line and lets go of its pins, so that no other thread waits for it. Its unqueued items
// are abandoned with it.
void abandon_calling_thread();

// Queues a flush of every file of this process's engine and waits for it (interpreter exit).
// Does nothing when no engine was started, or in a forked child that has none of its own yet.
Status flush_all_files(CallerLock& lock);

}  // namespace fasttb
