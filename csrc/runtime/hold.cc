// See hold.h.
#include "runtime/hold.h"

#include <chrono>
#include <future>
#include <new>
#include <thread>
#include <utility>

#include "runtime/engine.h"
#include "runtime/item.h"

namespace fasttb {

thread_local Hold* Hold::filling_ = nullptr;

namespace {

// Every live hold, for cancel_all(). The lock is never destroyed (holds may outlive static
// destruction); a forked child swaps in a fresh one (forget_in_child).
std::mutex*& registry_slot() {
    static std::mutex* m = new std::mutex;
    return m;
}
std::mutex& registry_mutex() { return *registry_slot(); }
Hold* g_first = nullptr;  // guarded by registry_mutex()

}  // namespace

Hold* Hold::make() {
    Hold* hold = new (std::nothrow) Hold();
    if (!hold) return nullptr;
    hold->generation_ = Engine::generation();
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

void Hold::forget_in_child() {
    // The child's only thread runs this: nothing else reads the registry now. The old lock and
    // the parent's holds are left as they are, leaked.
    g_first = nullptr;
    if (std::mutex* fresh = new (std::nothrow) std::mutex) registry_slot() = fresh;
}

bool Hold::inherited() const { return generation_ != Engine::generation(); }

void Hold::keep_locked_for(double seconds) {
    std::promise<void> held;
    std::future<void> ready = held.get_future();
    std::thread([hold = add_ref(), seconds, held = std::move(held)]() mutable {
        {
            std::lock_guard<std::mutex> registry(registry_mutex());  // cancel_all's order
            std::lock_guard<std::mutex> lock(hold->m_);
            held.set_value();
            std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
        }
        hold->release();
    }).detach();
    ready.wait();
}

Hold* Hold::add_ref() {
    refs_.fetch_add(1, std::memory_order_relaxed);
    return this;
}

void Hold::release() {
    // The hold item's reference goes only after the worker has taken the items, so whoever is
    // last frees an empty hold.
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (inherited()) return;  // not in this process's registry, and its lock may be held for good
    {
        std::lock_guard<std::mutex> lock(registry_mutex());
        (prev_ ? prev_->next_ : g_first) = next_;
        if (next_) next_->prev_ = prev_;
    }
    delete this;
}

bool Hold::append(Item* item) {
    if (inherited()) return false;
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
    if (inherited()) return;
    std::lock_guard<std::mutex> lock(m_);
    if (state_ == State::pending) state_ = State::published;
    cv_.notify_all();
}

void Hold::cancel() {
    if (inherited()) return;
    std::lock_guard<std::mutex> lock(m_);
    if (state_ == State::pending) state_ = State::cancelled;
    cv_.notify_all();
}

bool Hold::resolved() {
    if (inherited()) return true;
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
