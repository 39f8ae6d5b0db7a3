// Checking, copying and queueing records on the caller's thread; see producer.h.
#include "runtime/producer.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>

#include "encoders/histogram.h"
#include "encoders/kind_params.h"
#include "encoders/pixels.h"
#include "runtime/item_encoder.h"

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

// The argument a too-large item comes from, for the error message.
const char* item_kind_argument(ItemKind kind) {
    switch (kind) {
        case ItemKind::pr_curve: return "predictions";
        case ItemKind::audio: return "snd_tensor";
        case ItemKind::video: return "vid_tensor";
        case ItemKind::side_tsv: return "mat";
        case ItemKind::side_sprite: return "label_img";
        default: return "input";
    }
}

// An item whose payload is `params` followed by `arrays`, each at a 16-byte boundary
// (kind_params.h); the arrays are copied without the lock when they are large.
template <class Params>
Status push_with_arrays(EventWriter& w, ItemKind kind, std::string_view tag, const Params& params,
                        std::initializer_list<const Array*> arrays, int64_t step, double wall_time,
                        CallerLock& lock) {
    size_t end = params_end(sizeof params), copied = 0;
    for (const Array* a : arrays) {
        end = array_end(end, a->bytes());
        copied += a->bytes();
    }
    if (end > kMaxRecordPayload) return Status::value_error(too_large(item_kind_argument(kind), end));
    Item* item = nullptr;
    Status s = new_item(w, kind, tag, end, step, wall_time, &item);
    if (!s.ok()) return s;
    std::memcpy(item->payload(), &params, sizeof params);
    const auto copy = [&] {
        size_t at = params_end(sizeof params);
        for (const Array* a : arrays) {
            if (a->bytes()) std::memcpy(item->payload() + at, a->data, a->bytes());
            at = array_end(at, a->bytes());
        }
    };
    if (copied >= kUnlockedCopy) {
        // The arrays belong to objects the caller holds for the whole call; the pin keeps the
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

Status push_bytes(EventWriter& w, ItemKind kind, std::string_view tag, std::string_view bytes,
                  int64_t step, double wall_time, CallerLock& lock) {
    // A Summary gains an Event envelope and a text its tensor: at most 64 bytes besides the tag.
    if (kind != ItemKind::side_bytes && bytes.size() + tag.size() + 64 > kMaxRecordPayload)
        return Status::value_error(too_large(kind == ItemKind::event ? "event" : kind == ItemKind::text
                                             ? "text_string" : "summary", bytes.size()));
    Item* item = nullptr;
    Status s = new_item(w, kind, tag, bytes.size(), step, wall_time, &item);
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

namespace fasttb {

Status push_pr_curve(EventWriter& w, std::string_view tag, const Array& predictions,
                     const Array& labels, const Array& weights, double weight,
                     uint32_t num_thresholds, int64_t step, double wall_time, CallerLock& lock) {
    if (num_thresholds < 1 || num_thresholds > 127)
        return Status::value_error("num_thresholds: must be between 1 and 127");
    if (labels.count != predictions.count || (weights.data && weights.count != predictions.count))
        return Status::value_error("labels, predictions and weights must hold as many elements");
    if (predictions.type != DType::f32 && predictions.type != DType::f64 && predictions.type != DType::i32)
        return Status::type_error("predictions: must be float32 or float64 (or int32 bucket indices)");
    PrCurveParams params{};
    params.count = predictions.count;
    params.num_thresholds = num_thresholds;
    params.predictions = predictions.type;
    params.labels = labels.type;
    params.weights = weights.data ? weights.type : DType::f64;
    params.weight_per_element = weights.data != nullptr;
    params.weight = weight;
    const Array none{nullptr, 0, DType::f64};
    return push_with_arrays(w, ItemKind::pr_curve, tag, params,
                            {&predictions, &labels, weights.data ? &weights : &none}, step, wall_time, lock);
}

Status push_audio(EventWriter& w, std::string_view tag, const Array& samples, double sample_rate,
                  int64_t step, double wall_time, CallerLock& lock) {
    if (samples.type != DType::f32 && samples.type != DType::f64 && samples.type != DType::i16)
        return Status::type_error("snd_tensor: samples must be float32 or float64 (or int16 PCM)");
    if (samples.count == 0) return Status::value_error("snd_tensor: holds no samples");
    // Python's wave module refuses rates that do not round to a positive number, and its header
    // holds the byte rate (twice the rate) in 32 bits.
    if (!(std::nearbyint(sample_rate) >= 1 && std::nearbyint(sample_rate) < 2147483648.0))
        return Status::value_error("sample_rate: must be a positive number of samples per second below 2**31");
    if (2 * samples.count + 44 + tag.size() + 64 > kMaxRecordPayload)
        return Status::value_error(too_large("snd_tensor", 2 * samples.count));
    AudioParams params{};
    params.count = samples.count;
    params.samples = samples.type;
    params.sample_rate = sample_rate;
    return push_with_arrays(w, ItemKind::audio, tag, params, {&samples}, step, wall_time, lock);
}

Status push_video(EventWriter& w, std::string_view tag, const uint8_t* pixels, uint64_t frames,
                  uint64_t height, uint64_t width, uint64_t channels, double fps, int64_t step,
                  double wall_time, CallerLock& lock) {
    if (frames < 1) return Status::value_error("vid_tensor: holds no frames");
    if (height < 1 || width < 1 || height > 65535 || width > 65535)
        return Status::value_error("vid_tensor: a GIF frame is 1 to 65535 pixels high and wide");
    if (channels < 1) return Status::value_error("vid_tensor: frames have no channels");
    if (!(fps > 0) || !std::isfinite(fps)) return Status::value_error("fps: must be a positive number");
    if (frames > UINT32_MAX) return Status::value_error("vid_tensor: too many frames");
    VideoParams params{};
    params.frames = static_cast<uint32_t>(frames);
    params.height = static_cast<uint32_t>(height);
    params.width = static_cast<uint32_t>(width);
    params.channels = static_cast<uint32_t>(channels);
    params.fps = fps;
    const Array array{pixels, frames * height * width * channels, DType::u8};
    return push_with_arrays(w, ItemKind::video, tag, params, {&array}, step, wall_time, lock);
}

Status push_tsv(EventWriter& w, std::string_view path, const Array& matrix, uint64_t rows,
                uint64_t cols, CallerLock& lock) {
    if (rows * cols != matrix.count) return Status::value_error("mat: rows x cols must be its size");
    TsvParams params{};
    params.rows = rows;
    params.cols = cols;
    params.dtype = matrix.type;
    return push_with_arrays(w, ItemKind::side_tsv, path, params, {&matrix}, 0, 0, lock);
}

Status push_sprite(EventWriter& w, std::string_view path, const Array& images, uint64_t count,
                   uint64_t channels, uint64_t height, uint64_t width, uint64_t columns,
                   CallerLock& lock) {
    if (channels != 1 && channels != 3)
        return Status::value_error("label_img: images must have 1 or 3 channels");
    if (count < 1 || height < 1 || width < 1 || columns < 1 || count * channels * height * width != images.count)
        return Status::value_error("label_img: must be an (N, C, H, W) array of N >= 1 images");
    const uint64_t side = columns * width;
    if ((count + columns - 1) / columns * height > side)
        return Status::value_error("label_img: the images are too tall to tile in a square sprite");
    if (side * side * 3 >= kMaxRecordPayload)
        return Status::value_error(too_large("label_img", side * side * 3));
    SpriteParams params{};
    params.count = count;
    params.channels = static_cast<uint32_t>(channels);
    params.height = static_cast<uint32_t>(height);
    params.width = static_cast<uint32_t>(width);
    params.columns = static_cast<uint32_t>(columns);
    params.dtype = images.type;
    return push_with_arrays(w, ItemKind::side_sprite, path, params, {&images}, 0, 0, lock);
}

}  // namespace fasttb
