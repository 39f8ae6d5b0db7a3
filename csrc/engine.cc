// The worker thread, its wake-up protocol and the queue's byte bound; see engine.h.
//
// Wake-ups: after draining the queue and handing everything to the OS, the worker naps;
// producers do not signal it then, so a busy training loop pays no system call per record. A
// wake-up costs tens of microseconds of CPU on a virtual machine, so the nap adapts: it doubles
// (up to 20 ms) while wake-ups find only a handful of records and halves when they find many.
// After 200 ms without records the worker sleeps deeply and the first producer to push wakes
// it. Flush, close and a queue past its wake threshold wake it at once.
#include "engine.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <pthread.h>
#include <time.h>

#include "png.h"
#include "record.h"

namespace fasttb {
namespace {

constexpr size_t kDefaultLimit = size_t(256) << 20;
constexpr auto kMinNap = std::chrono::microseconds(1000);
constexpr auto kDefaultMaxNap = std::chrono::microseconds(20000);
constexpr auto kIdleBeforeSleep = std::chrono::milliseconds(200);
constexpr uint64_t kFewRecords = 64;    // a wake-up finding fewer: nap longer
constexpr uint64_t kManyRecords = 1024;  // finding more: nap shorter
constexpr size_t kWakeBytes = size_t(8) << 20;  // a producer wakes a napping worker past this
constexpr size_t kFileBufferLimit = size_t(4) << 20;
constexpr uint64_t kClockEvery = 4096;  // items between checks of flush_secs while busy

std::atomic<Engine*> g_engine{nullptr};
std::atomic<uint64_t> g_generation{0};
std::atomic_flag g_create_lock = ATOMIC_FLAG_INIT;

void after_fork_in_child() {
    // The worker does not exist in the child, and its mutexes may be held forever: abandon the
    // whole engine (leaked on purpose; destroying it would join a thread that is not there).
    g_generation.fetch_add(1, std::memory_order_relaxed);
    g_engine.store(nullptr, std::memory_order_relaxed);
    g_create_lock.clear();
}

}  // namespace

double wall_clock_now() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    // The same arithmetic as Python's time.time(): integer nanoseconds, then one division.
    return static_cast<double>(int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec) / 1e9;
}

void Completion::signal() {
    std::lock_guard<std::mutex> lock(m);
    done = true;
    cv.notify_all();
}

void Completion::wait() {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [this] { return done; });
}

namespace {

constexpr size_t kChainLength = 128;  // blocks per batch handed between worker and producers
constexpr size_t kLargeBlock = size_t(16) << 10;   // from here on, blocks are kept for reuse
constexpr size_t kLargeKept = 4;                   // at most this many,
constexpr size_t kLargeKeptBytes = size_t(128) << 20;  // holding at most this much
constexpr size_t kPoolChains = 256;   // at most 8 MiB of idle blocks

void free_chain(Engine::Chain& chain) {
    for (void* block : chain) ::operator delete(block);
    chain.clear();
}

// Each producer thread keeps its own batch of free blocks and refills it a batch at a time.
struct ProducerCache {
    Engine::Chain chain;
    Engine* engine = nullptr;
    uint64_t generation = 0;

    ~ProducerCache() {
        if (engine && generation == Engine::generation() && engine == Engine::current())
            engine->give_chain(std::move(chain));
        else
            free_chain(chain);
    }

    void* take(Engine& e) {
        const uint64_t gen = Engine::generation();
        if (engine != &e || generation != gen) {
            free_chain(chain);  // blocks of another engine (a forked child's inheritance)
            engine = &e;
            generation = gen;
        }
        if (chain.empty() && !e.take_chain(&chain)) return ::operator new(kSmallBlock, std::nothrow);
        void* block = chain.back();
        chain.pop_back();
        return block;
    }

    void put(void* block) { chain.push_back(block); }
};

thread_local ProducerCache t_cache;

}  // namespace

Item* Item::make(ItemKind kind, EventFile* file, std::string_view tag, size_t payload_len) {
    const size_t payload_offset = (sizeof(Item) + tag.size() + 15) & ~size_t(15);
    const size_t size = payload_offset + payload_len;
    const bool small = size <= kSmallBlock;
    size_t capacity = small ? kSmallBlock : size;
    void* mem = nullptr;
    if (small) {
        mem = t_cache.take(Engine::instance());
    } else if (size >= kLargeBlock) {
        mem = Engine::instance().take_large(size, &capacity);
    }
    if (!mem && !small) mem = ::operator new(size, std::nothrow);
    if (!mem) return nullptr;
    Item* item = new (mem) Item();
    item->kind = kind;
    item->file = file;
    item->pooled = small;
    item->capacity = capacity;
    item->tag_len = static_cast<uint32_t>(tag.size());
    item->payload_len = payload_len;
    item->payload_offset = payload_offset;
    item->accounted = payload_offset + payload_len;
    if (!tag.empty()) std::memcpy(reinterpret_cast<char*>(item + 1), tag.data(), tag.size());
    return item;
}

void Item::discard(Item* item) {
    const bool pooled = item->pooled;
    const size_t capacity = item->capacity;
    item->~Item();
    if (pooled)
        t_cache.put(item);
    else if (capacity >= kLargeBlock)
        Engine::instance().give_large(item, capacity);
    else
        ::operator delete(item);
}

bool Engine::take_chain(Chain* out) {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (pool_.empty()) return false;
    out->swap(pool_.back());
    pool_.pop_back();
    return true;
}

void Engine::give_chain(Chain chain) {
    if (chain.empty()) return;
    {
        std::lock_guard<std::mutex> lock(pool_mutex_);
        if (pool_.size() < kPoolChains) {
            pool_.push_back(std::move(chain));
            return;
        }
    }
    free_chain(chain);
}

void* Engine::take_large(size_t bytes, size_t* capacity) {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    for (size_t i = 0; i < large_.size(); ++i) {
        // A block at most twice the size needed, so that reuse never hoards much more memory.
        if (large_[i].capacity >= bytes && large_[i].capacity / 2 <= bytes) {
            void* data = large_[i].data;
            *capacity = large_[i].capacity;
            large_.erase(large_.begin() + std::ptrdiff_t(i));
            return data;
        }
    }
    return nullptr;
}

void Engine::give_large(void* block, size_t capacity) {
    {
        std::lock_guard<std::mutex> lock(pool_mutex_);
        size_t kept = capacity;
        for (const Block& b : large_) kept += b.capacity;
        if (capacity <= kLargeKeptBytes) {
            // Make room by forgetting the oldest blocks first.
            while (!large_.empty() && (large_.size() >= kLargeKept || kept > kLargeKeptBytes)) {
                kept -= large_.front().capacity;
                ::operator delete(large_.front().data);
                large_.erase(large_.begin());
            }
            if (kept <= kLargeKeptBytes) {
                large_.push_back({block, capacity});
                return;
            }
        }
    }
    ::operator delete(block);
}

void Engine::drop_large() {
    std::vector<Block> blocks;
    {
        std::lock_guard<std::mutex> lock(pool_mutex_);
        blocks.swap(large_);
    }
    for (const Block& b : blocks) ::operator delete(b.data);
}

void Engine::recycle(Item* item) {
    const bool pooled = item->pooled;
    const size_t capacity = item->capacity;
    item->~Item();
    if (!pooled) {
        if (capacity >= kLargeBlock)
            give_large(item, capacity);
        else
            ::operator delete(item);
        return;
    }
    if (worker_chain_.capacity() < kChainLength) worker_chain_.reserve(kChainLength);
    worker_chain_.push_back(item);
    if (worker_chain_.size() == kChainLength) give_chain(std::move(worker_chain_));
}

Engine& Engine::instance() {
    Engine* e = g_engine.load(std::memory_order_acquire);
    if (e) return *e;
    while (g_create_lock.test_and_set(std::memory_order_acquire)) std::this_thread::yield();
    e = g_engine.load(std::memory_order_acquire);
    if (!e) {
        static const int registered = pthread_atfork(nullptr, nullptr, after_fork_in_child);
        (void)registered;
        e = new Engine();
        g_engine.store(e, std::memory_order_release);
    }
    g_create_lock.clear(std::memory_order_release);
    return *e;
}

Engine* Engine::current() { return g_engine.load(std::memory_order_acquire); }

uint64_t Engine::generation() { return g_generation.load(std::memory_order_relaxed); }

Engine::Engine() : limit_(kDefaultLimit), nap_(kMinNap), max_nap_(kDefaultMaxNap) {
    if (const char* env = std::getenv("FASTTB_QUEUE_BYTES")) {
        const long long v = std::atoll(env);
        if (v > 0) limit_ = static_cast<size_t>(v);
    }
    if (const char* env = std::getenv("FASTTB_MAX_NAP_US")) {
        const long long v = std::atoll(env);
        if (v > 0) max_nap_ = std::max(std::chrono::microseconds(v), kMinNap);
    }
    thread_ = std::thread([this] { run(); });
    thread_.detach();  // lives as long as the process; see after_fork_in_child
}

Engine::Push Engine::push(Item* item, bool drop_when_full) {
    const size_t size = item->accounted;
    const size_t pushed = pushed_.fetch_add(size, std::memory_order_relaxed) + size;
    // released_ may lag behind the worker a little, which only overstates the queue.
    const size_t queued = pushed - released_.load(std::memory_order_relaxed);
    const size_t limit = limit_.load(std::memory_order_relaxed);
    // An item larger than the whole bound still goes through once the queue is empty.
    if (queued > limit && queued != size) {
        pushed_.fetch_sub(size, std::memory_order_relaxed);
        if (!drop_when_full) return Push::full;
        Item::discard(item);
        return Push::dropped;
    }
    size_t hw = high_water_.load(std::memory_order_relaxed);
    while (queued > hw && !high_water_.compare_exchange_weak(hw, queued, std::memory_order_relaxed)) {
    }
    const bool streamed = item->streamed;  // the item is the worker's once pushed
    queue_.push(item);
    if (sleeping_.load(std::memory_order_seq_cst) ||
        ((streamed || queued > std::min(limit / 2, kWakeBytes)) &&
         !wake_pending_.exchange(true, std::memory_order_relaxed)))
        wake();
    return Push::ok;
}

void Engine::wake() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        woken_ = true;
    }
    wake_cv_.notify_one();
}

void Engine::wait_for_room(size_t bytes) {
    room_waiters_.fetch_add(1, std::memory_order_seq_cst);
    wake();
    {
        std::unique_lock<std::mutex> lock(mutex_);
        const auto fits = [&] {
            const size_t queued = queued_bytes();
            return queued == 0 || queued + bytes <= limit_.load(std::memory_order_relaxed);
        };
        // The timeout only guards against a missed notification; room_cv_ normally ends it.
        while (!fits()) room_cv_.wait_for(lock, std::chrono::milliseconds(10));
    }
    room_waiters_.fetch_sub(1, std::memory_order_seq_cst);
}

void Engine::push_and_wait(Item* control) {
    Completion done;
    control->done = &done;
    control->accounted = 0;  // control items never wait for room
    queue_.push(control);
    wake();
    done.wait();
}

void Engine::release(size_t bytes) {
    if (!bytes) return;
    released_.fetch_add(bytes, std::memory_order_seq_cst);
    if (room_waiters_.load(std::memory_order_seq_cst) > 0) {
        std::lock_guard<std::mutex> lock(mutex_);
        room_cv_.notify_all();
    }
}

void Engine::mark_dirty(EventFile* f) {
    if (f->in_dirty_list) return;
    f->in_dirty_list = true;
    dirty_.push_back(f);
}

void Engine::write_dirty(double now, bool only_due) {
    size_t kept = 0;
    for (EventFile* f : dirty_) {
        if (only_due && now - f->last_write() < f->flush_secs()) {
            dirty_[kept++] = f;
            continue;
        }
        f->write_out(now);
        f->in_dirty_list = false;
    }
    dirty_.resize(kept);
}

void Engine::process(Item* item) {
    EventFile* f = item->file;
    if (item->kind == ItemKind::flush || item->kind == ItemKind::close) {
        const double now = wall_clock_now();
        if (!f) {
            write_dirty(now, false);
        } else {
            if (item->kind == ItemKind::flush) {
                f->flush(now);  // stays in dirty_, where its now empty buffer costs nothing
            } else {
                if (f->in_dirty_list) dirty_.erase(std::find(dirty_.begin(), dirty_.end(), f));
                f->close(now);
                delete f;  // the writer gave the file up when it queued this item
            }
        }
        if (item->done) item->done->signal();  // the waiter owns nothing in the item
        recycle(item);
        return;
    }
    if (f->failed()) {
        f->state().lost.fetch_add(1, std::memory_order_relaxed);
        recycle(item);
        return;
    }
    mark_dirty(f);
    std::string& out = f->buffer();
    const size_t start = begin_record(out);
    const std::string_view payload(item->payload(), item->payload_len);
    switch (item->kind) {
        case ItemKind::scalar:
            encode_scalar_event(out, item->wall_time, item->step, item->tag(), item->value,
                                item->scalar_kind);
            break;
        case ItemKind::event:
            out.append(payload.data(), payload.size());
            break;
        case ItemKind::summary:
            encode_summary_event(out, item->wall_time, item->step, payload);
            break;
        case ItemKind::file_version:
            encode_file_version_event(out, item->wall_time, item->step, item->with_source);
            break;
        case ItemKind::session_start:
            encode_session_start_event(out, item->wall_time, item->step);
            break;
        case ItemKind::histogram: {
            const Histogram h = tensorflow_histogram(item->payload(), item->count, item->dtype,
                                                     item->max_bins,
                                                     item->streamed ? &item->filled : nullptr);
            encode_histogram_event(out, item->wall_time, item->step, item->tag(), h);
            break;
        }
        case ItemKind::histogram_raw: {
            Histogram h;
            h.min = item->stats[0];
            h.max = item->stats[1];
            h.num = item->stats[2];
            h.sum = item->stats[3];
            h.sum_squares = item->stats[4];
            const double* v = reinterpret_cast<const double*>(item->payload());
            h.bucket_limit.assign(v, v + item->count);
            h.bucket.assign(v + item->count, v + 2 * item->count);
            encode_histogram_event(out, item->wall_time, item->step, item->tag(), h);
            break;
        }
        case ItemKind::image: {
            const uint8_t* pixels = reinterpret_cast<const uint8_t*>(item->payload());
            if (item->planes)
                encode_png_planes(pixels, item->planes, item->height, item->width, &png_scratch_);
            else
                encode_png(pixels, item->height, item->width, item->channels, &png_scratch_);
            encode_image_event(out, item->wall_time, item->step, item->tag(), item->shown_height,
                               item->shown_width, item->channels, png_scratch_);
            if (png_scratch_.capacity() > (8u << 20)) std::string().swap(png_scratch_);
            break;
        }
        case ItemKind::flush:
        case ItemKind::close:
            break;  // handled above
    }
    end_record(out, start);
    f->record_added();
    recycle(item);
    if (out.size() >= kFileBufferLimit) f->write_out(wall_clock_now());
}

void Engine::set_paused(bool paused) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        paused_ = paused;
        woken_ = true;
    }
    wake_cv_.notify_one();
}

void Engine::idle_wait(bool deep) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (deep) {
        wake_cv_.wait(lock, [this] { return woken_; });
    } else {
        wake_cv_.wait_for(lock, nap_, [this] { return woken_; });
    }
    woken_ = false;
}

void Engine::run() {
    auto idle_for = std::chrono::microseconds(0);
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_cv_.wait(lock, [this] { return !paused_; });
        }
        uint64_t handled = 0;
        size_t freed = 0;
        while (QueueNode* node = queue_.pop()) {
            Item* item = static_cast<Item*>(node);
            freed += item->accounted;
            process(item);
            if (++handled % 64 == 0) {
                release(freed);
                freed = 0;
            }
            if (handled % kClockEvery == 0) write_dirty(wall_clock_now(), true);
        }
        release(freed);
        processed_.fetch_add(handled, std::memory_order_relaxed);
        wake_pending_.store(false, std::memory_order_relaxed);
        // The queue is drained: everything logged so far goes to the OS now, so a killed process
        // loses at most what arrived during the last nap.
        if (!dirty_.empty()) write_dirty(wall_clock_now(), false);
        if (!queue_.idle()) {
            std::this_thread::yield();  // a producer is half-way through a push
            continue;
        }
        if (!worker_chain_.empty()) give_chain(std::move(worker_chain_));  // hand blocks back
        if (handled >= kManyRecords) {
            nap_ = std::max(nap_ / 2, kMinNap);
        } else if (handled < kFewRecords) {
            nap_ = std::min(nap_ * 2, max_nap_);
        }
        idle_for = handled ? std::chrono::microseconds(0) : idle_for + nap_;
        if (idle_for < kIdleBeforeSleep) {
            idle_wait(false);
            continue;
        }
        drop_large();  // idle for a while: give large blocks back to the system
        sleeping_.store(true, std::memory_order_seq_cst);
        if (queue_.idle()) idle_wait(true);
        sleeping_.store(false, std::memory_order_seq_cst);
        idle_for = std::chrono::microseconds(0);
        nap_ = kMinNap;
    }
}

}  // namespace fasttb
