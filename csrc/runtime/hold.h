// A place kept in the queue for records whose values are not ready yet (a tensor still being
// copied from the GPU). The caller queues a hold item where its call falls; later another thread
// (the one that waits for the copy) makes the records as usual, and they go into the hold instead
// of the queue's tail; then it publishes the hold. The worker, on reaching the hold item, waits
// until the hold is published (or cancelled) and writes its records there, so records keep the
// order of the calls that made them.
//
// Ownership: reference counted, like Completion. The hold item holds one reference (released by
// the worker) and the handle of the thread that fills it one more (released when the handle
// goes). Items in a hold belong to the hold until the worker takes them (take()); a handle that
// goes without publishing cancels the hold, so the worker never waits for a filler that is gone.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace fasttb {

struct Item;

class Hold {
public:
    static Hold* make();  // one reference, the caller's; nullptr if no memory
    Hold* add_ref();
    void release();

    // While a Filling lives, every item this thread queues on any writer goes into `hold`
    // (EventWriter::try_push). Fillings do not nest.
    class Filling {
    public:
        explicit Filling(Hold* hold) { filling_ = hold; }
        ~Filling() { filling_ = nullptr; }
        Filling(const Filling&) = delete;
        Filling& operator=(const Filling&) = delete;
    };
    static Hold* filling() { return filling_; }

    // Filler side. append: false once the hold was cancelled (the item is still the caller's).
    bool append(Item* item);
    void publish();  // the items are final: the worker may take them
    void cancel();   // nothing more will come; no-op once published. Appended items are dropped.
    bool resolved();  // published or cancelled

    // Cancels every hold of this process not yet published (interpreter exit, once the threads
    // that fill holds have had their time): the worker then never waits for a filler that is
    // gone. Returns how many it cancelled.
    static size_t cancel_all();

    // In a forked child (the engine's fork handler): the parent's holds are not this process's
    // to fill or cancel, and a parent thread may have held their locks, or the registry's, at
    // the fork. The registry starts empty with a fresh lock; an inherited hold ignores fill and
    // cancel, reads as resolved, and is never freed (its lock may stay held for good).
    static void forget_in_child();

    // Tests only: a native thread holds this hold's lock and the registry's for `seconds`, as
    // a thread that appends or lets a hold go at the moment of a fork would. Returns once both
    // are held.
    void keep_locked_for(double seconds);

    // Worker side: waits until the hold is published or cancelled and returns its items, linked
    // through QueueNode::next in the order they were appended (nullptr: none). `dropped`: the
    // items a cancel dropped, for the worker to free.
    Item* take(Item** dropped);

private:
    Hold() = default;
    enum class State { pending, published, cancelled };
    bool inherited() const;  // made by the process this one was forked from
    static thread_local Hold* filling_;
    uint64_t generation_ = 0;  // Engine::generation() when made
    std::mutex m_;
    std::condition_variable cv_;
    State state_ = State::pending;  // guarded by m_
    Item* head_ = nullptr;          // guarded by m_
    Item* tail_ = nullptr;          // guarded by m_
    std::atomic<int> refs_{1};
    Hold* prev_ = nullptr;  // the list of live holds, guarded by the registry's mutex (hold.cc)
    Hold* next_ = nullptr;
};

}  // namespace fasttb
