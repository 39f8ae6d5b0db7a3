// EventWriter; see writer.h.
#include "runtime/writer.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>
#include <utility>

#include "runtime/block_pool.h"

namespace fasttb {

EventWriter::EventWriter(Engine* engine, EventFile* file, std::shared_ptr<FileState> state,
                         bool drop_when_full)
    : engine_(engine),
      generation_(Engine::generation()),
      file_(file),
      state_(std::move(state)),
      drop_when_full_(drop_when_full) {}

std::shared_ptr<EventWriter> EventWriter::open(const std::string& path, double flush_secs,
                                               bool drop_when_full, double wall_time,
                                               Status* status, bool later, bool with_source) {
    Engine* engine = Engine::start(status);  // first, so that a failure leaves no empty file
    if (!engine) return nullptr;
    std::shared_ptr<FileState> state;
    int err = ENOMEM;
    EventFile* file = later ? EventFile::create_later(path, flush_secs, &state)
                            : EventFile::create(path, flush_secs, &state, &err);
    if (!file) {
        *status = Status::os_error(err, "fasttb: cannot create event file", path);
        return nullptr;
    }
    Item* opener = later ? Item::make(engine->pool(), ItemKind::open, file, {}, 0) : nullptr;
    if (later && !opener) {
        delete file;
        *status = Status::no_memory();
        return nullptr;
    }
    Item* first = Item::make(engine->pool(), ItemKind::file_version, file, {}, 0);
    std::shared_ptr<EventWriter> w;
    if (first) {
        try {
            // The file is handed over only once the writer exists: a writer that fails to be
            // made must not queue its close.
            w.reset(new EventWriter(engine, nullptr, std::move(state), drop_when_full));
        } catch (const std::bad_alloc&) {
        }
    }
    if (!w) {
        if (first) Item::discard(engine->pool(), first);
        if (opener) Item::discard(engine->pool(), opener);
        delete file;  // never queued: still ours
        *status = Status::no_memory();
        return nullptr;
    }
    w->file_ = file;
    if (!later) file->park_if_over_budget(wall_time);  // still ours: nothing names it in the queue yet
    first->wall_time = wall_time;
    first->with_source = with_source;
    if (opener) engine->push_control(opener, false);
    engine->push_control(first, false);  // the header never waits, so opening never blocks
    return w;
}

EventWriter::~EventWriter() {
    // Without close(), the file is closed in the background once its records are written. In
    // a forked child the file belongs to the parent's engine: leave it alone.
    if (file_ && !stale()) {
        if (Item* item = make_item(ItemKind::close, {}, 0)) engine_->push_control(item, false);
        // else out of memory: leak the file rather than lose its records
    }
    if (close_done_) close_done_->release();
}

Status EventWriter::check() const {
    if (stale())
        return Status::value_error("fasttb: this event file belongs to the process that created it "
                                   "(the writer was inherited through fork)");
    Status failed = error();
    if (!failed.ok()) return failed;
    if (!file_) return Status::closed(path());
    return {};
}

Status EventWriter::error() const {
    const int err = state_->error.load(std::memory_order_acquire);
    if (!err) return {};
    state_->reported.store(true, std::memory_order_relaxed);
    return Status::os_error(err, "fasttb: " + state_->error_context,
                            state_->error_path.empty() ? path() : state_->error_path);
}

bool EventWriter::error_unreported() const {
    return state_->error.load(std::memory_order_acquire) != 0 &&
           !state_->reported.load(std::memory_order_relaxed);
}

namespace {
thread_local EventWriter::Pin* t_pins = nullptr;  // this thread's innermost pin
}  // namespace

EventWriter::Pin::Pin(std::shared_ptr<EventWriter> w) : w_(std::move(w)), next_(t_pins) {
    w_->pins_.fetch_add(1, std::memory_order_seq_cst);
    t_pins = this;
}

EventWriter::Pin::~Pin() {
    release();
    t_pins = next_;
}

void EventWriter::Pin::release() {
    if (!held_) return;
    held_ = false;
    // closing_ is set before the closer looks at pins_: one of the two sees the other's write.
    // Every release while closing wakes the closer, which may wait for a count above zero (its
    // own thread's pins: see close()).
    w_->pins_.fetch_sub(1, std::memory_order_seq_cst);
    if (w_->closing_.load(std::memory_order_seq_cst)) {
        std::lock_guard<std::mutex> lock(w_->pins_mutex_);
        w_->pins_cv_.notify_all();
    }
}

int EventWriter::pins_of_this_thread() const {
    int n = 0;
    for (const Pin* p = t_pins; p; p = p->next_)
        if (p->held_ && p->w_.get() == this) ++n;
    return n;
}

void abandon_calling_thread() {
    if (Engine* engine = Engine::current()) engine->leave_line_for_good();
    for (EventWriter::Pin* p = t_pins; p; p = p->next_) p->release();
}

Status EventWriter::push_waiting(Item* item, CallerLock& lock, bool* queued) {
    if (queued) *queued = false;
    Hold* hold = Hold::filling();
    // A stall is a logging call that waited; a hold's filler is not one (the device's waiter
    // thread: the calls behind it count their own waits, at the ring).
    if (!hold) state_->stalls.fetch_add(1, std::memory_order_relaxed);
    const Pin pinned = pin();  // the wait lets the lock go; the item names our file
    const Engine::Waited waited = hold ? engine_->count_held_when_room(item->accounted, *hold, closing_, lock)
                                       : engine_->push_when_room(item, closing_, lock);
    switch (waited) {
        case Engine::Waited::queued:
            if (hold) add_to_hold(hold, item);
            if (queued) *queued = !hold || !last_dropped_;
            return {};
        case Engine::Waited::gave_up:
            discard(item);
            if (hold && !closing_.load(std::memory_order_acquire)) {  // the hold was cancelled
                state_->dropped.fetch_add(1, std::memory_order_relaxed);
                last_dropped_ = true;
                return {};
            }
            return Status::closed(path());
        case Engine::Waited::interrupted:
            discard(item);
            return Status::interrupted();
    }
    return {};
}

namespace {

// A flush or close item carrying a completion, referenced once by the item and once by the
// caller (*done). nullptr, with nothing left to free, when memory runs out.
Item* control_item(BlockPool& pool, ItemKind kind, EventFile* file, Completion** done,
                   std::string_view tag = {}) {
    Completion* completion = Completion::make();
    Item* item = completion ? Item::make(pool, kind, file, tag, 0) : nullptr;
    if (!item) {
        if (completion) completion->release();
        return nullptr;
    }
    item->done = completion->add_ref();
    *done = completion;
    return item;
}

// Waits without the lock for `done`, then lets the caller's reference go. False if interrupted.
bool finished(Completion* done, CallerLock& lock) {
    const bool ok = wait_released(lock, [done](std::chrono::milliseconds slice) {
        return done->wait_for(slice);
    });
    done->release();
    return ok;
}

}  // namespace

Status EventWriter::wait(Completion* done, CallerLock& lock) {
    return finished(done, lock) ? error() : Status::interrupted();
}

Status EventWriter::wait_for_close(CallerLock& lock) {
    if (!close_done_) return error();
    if (!close_done_->done()) engine_->wake();  // the close may have been queued without a wake
    return wait(close_done_->add_ref(), lock);
}

Status EventWriter::flush(CallerLock& lock) {
    if (stale()) return {};
    if (closing_.load(std::memory_order_relaxed)) return wait_for_close(lock);
    Completion* done = nullptr;
    Item* item = control_item(engine_->pool(), ItemKind::flush, file_, &done);
    if (!item) return Status::no_memory();
    engine_->push_control(item, true);  // under the lock, right after it was made: the file is open
    return wait(done, lock);
}

Status EventWriter::rotate(const std::string& next_path, bool with_source, CallerLock& lock) {
    if (stale()) return {};
    if (closing_.load(std::memory_order_relaxed)) return wait_for_close(lock);
    if (next_path.size() > UINT32_MAX) return Status::value_error("next_path: too long");
    Completion* done = nullptr;
    Item* item = control_item(engine_->pool(), ItemKind::rotate, file_, &done, next_path);
    if (!item) return Status::no_memory();
    item->with_source = with_source;
    engine_->push_control(item, true);  // under the lock, right after it was made: the file is open
    return wait(done, lock);
}

Status EventWriter::fail(int err, std::string_view context, std::string_view path) {
    if (stale() || closing_.load(std::memory_order_relaxed) || !file_) return {};
    if (path.size() > UINT32_MAX) return Status::value_error("path: too long");
    Item* item = Item::make(engine_->pool(), ItemKind::fail, file_, path, context.size());
    if (!item) return Status::no_memory();
    if (!context.empty()) std::memcpy(item->payload(), context.data(), context.size());
    item->step = err;
    engine_->push_control(item, true);
    return {};
}

Status EventWriter::push_hold(Hold** out) {
    if (!ready()) return check();
    if (Hold::filling()) return Status::value_error("a hold cannot be queued while one is being filled");
    Hold* hold = Hold::make();
    Item* item = hold ? Item::make(engine_->pool(), ItemKind::hold, file_, {}, 0) : nullptr;
    if (!item) {
        if (hold) hold->release();
        return Status::no_memory();
    }
    item->hold = hold->add_ref();
    engine_->push_control(item, false);
    *out = hold;
    return {};
}

bool EventWriter::fill(Hold* hold, Item* item) {
    if (!engine_->count_held(item->accounted)) return false;
    add_to_hold(hold, item);
    return true;
}

void EventWriter::add_to_hold(Hold* hold, Item* item) {
    const size_t size = item->accounted;
    if (hold->append(item)) {
        last_dropped_ = false;
        return;
    }
    // Cancelled while being filled.
    engine_->uncount_held(size);
    discard(item);
    state_->dropped.fetch_add(1, std::memory_order_relaxed);
    last_dropped_ = true;
}

Status EventWriter::close(CallerLock& lock, bool wait_for_it) {
    if (stale()) {
        file_ = nullptr;
        return {};
    }
    if (closing_.load(std::memory_order_relaxed)) return wait_for_it ? wait_for_close(lock) : Status{};
    Completion* done = nullptr;
    Item* item = control_item(engine_->pool(), ItemKind::close, file_, &done);
    if (!item) return Status::no_memory();  // still open: a later close() can try again
    close_done_ = done->add_ref();
    file_ = nullptr;
    closing_.store(true, std::memory_order_seq_cst);
    engine_->wake_room_waiters();  // pinned pushes waiting for room give up now
    // This thread's own pins are not waited for: a close() from a signal handler that Python
    // runs inside this thread's wait for room, whose item then gives up rather than be queued.
    // Waiting for them would wait forever.
    const int own = pins_of_this_thread();
    {
        Unlocked unlocked(lock);
        std::unique_lock<std::mutex> guard(pins_mutex_);
        // Pins are short: a copy in progress, or a wait for room that gives up at once.
        pins_cv_.wait(guard, [this, own] { return pins_.load(std::memory_order_seq_cst) == own; });
        engine_->push_control(item, wait_for_it);
    }
    if (!wait_for_it) {
        done->release();  // close_done_ keeps its own reference for the close() that waits
        return {};
    }
    return wait(done, lock);
}

Status flush_all_files(CallerLock& lock) {
    Engine* engine = Engine::current();
    if (!engine) return {};
    Completion* done = nullptr;
    Item* item = control_item(engine->pool(), ItemKind::flush, nullptr, &done);
    if (!item) return Status::no_memory();
    engine->push_control(item, true);
    return finished(done, lock) ? Status{} : Status::interrupted();
}

}  // namespace fasttb
