// Animated GIF encoding for add_video, done on the worker (the stock writer needs moviepy for it).
//
// Every frame gets a palette of its own. A frame with at most 256 distinct colours is stored
// exactly: it decodes to its input pixels. A frame with more is reduced to 256 colours by median
// cut (boxes of colours split at the weighted median of their longest side, each box standing for
// the mean of its colours), without dithering. The animation loops forever and shows each frame
// for 1/fps seconds, in the GIF's hundredths of a second (at least one); a frame that repeats
// the one before is merged into it (its delay added), as Pillow does for the stock writer.
#pragma once

#include <cstdint>
#include <string>

namespace fasttb {

// `frames` frames of height x width pixels of `channels` uint8 channels, one after another: one
// or two (grey, alpha) make a grey GIF, three or more (RGB, alpha, ...) a colour one. Returns false for shapes a GIF cannot hold (sides over 65535) or when memory runs out.
bool encode_gif(const uint8_t* pixels, uint32_t frames, uint32_t height, uint32_t width,
                uint32_t channels, double fps, std::string* out);

}  // namespace fasttb
