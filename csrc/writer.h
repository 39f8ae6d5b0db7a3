// EventWriter: the caller's handle on one event file. It builds items on the caller's thread
// and queues them; the worker does the rest. Python-free: the bindings decide how to wait
// (they release the GIL through the Unlock type they pass to push()).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine.h"
#include "event_file.h"

namespace fasttb {

class EventWriter {
public:
    // Creates `path` (which must not exist yet) and queues its first record. Returns nullptr
    // with *err set to the errno on failure.
    static std::shared_ptr<EventWriter> open(const std::string& path, double flush_secs,
                                             bool drop_when_full, double wall_time, int* err);
    ~EventWriter();
    EventWriter(const EventWriter&) = delete;
    EventWriter& operator=(const EventWriter&) = delete;

    enum class Result { queued, dropped };

    // True when a record can be queued right now with nothing to report first: open, in the
    // process that opened it, and no error from the worker. The fast paths check only this.
    bool ready() const {
        return file_ && generation_ == Engine::generation() &&
               state_->error.load(std::memory_order_relaxed) == 0;
    }
    bool closed() const { return file_ == nullptr; }
    bool stale() const { return generation_ != Engine::generation(); }
    int error() const { return state_->error.load(std::memory_order_acquire); }
    const std::string& error_context() const { return state_->error_context; }
    const FileState& state() const { return *state_; }
    const std::string& path() const { return state_->path; }

    // A new item for this file, or nullptr when memory is exhausted. Precondition: ready().
    Item* make_item(ItemKind kind, std::string_view tag, size_t payload_len) {
        return Item::make(kind, file_, tag, payload_len);
    }

    // Queues `item` (precondition: ready()). When the queue is full, waits for room holding an
    // Unlock (which releases the caller's interpreter lock), unless the drop policy is on.
    template <class Unlock>
    Result push(Item* item) {
        for (;;) {
            switch (engine_->push(item, drop_when_full_)) {
                case Engine::Push::ok:
                    return Result::queued;
                case Engine::Push::dropped:
                    state_->dropped.fetch_add(1, std::memory_order_relaxed);
                    return Result::dropped;
                case Engine::Push::full:
                    break;
            }
            state_->stalls.fetch_add(1, std::memory_order_relaxed);
            Unlock unlock;
            engine_->wait_for_room(item->accounted);
        }
    }

    // Both block until the worker has written everything queued before them: call them
    // without the GIL. flush() and close() after close() do nothing.
    void flush();
    void close();

    Engine& engine() const { return *engine_; }

private:
    EventWriter(EventFile* file, std::shared_ptr<FileState> state, bool drop_when_full);

    Engine* engine_;
    uint64_t generation_;
    EventFile* file_;  // owned by the worker once queued; null after close()
    std::shared_ptr<FileState> state_;
    bool drop_when_full_;
};

// Writes every file of this process's engine to the OS (interpreter exit). Safe to call when no
// writer was ever opened, and in a forked child (the parent's engine is not touched).
void flush_all_files();

}  // namespace fasttb
