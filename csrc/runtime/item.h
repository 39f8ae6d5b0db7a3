// A record on its way to a file: one allocation holding the item, its tag and its payload. A
// producer makes and fills it; once queued it belongs to the worker, which frees it to the pool
// (the one exception, a streamed payload, is spelled out at `streamed`).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>

#include "encoders/dtype.h"
#include "format/event.h"
#include "runtime/queue.h"

namespace fasttb {

class BlockPool;
class EventFile;
class Hold;

enum class ItemKind : uint8_t {
    scalar,          // value, scalar_kind
    event,           // payload: a serialized Event
    summary,         // payload: a serialized Summary
    file_version,    // the first record, or (with step) the purge_step marker
    session_start,   // the purge_step SessionLog.START marker
    histogram,       // payload: `count` values of `dtype`
    histogram_raw,   // payload: `count` bucket limits then `count` counts, as doubles
    image,           // payload: height x width x channels uint8 pixels
    text,            // payload: the text (UTF-8)
    pr_curve,        // payload: PrCurveParams, then its arrays (kind_params.h)
    audio,           // payload: AudioParams, then the samples
    video,           // payload: VideoParams, then the frames
    side_bytes,      // not a record: write the payload to the file named by the tag
    side_tsv,        // not a record: TsvParams and a matrix, written as tensors.tsv to the tag
    side_sprite,     // not a record: SpriteParams and images, written as sprite.png to the tag
    open,            // create the file (made by EventFile::create_later), its directories too
    flush,           // write the file (every file when `file` is null) and signal `done`
    close,           // flush, close and delete the file, then signal `done`
    rotate,          // close the file's segment; the next record starts the one named by the
                     // tag (with_source: its first record's). Then signal `done`
    fail,            // fail the file as the worker fails it: errno in `step`, the path to name
                     // in the tag, the context in the payload (a remote upload's failure)
    hold,            // not a record: the records of `hold` go here, once it is published (hold.h)
};

// The end of a flush or close, shared by the threads waiting for it and the control item that
// carries it: each holds a reference and whoever lets go last frees it, so a waiter that is
// interrupted (Ctrl-C) can leave while the worker still has the item.
class Completion {
public:
    static Completion* make();  // one reference, the caller's; nullptr if no memory
    Completion* add_ref();
    void signal();
    bool wait_for(std::chrono::milliseconds timeout);  // true once signalled
    bool done();
    void release();

private:
    Completion() = default;
    std::mutex m_;
    std::condition_variable cv_;
    bool done_ = false;  // guarded by m_
    // done_ again, readable without m_: a waiter spins on it before it sleeps. Set with release
    // order after everything the worker did for the item, so a waiter that sees it sees that.
    std::atomic<bool> signalled_{false};
    std::atomic<int> refs_{1};
};

struct Item : QueueNode {
    ItemKind kind;
    ScalarKind scalar_kind = ScalarKind::simple_value;
    DType dtype = DType::f64;
    bool with_source = false;
    // Not owned: the file lives until its close item is handled, and its writer queues that item
    // only after every item naming the file (writer.h).
    EventFile* file = nullptr;
    Completion* done = nullptr;  // flush and close: one reference, released by the worker
    Hold* hold = nullptr;        // hold: one reference, released by the worker
    double wall_time = 0;
    int64_t step = 0;
    double value = 0;
    double stats[5] = {};  // histogram_raw: min, max, num, sum, sum_squares
    int64_t max_bins = 0;
    uint32_t height = 0, width = 0, channels = 0;  // image: the pixels' shape
    uint32_t shown_height = 0, shown_width = 0;     // image: the size Summary.Image records
    uint32_t planes = 0;  // image: 0 for HWC pixels, else the C of CHW pixels (1 becomes RGB)
    size_t count = 0;
    size_t accounted = 0;  // bytes counted against the queue bound (0: a control item)
    uint32_t tag_len = 0;
    size_t payload_len = 0;
    size_t payload_offset = 0;
    // A histogram queued before its values are copied in: the producer keeps writing the payload
    // after the push and publishes in `filled` how many bytes are there. The payload is the
    // producer's until `filled` reaches payload_len; the worker reads only what is published and
    // never frees the item before then (Engine::retire).
    bool streamed = false;
    std::atomic<size_t> filled{0};

    bool pooled = false;   // a recycled small block (BlockPool) rather than the heap
    size_t capacity = 0;   // bytes of the allocation (a reused large block may be bigger)

    std::string_view tag() const { return {reinterpret_cast<const char*>(this + 1), tag_len}; }
    char* payload() { return reinterpret_cast<char*>(this) + payload_offset; }
    const char* payload() const { return reinterpret_cast<const char*>(this) + payload_offset; }

    // One allocation for the item, its tag and its payload (aligned for doubles); nullptr when
    // memory is exhausted. Producer side.
    static Item* make(BlockPool& pool, ItemKind kind, EventFile* file, std::string_view tag,
                      size_t payload_len);
    // Frees an item that was never queued. Producer side.
    static void discard(BlockPool& pool, Item* item);
};

}  // namespace fasttb
