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

#include "caller_lock.h"
#include "event.h"
#include "histogram.h"
#include "status.h"
#include "writer.h"

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

// A serialized Event (kind event: written as it is) or Summary (kind summary: wrapped in an
// Event at `step`, `wall_time`).
Status push_serialized(EventWriter& w, ItemKind kind, std::string_view bytes, int64_t step,
                       double wall_time, CallerLock& lock);

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

}  // namespace fasttb
