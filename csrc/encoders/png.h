// PNG encoding of HWC uint8 images for Summary.Image, done in C++ on the worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fasttb {

// Encodes an 8-bit image with `channels` interleaved samples per pixel (1 grey, 2 grey+alpha,
// 3 RGB, 4 RGBA), rows top to bottom, into `out` (replaced). Returns false only for sizes that a
// PNG cannot hold or that overflow; the caller validates shapes before this is reached.
bool encode_png(const uint8_t* pixels, uint32_t height, uint32_t width, uint32_t channels,
                std::string* out);

// The same for `count` planes of height x width bytes one after another (CHW), interleaved a row
// at a time as they are encoded; one plane is stored as RGB (as the stock writer stores a
// greyscale CHW image).
bool encode_png_planes(const uint8_t* planes, uint32_t count, uint32_t height, uint32_t width,
                       std::string* out);

}  // namespace fasttb
