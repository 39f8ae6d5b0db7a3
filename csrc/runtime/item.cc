// Items and completions; see item.h.
#include "runtime/item.h"

#include <cstring>
#include <new>
#include <thread>

#include "runtime/block_pool.h"

namespace fasttb {

Completion* Completion::make() { return new (std::nothrow) Completion(); }

Completion* Completion::add_ref() {
    refs_.fetch_add(1, std::memory_order_relaxed);
    return this;
}

void Completion::signal() {
    std::lock_guard<std::mutex> lock(m_);
    done_ = true;
    signalled_.store(true, std::memory_order_release);
    cv_.notify_all();
}

namespace {

// How long a waiter spins before it sleeps. A flush of a few records is done within tens of
// microseconds, about what going to sleep and being woken costs on top (measured on a 2-core
// VM: a flush after idle took 50 us, half of it the waiter's sleep and wake-up). Only where
// another core can run the worker meanwhile.
constexpr std::chrono::microseconds kSpin{40};
const bool g_spin = std::thread::hardware_concurrency() > 1;

}  // namespace

bool Completion::wait_for(std::chrono::milliseconds timeout) {
    if (g_spin) {
        const auto until = std::chrono::steady_clock::now() + kSpin;
        do {
            if (signalled_.load(std::memory_order_acquire)) return true;
        } while (std::chrono::steady_clock::now() < until);
    }
    std::unique_lock<std::mutex> lock(m_);
    return cv_.wait_for(lock, timeout, [this] { return done_; });
}

bool Completion::done() {
    std::lock_guard<std::mutex> lock(m_);
    return done_;
}

void Completion::release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

Item* Item::make(BlockPool& pool, ItemKind kind, EventFile* file, std::string_view tag,
                 size_t payload_len) {
    const size_t payload_offset = (sizeof(Item) + tag.size() + 15) & ~size_t(15);
    if (payload_len > SIZE_MAX - payload_offset) return nullptr;
    const size_t size = payload_offset + payload_len;
    size_t capacity = 0;
    void* mem = pool.take(size, &capacity);
    if (!mem) return nullptr;
    Item* item = new (mem) Item();
    item->kind = kind;
    item->file = file;
    item->pooled = size <= kSmallBlock;
    item->capacity = capacity;
    item->tag_len = static_cast<uint32_t>(tag.size());
    item->payload_len = payload_len;
    item->payload_offset = payload_offset;
    item->accounted = size;
    if (!tag.empty()) std::memcpy(reinterpret_cast<char*>(item + 1), tag.data(), tag.size());
    return item;
}

void Item::discard(BlockPool& pool, Item* item) {
    const bool pooled = item->pooled;
    const size_t capacity = item->capacity;
    if (item->done) item->done->release();
    item->~Item();
    pool.give_back(item, capacity, pooled);
}

}  // namespace fasttb
