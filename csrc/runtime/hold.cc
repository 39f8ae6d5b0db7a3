// See hold.h.
#include "runtime/hold.h"

#include <new>

#include "runtime/item.h"

namespace fasttb {

thread_local Hold* Hold::filling_ = nullptr;

namespace {

// Every live hold, for cancel_all(). Never destroyed: holds may outlive static destruction.
std::mutex& registry_mutex() {
    static std::mutex* m = new std::mutex;
    return *m;
}
Hold* g_first = nullptr;  // guarded by registry_mutex()

}  // namespace

Hold* Hold::make() {
    Hold* hold = new (std::nothrow) Hold();
    if (!hold) return nullptr;
    std::lock_guard<std::mutex> lock(registry_mutex());
    hold->next_ = g_first;
    if (g_first) g_first->prev_ = hold;
    g_first = hold;
    return hold;
}

size_t Hold::cancel_all() {
    std::lock_guard<std::mutex> lock(registry_mutex());
    size_t cancelled = 0;
    for (Hold* h = g_first; h; h = h->next_) {
        std::lock_guard<std::mutex> hold_lock(h->m_);
        if (h->state_ != State::pending) continue;
        h->state_ = State::cancelled;
        h->cv_.notify_all();
        ++cancelled;
    }
    return cancelled;
}

Hold* Hold::add_ref() {
    refs_.fetch_add(1, std::memory_order_relaxed);
    return this;
}

void Hold::release() {
    // The hold item's reference goes only after the worker has taken the items, so whoever is
    // last frees an empty hold.
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    {
        std::lock_guard<std::mutex> lock(registry_mutex());
        (prev_ ? prev_->next_ : g_first) = next_;
        if (next_) next_->prev_ = prev_;
    }
    delete this;
}

bool Hold::append(Item* item) {
    std::lock_guard<std::mutex> lock(m_);
    if (state_ == State::cancelled) return false;
    item->next.store(nullptr, std::memory_order_relaxed);
    if (tail_) {
        tail_->next.store(item, std::memory_order_relaxed);
    } else {
        head_ = item;
    }
    tail_ = item;
    return true;
}

void Hold::publish() {
    std::lock_guard<std::mutex> lock(m_);
    if (state_ == State::pending) state_ = State::published;
    cv_.notify_all();
}

void Hold::cancel() {
    std::lock_guard<std::mutex> lock(m_);
    if (state_ == State::pending) state_ = State::cancelled;
    cv_.notify_all();
}

bool Hold::resolved() {
    std::lock_guard<std::mutex> lock(m_);
    return state_ != State::pending;
}

Item* Hold::take(Item** dropped) {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [this] { return state_ != State::pending; });
    Item* items = head_;
    head_ = tail_ = nullptr;
    if (state_ == State::cancelled) {
        *dropped = items;
        return nullptr;
    }
    *dropped = nullptr;
    return items;
}

}  // namespace fasttb
