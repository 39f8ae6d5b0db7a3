// The worker thread: drains the queue, turns items into records in their files' buffers, hands
// the buffers to the OS, and rests when there is nothing to do. See engine.h for who owns what.
//
// Resting: after draining the queue and writing everything out, the worker naps. A wake-up
// costs tens of microseconds of CPU on a virtual machine, so the nap adapts: it doubles (up to
// 20 ms) while wake-ups find only a handful of records and halves when they find many. After
// 200 ms without records it sleeps until a producer wakes it, looking up every 100 ms only for
// a SIGTERM drain request.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <new>
#include <stdexcept>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "runtime/engine.h"  // IWYU pragma: associated
#include "runtime/event_file.h"
#include "runtime/hold.h"
#include "runtime/item_encoder.h"

namespace fasttb {
namespace {

constexpr auto kMinNap = std::chrono::microseconds(1000);
constexpr auto kIdleBeforeSleep = std::chrono::milliseconds(200);
constexpr auto kDeepSleep = std::chrono::milliseconds(100);
constexpr uint64_t kFewRecords = 64;     // a wake-up finding fewer: nap longer
constexpr uint64_t kManyRecords = 1024;  // finding more: nap shorter
constexpr size_t kFileBufferLimit = size_t(4) << 20;
// While the queue never empties, files are written by the clock: it is read every kClockEvery
// items (a few microseconds of scalars) and after every item of kLargeItem bytes or more (an
// image's PNG may take milliseconds), so a file that gets only small records (an add_scalars
// run beside a stream of images) still reaches the OS within max_nap_.
constexpr uint64_t kClockEvery = 64;
constexpr size_t kLargeItem = size_t(64) << 10;
constexpr uint64_t kReleaseEvery = 64;

// A streamed payload is the producer's until it has published all of it (Item::streamed).
void wait_until_filled(const Item& item) {
    while (item.filled.load(std::memory_order_acquire) < item.payload_len) std::this_thread::yield();
}

}  // namespace

void Engine::run() {
    auto idle_for = std::chrono::microseconds(0);
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            if (paused_) {
                parked_ = true;
                parked_cv_.notify_all();
                wake_cv_.wait(lock, [this] { return !paused_; });
                parked_ = false;
            }
        }
        // Whatever was queued before this load is written before drained() reaches it.
        const uint64_t asked = drain_requests_.load(std::memory_order_acquire);
        uint64_t handled = 0;
        drain_once(&handled);
        wake_pending_.store(false, std::memory_order_relaxed);
        // The queue is drained: everything logged so far goes to the OS now, so a killed process
        // loses at most what arrived during the last nap.
        if (!dirty_.empty()) write_dirty(wall_clock_now(), false, false);
        drained_.store(asked, std::memory_order_release);
        if (!queue_.idle()) {
            std::this_thread::yield();  // a producer is half-way through a push
            continue;
        }
        rest(handled, &idle_for);
    }
}

void Engine::drain_once(uint64_t* handled) {
    size_t freed = 0;
    uint64_t unreported = 0;
    // (Once halting, not one more item: see halt().)
    while (!halting_.load(std::memory_order_relaxed)) {
        QueueNode* node = queue_.pop();
        if (!node) break;
        Item* item = static_cast<Item*>(node);
        const size_t size = item->accounted;
        freed += size;
        handle(item);  // (the item is gone after it)
        ++*handled;
        // Room goes back every 64 items, and at once after a large one: producers waiting for
        // room (another writer's add_scalar behind a flood of images) waited for 64 PNG
        // encodings, a quarter of a second and more.
        if (++unreported == kReleaseEvery || size >= kLargeItem) {
            release(freed);
            processed_.fetch_add(unreported, std::memory_order_relaxed);
            freed = 0;
            unreported = 0;
        }
        if (*handled % kClockEvery == 0 || size >= kLargeItem) write_dirty(wall_clock_now(), true, false);
    }
    release(freed);
    processed_.fetch_add(unreported, std::memory_order_relaxed);
}

void Engine::handle(Item* item) {
    if (item->kind == ItemKind::hold) return handle_hold(item);
    if (item->kind == ItemKind::flush || item->kind == ItemKind::close || item->kind == ItemKind::open ||
        item->kind == ItemKind::rotate || item->kind == ItemKind::fail)
        return handle_control(item);
    if (is_side_file(item->kind)) return handle_side_file(item);
    EventFile* f = item->file;
    if (f->awaiting_segment()) {
        try {
            f->start_segment(wall_clock_now());
        } catch (const std::bad_alloc&) {
            f->fail(ENOMEM, "cannot start event file", false, wall_clock_now());
        }
    }
    if (f->failed()) {
        f->state().lost.fetch_add(1, std::memory_order_relaxed);
        return retire(item);
    }
    std::string& out = f->buffer();
    const size_t start = out.size();
    int err = 0;
    try {
        mark_dirty(f);
        err = append_record(*item, out, png_scratch_);
    } catch (const std::bad_alloc&) {
        err = ENOMEM;
    } catch (const std::length_error&) {
        err = ENOMEM;
    } catch (...) {
        err = EIO;
    }
    if (err) {
        out.resize(start);  // cut the partial record off: shrinking never throws
        f->fail(err, encoding_failure(err), true, wall_clock_now());
        f->state().lost.fetch_add(1, std::memory_order_relaxed);
    } else {
        f->record_added();
        if (out.size() >= kFileBufferLimit) f->write_out(wall_clock_now());
    }
    retire(item);
}

// Waits for the hold's records and writes them in its place. The wait is for another thread of
// this process (the one copying a tensor from the GPU, say), never for the GIL: that thread makes
// its records with the GIL and publishes without it, and a hold whose filler is gone was
// cancelled by its handle. Records a cancel dropped count as lost. The records were counted as
// queued when they went into the hold (count_held); their room goes back here.
void Engine::handle_hold(Item* item) {
    Hold* hold = item->hold;
    item->hold = nullptr;
    retire(item);
    // While the worker waits here no room comes back, so this hold's filler, if it waits for
    // room, goes over the bound instead (count_held_when_room).
    const bool waits = !hold->resolved();
    if (waits) {
        std::lock_guard<std::mutex> guard(mutex_);
        awaited_ = hold;
        room_cv_.notify_all();
    }
    Item* dropped = nullptr;
    Item* items = hold->take(&dropped);
    if (waits) {
        std::lock_guard<std::mutex> guard(mutex_);
        awaited_ = nullptr;  // before our reference goes
    }
    hold->release();
    size_t freed = 0;
    for (Item* it = items; it;) {
        Item* next = static_cast<Item*>(it->next.load(std::memory_order_relaxed));
        freed += it->accounted;
        handle(it);
        it = next;
    }
    for (Item* it = dropped; it;) {
        Item* next = static_cast<Item*>(it->next.load(std::memory_order_relaxed));
        freed += it->accounted;
        if (it->file) it->file->state().lost.fetch_add(1, std::memory_order_relaxed);
        retire(it);
        it = next;
    }
    release(freed);
}

// A side file belongs to the event file's writer: its failure is that file's failure, naming the
// side file, and nothing is written for the writer once it has failed.
void Engine::handle_side_file(Item* item) {
    EventFile* f = item->file;
    if (!f->failed()) {
        int err;
        try {
            err = write_side_file(*item, png_scratch_);
        } catch (const std::bad_alloc&) {
            err = ENOMEM;
        }
        if (err) f->fail(err, "cannot write side file", true, wall_clock_now(), item->tag());
    }
    retire(item);
}

void Engine::handle_control(Item* item) {
    EventFile* f = item->file;
    const double now = wall_clock_now();
    if (!f) {
        write_dirty(now, false, true);
    } else if (item->kind == ItemKind::open) {
        f->open_now(now);
    } else if (item->kind == ItemKind::flush) {
        f->flush(now);  // stays in dirty_, where its now empty buffer costs nothing
    } else if (item->kind == ItemKind::rotate) {
        try {
            f->rotate(std::string(item->tag()), item->with_source, now);
        } catch (const std::bad_alloc&) {
            f->fail(ENOMEM, "cannot start event file", true, now);
        }
    } else if (item->kind == ItemKind::fail) {
        try {
            const std::string context(item->payload(), item->payload_len);
            f->fail(int(item->step), context.c_str(), true, now, item->tag());
        } catch (const std::bad_alloc&) {
            f->fail(int(item->step), "remote upload failed", true, now);
        }
    } else {
        if (f->in_dirty_list) dirty_.erase(std::find(dirty_.begin(), dirty_.end(), f));
        f->close(now);
        delete f;  // its writer queued this item after every other item naming the file
    }
    if (item->done) {
        item->done->signal();
        item->done->release();
        item->done = nullptr;
    }
    retire(item);
}

void Engine::retire(Item* item) {
    if (item->streamed) wait_until_filled(*item);
    const bool pooled = item->pooled;
    const size_t capacity = item->capacity;
    item->~Item();
    pool_.recycle(item, capacity, pooled);
}

void Engine::mark_dirty(EventFile* f) {
    if (f->in_dirty_list) return;
    dirty_.push_back(f);  // may throw; the file is then written at its next flush or close
    f->in_dirty_list = true;
}

void Engine::write_dirty(double now, bool only_due, bool check_names) {
    const double busy_write_secs = std::chrono::duration<double>(max_nap_).count();
    size_t kept = 0;
    for (EventFile* f : dirty_) {
        if (only_due && now - f->last_write() < std::min(f->flush_secs(), busy_write_secs)) {
            dirty_[kept++] = f;
            continue;
        }
        if (check_names)
            f->flush(now);
        else
            f->write_out(now);
        f->in_dirty_list = false;
    }
    dirty_.resize(kept);
}

void Engine::rest(uint64_t handled, std::chrono::microseconds* idle_for) {
    pool_.hand_over_worker_chain();
    if (handled >= kManyRecords) {
        nap_ = std::max(nap_ / 2, kMinNap);
    } else if (handled < kFewRecords) {
        nap_ = std::min(nap_ * 2, max_nap_);
    }
    *idle_for = handled ? std::chrono::microseconds(0) : *idle_for + nap_;
    if (*idle_for < kIdleBeforeSleep) {
        idle_wait(nap_);
        return;
    }
    pool_.drop_large();  // idle for a while: give large blocks back to the system
#ifdef __GLIBC__
    // and what malloc keeps: small blocks freed among large ones (a flood of scalars beside
    // images) held some 200 MB after close(), until exit.
    malloc_trim(0);
#endif
    sleeping_.store(true, std::memory_order_seq_cst);
    const bool woken = queue_.idle() && idle_wait(kDeepSleep);
    sleeping_.store(false, std::memory_order_seq_cst);
    if (woken || !queue_.idle()) {
        *idle_for = std::chrono::microseconds(0);
        nap_ = kMinNap;
    }
}

bool Engine::idle_wait(std::chrono::microseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    const bool woken = wake_cv_.wait_for(lock, timeout, [this] { return woken_; });
    woken_ = false;
    return woken;
}

}  // namespace fasttb
