// Histogram bucketing of the stock writer's default "tensorflow" edges, done in C++ on the worker.
// The result equals what torch's SummaryWriter writes for add_histogram(bins="tensorflow").
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "encoders/dtype.h"

namespace fasttb {

struct Histogram {
    double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
    std::vector<double> bucket_limit;  // right edges, led by the left edge of the first kept bin
    std::vector<double> bucket;        // counts, led by a zero
};

// The 1549 default edges (-9.92e19 ... 0 ... 9.92e19), built by repeated multiplication by 1.1.
const std::vector<double>& default_edges();

// True when at least one of the n values falls inside the default edges (so the histogram is
// not empty); cheap on the caller's thread because it stops at the first such value.
bool has_countable_value(const void* data, size_t n, DType type);

// True exactly when the stock writer raises ValueError("The histogram is empty, please file a
// bug report."): no value is countable, unless max_bins == 1, where the stock trimming keeps the
// single merged (empty) bin instead of raising. Call it on the caller's thread.
bool tensorflow_histogram_is_empty(const void* data, size_t n, DType type, int64_t max_bins);

// Buckets n values of `type` with the default edges. max_bins <= 0 means no merging.
// Precondition: n > 0 and !tensorflow_histogram_is_empty(data, n, type, max_bins); otherwise
// bucket_limit and bucket come back empty. `data` needs no alignment. Each calling thread keeps
// a ~70 KB scratch area for its lifetime; results are the same with or without AVX2/FMA.
//
// `filled`, when given, counts the bytes of `data` written so far by a producer still copying
// the input in (released by that producer): the input is read in order, each part once it is
// there, so bucketing overlaps the copy. The producer must finish; there is no timeout.
Histogram tensorflow_histogram(const void* data, size_t n, DType type, int64_t max_bins,
                               const std::atomic<size_t>* filled = nullptr);

}  // namespace fasttb
