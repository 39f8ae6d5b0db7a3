// Pixel conversions. The stock writer's float-to-pixel rule, done in one pass on the caller's
// thread: a float image becomes uint8 while it is read, so the caller copies a quarter (float32)
// or an eighth (float64) of the bytes it was given and the queue holds only pixels. And CHW
// planes made HWC rows, on the worker.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fasttb {

// dst[i] = uint8(trunc(clip(float32(src[i]) * float32(255), 0, 255))), with NaN giving 0: what
// numpy computes for `(x.astype(float32) * 255).clip(0, 255).astype(uint8)` on x86-64 and arm64.
// src holds n float32 (or float64) values in native byte order, at any alignment.
void scale_float32_to_uint8(const void* src, size_t n, uint8_t* dst);
void scale_float64_to_uint8(const void* src, size_t n, uint8_t* dst);

// Row y of a CHW image as HWC bytes: dst[x * c + k] = planes[k * plane_bytes + y * width + x]
// for `count` planes of plane_bytes each, c = count, except that one plane is spread over three
// channels (a greyscale CHW image is stored as RGB). The PNG encoder calls it for one row at a
// time, so the interleaved image is never stored whole.
void interleave_row(const uint8_t* planes, size_t plane_bytes, uint32_t count, uint64_t y,
                    uint32_t width, uint8_t* dst);

}  // namespace fasttb
