// The files add_embedding writes next to the event file (SPEC §3.17), made and written on the
// worker: tensors.tsv (every element as Python's str() writes it) and sprite.png (the label
// images tiled on a square black canvas).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "encoders/kind_params.h"

namespace fasttb {

// tensors.tsv: one line per row, elements separated by tabs.
void append_tsv(std::string& out, const TsvParams& params, const char* matrix);

// The sprite's RGB pixels (side x side x 3, side = columns * width): image i at row i / columns,
// column i % columns; each value v becomes uint8(trunc(clip(double(v) * 255, 0, 255))), NaN 0; one
// channel is spread over three. The caller checked that the rows fit in the square.
void sprite_pixels(const SpriteParams& params, const char* images, std::vector<uint8_t>* out);

// Writes `data` to `path` (created or truncated). Returns 0 or the errno.
int write_file(const std::string& path, const char* data, size_t n);

}  // namespace fasttb
