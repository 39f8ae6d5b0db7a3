// What the rarer item kinds carry at the start of their payload, before their arrays. Producers
// write a params struct (memcpy) and the worker reads it back (memcpy): payloads hold plain bytes,
// so neither side depends on how they are aligned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "encoders/dtype.h"

namespace fasttb {

// Where the arrays of a payload start: after the params, each at a 16-byte boundary.
constexpr size_t params_end(size_t params_size) { return (params_size + 15) & ~size_t(15); }
constexpr size_t array_end(size_t offset, size_t bytes) { return (offset + bytes + 15) & ~size_t(15); }

// pr_curve: `count` predictions, then `count` labels, then (weight_per_element) `count` weights.
struct PrCurveParams {
    uint64_t count;
    uint32_t num_thresholds;  // 1..127
    DType predictions, labels, weights;
    bool weight_per_element;
    double weight;  // the one weight of every element, unless weight_per_element
};

// audio: `count` float32 or float64 samples in [-1, 1] (clipped on the worker otherwise), or
// int16 samples already scaled (the caller's, for other dtypes).
struct AudioParams {
    uint64_t count;
    DType samples;
    double sample_rate;
};

// video: frames x height x width x channels uint8, one frame after another.
struct VideoParams {
    uint32_t frames, height, width, channels;
    double fps;
};

// tsv side file: a rows x cols matrix of `dtype`, one line per row, str() of every element.
struct TsvParams {
    uint64_t rows, cols;
    DType dtype;
};

// sprite side file: `count` images of channels x height x width `dtype` values, tiled `columns`
// to a row on a black square canvas `columns * width` pixels wide, as RGB.
struct SpriteParams {
    uint64_t count;
    uint32_t channels, height, width, columns;
    DType dtype;
};

template <class Params>
Params read_params(const char* payload) {
    Params p;
    std::memcpy(&p, payload, sizeof p);
    return p;
}

}  // namespace fasttb
