// The background side of fasttb: one process-wide worker thread behind one byte-bounded queue,
// shared by every writer and every add_scalars sub-run, so threads never grow with runs.
// Items carry only owned C++ buffers; the worker never touches Python and never takes the GIL.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "event.h"
#include "event_file.h"
#include "histogram.h"
#include "queue.h"

namespace fasttb {

enum class ItemKind : uint8_t {
    scalar,          // value, scalar_kind
    event,           // payload: a serialized Event
    summary,         // payload: a serialized Summary
    file_version,    // the first record, or (with step) the purge_step marker
    session_start,   // the purge_step SessionLog.START marker
    histogram,       // payload: `count` values of `dtype`
    histogram_raw,   // payload: `count` bucket limits then `count` counts, as doubles
    image,           // payload: height x width x channels uint8 pixels
    flush,           // write the file (every file when `file` is null) and signal `done`
    close,           // flush, close and delete the file, then signal `done`
};

// A waiter's side of a flush or close: the caller blocks on it (without the GIL) until the
// worker has handled every earlier item.
struct Completion {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    void signal();
    void wait();
};

struct Item : QueueNode {
    ItemKind kind;
    ScalarKind scalar_kind = ScalarKind::simple_value;
    DType dtype = DType::f64;
    bool with_source = false;
    EventFile* file = nullptr;
    Completion* done = nullptr;
    double wall_time = 0;
    int64_t step = 0;
    double value = 0;
    double stats[5] = {};  // histogram_raw: min, max, num, sum, sum_squares
    int64_t max_bins = 0;
    uint32_t height = 0, width = 0, channels = 0;  // image: the pixels' shape
    uint32_t shown_height = 0, shown_width = 0;     // image: the size Summary.Image records
    uint32_t planes = 0;  // image: 0 for HWC pixels, else the C of CHW pixels (1 becomes RGB)
    size_t count = 0;
    size_t accounted = 0;  // bytes counted against the queue bound
    uint32_t tag_len = 0;
    size_t payload_len = 0;
    size_t payload_offset = 0;
    // A histogram queued before its values are copied in: the producer publishes how many
    // payload bytes are there, and the worker buckets them as they arrive (see push_streamed).
    bool streamed = false;
    std::atomic<size_t> filled{0};

    bool pooled = false;   // a recycled small block (see Engine's pool) rather than the heap
    size_t capacity = 0;   // bytes of the allocation (a reused large block may be bigger)

    std::string_view tag() const {
        return {reinterpret_cast<const char*>(this + 1), tag_len};
    }
    char* payload() { return reinterpret_cast<char*>(this) + payload_offset; }

    // One allocation holds the item, the tag and the payload (aligned for doubles). Call on
    // the producer's side; nullptr when memory is exhausted.
    static Item* make(ItemKind kind, EventFile* file, std::string_view tag, size_t payload_len);
    // Frees an item the producer still owns (one the drop policy refused).
    static void discard(Item* item);
};

// Small items are recycled instead of freed: the worker would otherwise free, block by block,
// memory the producer allocated, and the allocator's shared arena lock would bounce between the
// two cores on every record. Freed blocks travel back to producers in batches.
constexpr size_t kSmallBlock = 256;

class Engine {
public:
    // The engine of the current process, created (with its thread) on first use. After fork()
    // the child gets a fresh engine: the parent's is left untouched, thread and files alike.
    static Engine& instance();
    static uint64_t generation();
    // The engine of the current process if one was started, else nullptr.
    static Engine* current();

    enum class Push { ok, full, dropped };
    // Never blocks. `full`: the item was not queued and is still the caller's; `dropped`: the
    // drop policy freed it.
    Push push(Item* item, bool drop_when_full);
    // Blocks until an item of `bytes` fits. Call without the GIL.
    void wait_for_room(size_t bytes);
    // Queues a flush or close and waits until the worker has done it. Call without the GIL.
    void push_and_wait(Item* control);

    size_t limit() const { return limit_.load(std::memory_order_relaxed); }
    void set_limit(size_t bytes) { limit_.store(bytes, std::memory_order_relaxed); }
    size_t queued_bytes() const {
        return pushed_.load(std::memory_order_relaxed) - released_.load(std::memory_order_relaxed);
    }

    // The pool of small blocks, in batches. The worker never writes into a freed block (the
    // batch keeps the pointers), so a producer reusing one does not wait for its cache line.
    using Chain = std::vector<void*>;
    bool take_chain(Chain* out);  // any thread
    void give_chain(Chain chain);  // any thread

    // Large blocks (histogram values, pixels) are kept for reuse too: a fresh allocation of that
    // size is a new mapping, and first touching its pages costs more than copying into them.
    void* take_large(size_t bytes, size_t* capacity);  // any thread; nullptr if none fits
    void give_large(void* block, size_t capacity);     // any thread
    size_t high_water() const { return high_water_.load(std::memory_order_relaxed); }
    void reset_high_water() { high_water_.store(queued_bytes(), std::memory_order_relaxed); }
    uint64_t items_processed() const { return processed_.load(std::memory_order_relaxed); }

    // For benchmarks of the worker alone: while paused it takes nothing from the queue (fill
    // the queue, resume, time the drain). Never pause around a flush: it would wait forever.
    void set_paused(bool paused);

private:
    Engine();
    void wake();
    void run();
    void process(Item* item);
    void mark_dirty(EventFile* f);
    void write_dirty(double now, bool only_due);
    void release(size_t bytes);
    void idle_wait(bool deep);
    void recycle(Item* item);

    MpscQueue queue_;
    // Queued bytes are pushed_ - released_: producers only add to the first and the worker only
    // to the second, so a push does not fight the worker for a cache line.
    alignas(64) std::atomic<size_t> pushed_{0};
    std::atomic<size_t> high_water_{0};
    std::atomic<size_t> limit_;
    alignas(64) std::atomic<size_t> released_{0};
    std::atomic<bool> sleeping_{false};      // worker waits for a wake(); producers must wake it
    std::atomic<bool> wake_pending_{false};  // a producer already asked for an early wake-up
    std::atomic<int> room_waiters_{0};
    std::atomic<uint64_t> processed_{0};
    std::mutex mutex_;
    std::condition_variable wake_cv_;
    std::condition_variable room_cv_;
    bool woken_ = false;  // guarded by mutex_
    bool paused_ = false;  // guarded by mutex_
    std::chrono::microseconds nap_;      // worker only: how long it waits before looking again
    std::chrono::microseconds max_nap_;  // FASTTB_MAX_NAP_US, 20 ms by default
    std::vector<EventFile*> dirty_;  // worker only: files whose buffer holds records
    std::string png_scratch_;        // worker only: the PNG being encoded
    Chain worker_chain_;             // worker only: blocks freed since the last batch
    std::mutex pool_mutex_;
    std::vector<Chain> pool_;        // guarded by pool_mutex_
    struct Block {
        void* data;
        size_t capacity;
    };
    std::vector<Block> large_;       // guarded by pool_mutex_
    void drop_large();
    std::thread thread_;
};

double wall_clock_now();

}  // namespace fasttb
