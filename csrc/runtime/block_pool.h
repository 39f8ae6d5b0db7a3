// Memory for items, recycled between producers and the worker.
//
// Small blocks: producers allocate every record and the worker frees it; done block by block,
// the allocator's shared arena lock would bounce between the two cores on every record. Each
// producer thread keeps its own chain of free blocks, the worker gathers freed ones into chains,
// and whole chains change hands under a mutex. The worker never writes into a block it frees
// (the chain holds the pointers), so a producer reusing one does not wait for its cache line.
//
// Large blocks (histogram values, pixels): a fresh allocation of that size is a new mapping, and
// first touching its pages costs more than copying into them, so a few are kept for reuse.
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>
#include <vector>

namespace fasttb {

constexpr size_t kSmallBlock = 256;

class BlockPool {
public:
    using Chain = std::vector<void*>;

    BlockPool() = default;
    BlockPool(const BlockPool&) = delete;
    BlockPool& operator=(const BlockPool&) = delete;

    // The pool that thread caches may hand blocks back to; after fork() there is none until the
    // child starts its own engine (the parent's pool may be locked by a thread the child lacks).
    static void set_live(BlockPool* pool);

    // A block of `bytes` for an item; *capacity is its real size. nullptr when memory runs out.
    // Any thread.
    void* take(size_t bytes, size_t* capacity);
    // Gives back a block that the calling producer took but never queued.
    void give_back(void* block, size_t capacity, bool small);
    // The worker frees a block it has handled; small ones wait in its own chain.
    void recycle(void* block, size_t capacity, bool small);
    // The worker is about to rest: hand its partial chain over, and (idle for long) let large
    // blocks go back to the system.
    void hand_over_worker_chain();
    void drop_large();
    // Idle large blocks are kept up to half of `queue_limit` bytes (and never more than 128 MiB),
    // so that memory stays near the queue's bound. Any thread.
    void set_queue_limit(size_t queue_limit);
    // Bytes of the large blocks kept for reuse now (engine_stats). Any thread.
    size_t idle_large_bytes();

private:
    friend struct ProducerCache;
    bool take_chain(Chain* out);
    void give_chain(Chain chain);
    void* take_large(size_t bytes, size_t* capacity);
    void give_large(void* block, size_t capacity);

    Chain worker_chain_;  // worker only: blocks freed since the last hand-over
    std::mutex mutex_;
    std::vector<Chain> chains_;  // guarded by mutex_
    struct Block {
        void* data;
        size_t capacity;
    };
    std::vector<Block> large_;  // guarded by mutex_
    static constexpr size_t kMostKeptBytes = size_t(128) << 20;  // with the default 256 MiB queue
    std::atomic<size_t> large_kept_bytes_{kMostKeptBytes};  // what large_ may hold
};

}  // namespace fasttb
