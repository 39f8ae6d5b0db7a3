// A multi-producer, single-consumer queue of intrusive nodes (Vyukov's design): a push is one
// atomic exchange and one store, so producers never take a lock and never wait for each other.
// The queue itself is unbounded; Engine bounds it in bytes and decides what happens when full.
#pragma once

#include <atomic>

namespace fasttb {

struct QueueNode {
    std::atomic<QueueNode*> next{nullptr};
};

class MpscQueue {
public:
    MpscQueue() : tail_(&stub_), head_(&stub_) {}
    MpscQueue(const MpscQueue&) = delete;
    MpscQueue& operator=(const MpscQueue&) = delete;

    // Any thread. The exchange is seq_cst so that Engine's sleep check (a store of its flag,
    // then a load of the tail in idle()) and a producer's push (this exchange, then a load of the
    // flag) cannot both miss each other; the link itself only needs to publish the node.
    void push(QueueNode* node) {
        node->next.store(nullptr, std::memory_order_relaxed);
        QueueNode* prev = tail_.exchange(node, std::memory_order_seq_cst);
        prev->next.store(node, std::memory_order_release);
    }

    // Consumer only. Returns nullptr when empty, and also for the instant in which a producer
    // has swapped the tail but not yet linked its node; `idle()` tells the two apart.
    QueueNode* pop() {
        QueueNode* head = head_;
        QueueNode* next = head->next.load(std::memory_order_acquire);
        if (head == &stub_) {
            if (!next) return nullptr;
            head_ = next;
            head = next;
            next = next->next.load(std::memory_order_acquire);
        }
        if (next) {
            head_ = next;
            return head;
        }
        if (head != tail_.load(std::memory_order_acquire)) return nullptr;
        push(&stub_);
        next = head->next.load(std::memory_order_acquire);
        if (next) {
            head_ = next;
            return head;
        }
        return nullptr;
    }

    // Consumer only: true when every pushed node has been returned by pop(). head_ and tail_
    // both rest on the stub exactly then; a tail elsewhere means a push has begun.
    bool idle() const {
        return head_ == &stub_ && tail_.load(std::memory_order_seq_cst) == &stub_;
    }

private:
    alignas(64) std::atomic<QueueNode*> tail_;
    alignas(64) QueueNode* head_;
    QueueNode stub_;
};

}  // namespace fasttb
