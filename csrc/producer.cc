// Checking, copying and queueing records on the caller's thread; see producer.h.
#include "producer.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "item_encoder.h"
#include "pixels.h"

namespace fasttb {
namespace {

constexpr size_t kUnlockedCopy = size_t(1) << 20;  // copies this large run without the lock
constexpr size_t kStreamBytes = size_t(1) << 20;   // histograms this large are streamed in
constexpr size_t kStreamSlice = size_t(256) << 10;

// The checks every push makes before it builds an item, so that the caller sees the worker's
// error (or its own misuse) on its own thread; then the item.
Status new_item(EventWriter& w, ItemKind kind, std::string_view tag, size_t payload,
                int64_t step, double wall_time, Item** out) {
    if (!w.ready()) return w.check();
    if (tag.size() > UINT32_MAX) return Status::value_error("tag: longer than 4 GiB");
    Item* item = w.make_item(kind, tag, payload);
    if (!item) return Status::no_memory();
    item->step = step;
    item->wall_time = wall_time;
    *out = item;
    return {};
}

std::string too_large(const char* what, uint64_t bytes) {
    return std::string(what) + ": " + std::to_string(bytes) +
           " bytes do not fit in one record (no reader accepts records of 2 GiB or more)";
}

}  // namespace

Status push_scalar(EventWriter& w, std::string_view tag, double value, int64_t step,
                   double wall_time, ScalarKind kind, CallerLock& lock) {
    Item* item = nullptr;
    Status s = new_item(w, ItemKind::scalar, tag, 0, step, wall_time, &item);
    if (!s.ok()) return s;
    item->value = value;
    item->scalar_kind = kind;
    return w.push(item, lock);
}

Status push_serialized(EventWriter& w, ItemKind kind, std::string_view bytes, int64_t step,
                       double wall_time, CallerLock& lock) {
    // A Summary gains an Event envelope of at most 32 bytes.
    if (bytes.size() + (kind == ItemKind::summary ? 32 : 0) > kMaxRecordPayload)
        return Status::value_error(too_large(kind == ItemKind::summary ? "summary" : "event", bytes.size()));
    Item* item = nullptr;
    Status s = new_item(w, kind, {}, bytes.size(), step, wall_time, &item);
    if (!s.ok()) return s;
    if (bytes.size() >= kUnlockedCopy) {
        // The bytes belong to an object the caller holds for the whole call; the pin keeps the
        // file open until the item is queued.
        const EventWriter::Pin pinned = w.pin();
        {
            Unlocked unlocked(lock);
            std::memcpy(item->payload(), bytes.data(), bytes.size());
        }
        return w.push(item, lock);
    }
    if (!bytes.empty()) std::memcpy(item->payload(), bytes.data(), bytes.size());
    return w.push(item, lock);
}

Status push_purge_markers(EventWriter& w, int64_t step, double first_wall_time,
                          double second_wall_time, CallerLock& lock) {
    Item* item = nullptr;
    Status s = new_item(w, ItemKind::file_version, {}, 0, step, first_wall_time, &item);
    if (!s.ok()) return s;
    s = w.push(item, lock);
    if (!s.ok()) return s;
    s = new_item(w, ItemKind::session_start, {}, 0, step, second_wall_time, &item);
    if (!s.ok()) return s;
    return w.push(item, lock);
}

Status push_histogram(EventWriter& w, std::string_view tag, const void* values, size_t count,
                      DType type, int64_t max_bins, int64_t step, double wall_time,
                      CallerLock& lock) {
    // The stock writer's errors, raised here on the caller's thread so the worker never meets them.
    if (count == 0) return Status::value_error("The input has no element.");
    if (tensorflow_histogram_is_empty(values, count, type, max_bins))
        return Status::value_error("The histogram is empty, please file a bug report.");
    const size_t bytes = count * dtype_size(type);
    Item* item = nullptr;
    Status s = new_item(w, ItemKind::histogram, tag, bytes, step, wall_time, &item);
    if (!s.ok()) return s;
    item->dtype = type;
    item->count = count;
    item->max_bins = max_bins;
    if (bytes < kStreamBytes) {
        std::memcpy(item->payload(), values, bytes);
        return w.push(item, lock);
    }
    // Queued first, copied in afterwards: from the push on, the item is the worker's except for
    // the payload bytes not yet published, and after the last store below this thread must not
    // touch it again.
    item->streamed = true;
    bool queued = false;
    s = w.push(item, lock, &queued);
    if (!s.ok() || !queued) return s;
    Unlocked unlocked(lock);  // the values belong to an array the caller holds for the whole call
    const auto* src = static_cast<const char*>(values);
    char* dst = item->payload();
    for (size_t off = 0; off < bytes;) {
        const size_t len = std::min(kStreamSlice, bytes - off);
        std::memcpy(dst + off, src + off, len);
        off += len;
        item->filled.store(off, std::memory_order_release);
    }
    return {};
}

Status push_histogram_raw(EventWriter& w, std::string_view tag, const double stats[5],
                          const double* limits, const double* counts, size_t n, int64_t step,
                          double wall_time, CallerLock& lock) {
    // Two doubles per bucket in the record, as in the payload.
    if (n > kMaxRecordPayload / 16) return Status::value_error(too_large("bucket_limits", uint64_t(n) * 16));
    Item* item = nullptr;
    Status s = new_item(w, ItemKind::histogram_raw, tag, 2 * n * sizeof(double), step, wall_time, &item);
    if (!s.ok()) return s;
    std::memcpy(item->stats, stats, sizeof item->stats);
    item->count = n;
    if (n) {
        std::memcpy(item->payload(), limits, n * sizeof(double));
        std::memcpy(item->payload() + n * sizeof(double), counts, n * sizeof(double));
    }
    return w.push(item, lock);
}

Status push_image(EventWriter& w, std::string_view tag, const Pixels& pixels,
                  uint64_t shown_height, uint64_t shown_width, int64_t step, double wall_time,
                  CallerLock& lock) {
    const uint64_t h = pixels.height, wd = pixels.width, c = pixels.channels;
    if (h < 1 || wd < 1 || h > INT32_MAX || wd > INT32_MAX)
        return Status::value_error("img_tensor: height and width must be between 1 and 2**31 - 1");
    if (c < 1 || c > 4) return Status::value_error("img_tensor: must have 1 to 4 channels");
    if (shown_height > INT32_MAX || shown_width > INT32_MAX)
        return Status::value_error("height, width: must be between 0 and 2**31 - 1");
    // One byte per value in the queue. The PNG is smaller than that plus a little framing for
    // all but noise, so images of 2 GiB of pixels or more are refused before they are copied.
    const uint64_t bytes = h * wd * c;
    const uint64_t stored = (pixels.planar && c == 1) ? 3 * bytes : bytes;
    if (stored + h >= kMaxRecordPayload) return Status::value_error(too_large("img_tensor", stored));
    Item* item = nullptr;
    Status s = new_item(w, ItemKind::image, tag, static_cast<size_t>(bytes), step, wall_time, &item);
    if (!s.ok()) return s;
    item->height = static_cast<uint32_t>(h);
    item->width = static_cast<uint32_t>(wd);
    item->planes = pixels.planar ? static_cast<uint32_t>(c) : 0;
    item->channels = pixels.planar && c == 1 ? 3 : static_cast<uint32_t>(c);
    item->shown_height = shown_height ? static_cast<uint32_t>(shown_height) : item->height;
    item->shown_width = shown_width ? static_cast<uint32_t>(shown_width) : item->width;
    const size_t n = static_cast<size_t>(bytes);
    auto* dst = reinterpret_cast<uint8_t*>(item->payload());
    const auto copy = [&] {
        switch (pixels.type) {
            case PixelType::u8: std::memcpy(dst, pixels.data, n); break;
            case PixelType::f32: scale_float32_to_uint8(pixels.data, n, dst); break;
            case PixelType::f64: scale_float64_to_uint8(pixels.data, n, dst); break;
        }
    };
    const size_t read = n * (pixels.type == PixelType::u8 ? 1 : pixels.type == PixelType::f32 ? 4 : 8);
    if (read >= kUnlockedCopy) {
        // The pixels belong to an array the caller holds for the whole call; the pin keeps the
        // file open until the item is queued.
        const EventWriter::Pin pinned = w.pin();
        {
            Unlocked unlocked(lock);
            copy();
        }
        return w.push(item, lock);
    }
    copy();
    return w.push(item, lock);
}

}  // namespace fasttb
