// The stock writer's float-to-pixel rule, done in one pass on the caller's thread: a float
// image becomes uint8 while it is read, so the caller copies a quarter (float32) or an eighth
// (float64) of the bytes it was given and the queue holds only pixels.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fasttb {

// dst[i] = uint8(trunc(clip(float32(src[i]) * float32(255), 0, 255))), with NaN giving 0: what
// numpy computes for `(x.astype(float32) * 255).clip(0, 255).astype(uint8)` on x86-64 and arm64.
// src needs no alignment.
void scale_to_uint8(const float* src, size_t n, uint8_t* dst);
void scale_to_uint8(const double* src, size_t n, uint8_t* dst);

}  // namespace fasttb
