// The producer side of every record: checks the input, makes the item, copies the input in and
// queues it. Python-free: the bindings (module.cc, fastcall.cc) turn their arguments into these
// plain forms, pass the GIL as the CallerLock, and turn a Status into the exception it names.
//
// When the lock is let go: copies of 1 MiB or more run without it, under a Pin of the writer
// (writer.h); large histograms are queued first and copied in afterwards, so the worker buckets
// the first values while the caller copies the last; a full queue is waited on without it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "encoders/dtype.h"
#include "format/event.h"
#include "runtime/caller_lock.h"
#include "runtime/item.h"
#include "runtime/status.h"
#include "runtime/writer.h"

namespace fasttb {

enum class PixelType : uint8_t { u8, f32, f64 };

// An image as the caller holds it: C-contiguous, any alignment. HWC, or CHW when `planar`.
struct Pixels {
    const void* data;
    PixelType type;
    uint64_t height, width, channels;  // channels: C of CHW, or of HWC
    bool planar;
};

Status push_scalar(EventWriter& w, std::string_view tag, double value, int64_t step,
                   double wall_time, ScalarKind kind, CallerLock& lock);

// An item whose payload is `bytes` as they are: a serialized Event (kind event: written as it is)
// or Summary (kind summary: wrapped in an Event at `step`, `wall_time`), a text (kind text, under
// `tag`), or a side file's contents (kind side_bytes; `tag` is the file's path).
Status push_bytes(EventWriter& w, ItemKind kind, std::string_view tag, std::string_view bytes,
                  int64_t step, double wall_time, CallerLock& lock);

// The purge_step pair: file_version with a step, then SessionLog.START.
Status push_purge_markers(EventWriter& w, int64_t step, double first_wall_time,
                          double second_wall_time, CallerLock& lock);

// `count` values of `type`, C-contiguous, any alignment; bucketed on the worker.
Status push_histogram(EventWriter& w, std::string_view tag, const void* values, size_t count,
                      DType type, int64_t max_bins, int64_t step, double wall_time,
                      CallerLock& lock);

// A histogram computed elsewhere: stats are min, max, num, sum, sum_squares.
Status push_histogram_raw(EventWriter& w, std::string_view tag, const double stats[5],
                          const double* limits, const double* counts, size_t n, int64_t step,
                          double wall_time, CallerLock& lock);

// An image, PNG-encoded on the worker. uint8 pixels are copied, float ones scaled the stock way
// while they are copied. shown_height/shown_width: the size Summary.Image records (0: the
// pixels' own).
Status push_image(EventWriter& w, std::string_view tag, const Pixels& pixels,
                  uint64_t shown_height, uint64_t shown_width, int64_t step, double wall_time,
                  CallerLock& lock);

// A C-contiguous array as the caller holds it, at any alignment.
struct Array {
    const void* data;
    size_t count;
    DType type;
    size_t bytes() const { return count * dtype_size(type); }
};

// A PR curve from predictions (float32 or float64; int32 means bucket indices the caller already
// computed), labels and, unless `weights.data` is null, one weight per element (else `weight`).
// All three hold the same number of elements; num_thresholds is 1 to 127.
Status push_pr_curve(EventWriter& w, std::string_view tag, const Array& predictions,
                     const Array& labels, const Array& weights, double weight,
                     uint32_t num_thresholds, int64_t step, double wall_time, CallerLock& lock);

// A mono clip of float32 or float64 samples (or int16 PCM), WAV-encoded on the worker.
Status push_audio(EventWriter& w, std::string_view tag, const Array& samples, double sample_rate,
                  int64_t step, double wall_time, CallerLock& lock);

// frames x height x width x channels uint8 pixels (channels 1 or 3), GIF-encoded on the worker.
Status push_video(EventWriter& w, std::string_view tag, const uint8_t* pixels, uint64_t frames,
                  uint64_t height, uint64_t width, uint64_t channels, double fps, int64_t step,
                  double wall_time, CallerLock& lock);

// add_embedding's side files, written by the worker to `path` after everything queued before:
// tensors.tsv of a rows x cols matrix, and sprite.png of `images` (count x channels x height x
// width, channels 1 or 3) tiled `columns` to a row on a square canvas.
Status push_tsv(EventWriter& w, std::string_view path, const Array& matrix, uint64_t rows,
                uint64_t cols, CallerLock& lock);
Status push_sprite(EventWriter& w, std::string_view path, const Array& images, uint64_t count,
                   uint64_t channels, uint64_t height, uint64_t width, uint64_t columns,
                   CallerLock& lock);

}  // namespace fasttb
