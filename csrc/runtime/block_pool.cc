// Recycled item memory; see block_pool.h. Nothing here throws: when a list cannot grow, the
// block goes back to the allocator instead.
#include "runtime/block_pool.h"

#include <algorithm>
#include <atomic>
#include <new>
#include <utility>

namespace fasttb {
namespace {

constexpr size_t kChainLength = 128;               // blocks per chain handed between threads
constexpr size_t kPoolChains = 256;                // at most 8 MiB of idle small blocks
constexpr size_t kLargeBlock = size_t(16) << 10;   // from here on, blocks are kept for reuse
// At most this many, holding at most large_kept_bytes_: a burst of a dozen PR curves or images
// then reuses pages already touched instead of faulting in fresh ones (a third of a 1 MB copy's
// cost).
constexpr size_t kLargeKept = 16;

std::atomic<BlockPool*> g_live{nullptr};

void free_chain(BlockPool::Chain& chain) {
    for (void* block : chain) ::operator delete(block);
    chain.clear();
}

bool push_block(BlockPool::Chain& chain, void* block) {
    try {
        if (chain.capacity() < kChainLength) chain.reserve(kChainLength);
        chain.push_back(block);
        return true;
    } catch (const std::bad_alloc&) {
        return false;
    }
}

}  // namespace

// Each producer thread's chain of free small blocks, refilled a chain at a time.
struct ProducerCache {
    BlockPool::Chain chain;
    BlockPool* pool = nullptr;

    ~ProducerCache() {
        if (pool && pool == g_live.load(std::memory_order_acquire))
            pool->give_chain(std::move(chain));
        else
            free_chain(chain);
    }

    void* take(BlockPool& p) {
        if (pool != &p) {
            free_chain(chain);  // blocks of another pool (a forked child's inheritance)
            pool = &p;
        }
        if (chain.empty() && !p.take_chain(&chain)) return ::operator new(kSmallBlock, std::nothrow);
        void* block = chain.back();
        chain.pop_back();
        return block;
    }

    void put(BlockPool& p, void* block) {
        if (pool != &p || !push_block(chain, block)) ::operator delete(block);
    }
};

namespace {
thread_local ProducerCache t_cache;
}  // namespace

void BlockPool::set_live(BlockPool* pool) { g_live.store(pool, std::memory_order_release); }

void* BlockPool::take(size_t bytes, size_t* capacity) {
    if (bytes <= kSmallBlock) {
        *capacity = kSmallBlock;
        return t_cache.take(*this);
    }
    *capacity = bytes;
    void* block = bytes >= kLargeBlock ? take_large(bytes, capacity) : nullptr;
    return block ? block : ::operator new(bytes, std::nothrow);
}

void BlockPool::give_back(void* block, size_t capacity, bool small) {
    if (small)
        t_cache.put(*this, block);
    else if (capacity >= kLargeBlock)
        give_large(block, capacity);
    else
        ::operator delete(block);
}

void BlockPool::recycle(void* block, size_t capacity, bool small) {
    if (!small) {
        if (capacity >= kLargeBlock)
            give_large(block, capacity);
        else
            ::operator delete(block);
        return;
    }
    if (!push_block(worker_chain_, block)) {
        ::operator delete(block);
        return;
    }
    if (worker_chain_.size() == kChainLength) give_chain(std::move(worker_chain_));
}

void BlockPool::hand_over_worker_chain() {
    if (!worker_chain_.empty()) give_chain(std::move(worker_chain_));
    worker_chain_ = Chain();
}

bool BlockPool::take_chain(Chain* out) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (chains_.empty()) return false;
    out->swap(chains_.back());
    chains_.pop_back();
    return true;
}

void BlockPool::give_chain(Chain chain) {
    if (chain.empty()) return;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (chains_.size() < kPoolChains) {
            try {
                chains_.push_back(std::move(chain));
                return;
            } catch (const std::bad_alloc&) {
            }
        }
    }
    free_chain(chain);
}

void* BlockPool::take_large(size_t bytes, size_t* capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
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

void BlockPool::set_queue_limit(size_t queue_limit) {
    large_kept_bytes_.store(std::min(queue_limit / 2, kMostKeptBytes), std::memory_order_relaxed);
}

size_t BlockPool::idle_large_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t kept = 0;
    for (const Block& b : large_) kept += b.capacity;
    return kept;
}

void BlockPool::give_large(void* block, size_t capacity) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        const size_t most = large_kept_bytes_.load(std::memory_order_relaxed);
        size_t kept = capacity;
        for (const Block& b : large_) kept += b.capacity;
        if (capacity <= most) {
            // Make room by forgetting the oldest blocks first.
            while (!large_.empty() && (large_.size() >= kLargeKept || kept > most)) {
                kept -= large_.front().capacity;
                ::operator delete(large_.front().data);
                large_.erase(large_.begin());
            }
            if (kept <= most) {
                try {
                    large_.push_back({block, capacity});
                    return;
                } catch (const std::bad_alloc&) {
                }
            }
        }
    }
    ::operator delete(block);
}

void BlockPool::drop_large() {
    std::vector<Block> blocks;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        blocks.swap(large_);
    }
    for (const Block& b : blocks) ::operator delete(b.data);
}

}  // namespace fasttb
