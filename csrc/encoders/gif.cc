// GIF encoding; see gif.h. GIF89a: a logical screen without a global palette, the NETSCAPE2.0
// loop extension, then per frame a graphic control extension (delay), an image descriptor with a
// local palette, and the LZW-compressed palette indices in sub-blocks of at most 255 bytes.
#include "encoders/gif.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

namespace fasttb {
namespace {

constexpr uint32_t kMaxColors = 256;
constexpr uint32_t kMaxCode = 4096;  // LZW codes are at most 12 bits

void put_u16(std::string& out, uint32_t v) {
    out += static_cast<char>(v & 0xff);
    out += static_cast<char>((v >> 8) & 0xff);
}

// The palette of one frame and each pixel's index into it.
struct IndexedFrame {
    std::vector<uint32_t> palette;  // 0xRRGGBB
    std::vector<uint8_t> indices;
};

// A pixel's colour as the stock writer's GIF shows it: grey from the first channel of one or two
// (grey and alpha), the first three of more (RGB, alpha and anything further dropped).
uint32_t rgb_at(const uint8_t* frame, size_t pixel, uint32_t channels) {
    const uint8_t* p = frame + pixel * channels;
    return channels < 3 ? (uint32_t(p[0]) * 0x010101u) : (uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2]);
}

bool same_colors(const uint8_t* a, const uint8_t* b, size_t pixels, uint32_t channels) {
    for (size_t i = 0; i < pixels; ++i)
        if (rgb_at(a, i, channels) != rgb_at(b, i, channels)) return false;
    return true;
}

// Reduces more than 256 colours to 256 by median cut. `colors` holds each distinct colour once,
// with its pixel count; returns the palette and fills `index_of`.
std::vector<uint32_t> median_cut(std::vector<std::pair<uint32_t, uint32_t>>& colors,
                                 std::unordered_map<uint32_t, uint8_t>& index_of) {
    struct Box {
        size_t begin, end;
    };
    const auto channel = [](uint32_t rgb, int c) { return (rgb >> (16 - 8 * c)) & 0xff; };
    // The channel with the widest range in a box, and that range.
    const auto widest = [&](const Box& b, int* which) {
        uint32_t lo[3] = {255, 255, 255}, hi[3] = {0, 0, 0};
        for (size_t i = b.begin; i < b.end; ++i)
            for (int c = 0; c < 3; ++c) {
                lo[c] = std::min(lo[c], channel(colors[i].first, c));
                hi[c] = std::max(hi[c], channel(colors[i].first, c));
            }
        *which = 0;
        for (int c = 1; c < 3; ++c)
            if (hi[c] - lo[c] > hi[*which] - lo[*which]) *which = c;
        return hi[*which] - lo[*which];
    };
    std::vector<Box> boxes{{0, colors.size()}};
    while (boxes.size() < kMaxColors) {
        size_t pick = boxes.size();
        uint32_t best = 0;
        int axis = 0;
        for (size_t b = 0; b < boxes.size(); ++b) {
            if (boxes[b].end - boxes[b].begin < 2) continue;
            int c;
            const uint32_t range = widest(boxes[b], &c);
            if (range > best) {
                best = range;
                pick = b;
                axis = c;
            }
        }
        if (pick == boxes.size()) break;  // every box holds one colour
        Box& box = boxes[pick];
        const auto first = colors.begin() + std::ptrdiff_t(box.begin);
        const auto last = colors.begin() + std::ptrdiff_t(box.end);
        std::sort(first, last, [&](const auto& a, const auto& b) {
            const uint32_t ca = channel(a.first, axis), cb = channel(b.first, axis);
            return ca != cb ? ca < cb : a.first < b.first;
        });
        uint64_t total = 0;
        for (auto it = first; it != last; ++it) total += it->second;
        uint64_t seen = 0;
        size_t split = box.begin;
        while (split + 1 < box.end && (seen += colors[split].second) * 2 < total) ++split;
        split = std::min(split + 1, box.end - 1);  // both halves keep at least one colour
        boxes.push_back({split, box.end});
        boxes[pick].end = split;
    }
    std::vector<uint32_t> palette;
    for (const Box& b : boxes) {
        uint64_t sum[3] = {}, count = 0;
        for (size_t i = b.begin; i < b.end; ++i) {
            for (int c = 0; c < 3; ++c) sum[c] += uint64_t(channel(colors[i].first, c)) * colors[i].second;
            count += colors[i].second;
            index_of[colors[i].first] = static_cast<uint8_t>(palette.size());
        }
        uint32_t rgb = 0;
        for (int c = 0; c < 3; ++c) rgb = rgb << 8 | static_cast<uint32_t>((sum[c] + count / 2) / count);
        palette.push_back(rgb);
    }
    return palette;
}

IndexedFrame index_frame(const uint8_t* frame, size_t pixels, uint32_t channels) {
    IndexedFrame out;
    out.indices.resize(pixels);
    std::unordered_map<uint32_t, uint32_t> counts;
    counts.reserve(std::min<size_t>(pixels, 4096));
    for (size_t i = 0; i < pixels; ++i) ++counts[rgb_at(frame, i, channels)];
    std::unordered_map<uint32_t, uint8_t> index_of;
    index_of.reserve(counts.size());
    if (counts.size() <= kMaxColors) {
        // Exact: the distinct colours, in increasing order so that the output is reproducible.
        for (const auto& entry : counts) out.palette.push_back(entry.first);
        std::sort(out.palette.begin(), out.palette.end());
        for (size_t i = 0; i < out.palette.size(); ++i) index_of[out.palette[i]] = static_cast<uint8_t>(i);
    } else {
        std::vector<std::pair<uint32_t, uint32_t>> colors(counts.begin(), counts.end());
        std::sort(colors.begin(), colors.end());
        out.palette = median_cut(colors, index_of);
    }
    for (size_t i = 0; i < pixels; ++i) out.indices[i] = index_of[rgb_at(frame, i, channels)];
    return out;
}

// Variable-width codes, least significant bit first, in sub-blocks of at most 255 bytes.
class CodeWriter {
public:
    explicit CodeWriter(std::string& out) : out_(out) {}
    void put(uint32_t code, uint32_t width) {
        bits_ |= uint64_t(code) << count_;
        count_ += width;
        while (count_ >= 8) {
            byte(static_cast<uint8_t>(bits_ & 0xff));
            bits_ >>= 8;
            count_ -= 8;
        }
    }
    void finish() {
        if (count_) byte(static_cast<uint8_t>(bits_ & 0xff));
        if (!block_.empty()) flush_block();
        out_ += '\0';  // block terminator
    }

private:
    void byte(uint8_t b) {
        block_.push_back(static_cast<char>(b));
        if (block_.size() == 255) flush_block();
    }
    void flush_block() {
        out_ += static_cast<char>(block_.size());
        out_ += block_;
        block_.clear();
    }
    std::string& out_;
    std::string block_;
    uint64_t bits_ = 0;
    uint32_t count_ = 0;
};

// GIF's LZW: codes start one bit wider than min_size; the width grows once the next free code
// passes 2^width (the decoder adds each entry one code later than the encoder); when the table
// would pass 4096 entries a clear code starts it again.
void lzw(const std::vector<uint8_t>& indices, uint32_t min_size, std::string& out) {
    const uint32_t clear = 1u << min_size, end = clear + 1;
    // Open addressing over (prefix code, next index) pairs.
    constexpr size_t kSlots = 8192;
    std::vector<uint32_t> keys(kSlots), codes(kSlots);
    const auto reset = [&] { std::fill(keys.begin(), keys.end(), UINT32_MAX); };
    CodeWriter writer(out);
    uint32_t width = min_size + 1, next = end + 1;
    reset();
    writer.put(clear, width);
    if (indices.empty()) {
        writer.put(end, width);
        writer.finish();
        return;
    }
    uint32_t prefix = indices[0];
    for (size_t i = 1; i < indices.size(); ++i) {
        const uint32_t c = indices[i];
        const uint32_t key = prefix << 8 | c;
        size_t slot = (key * 2654435761u) >> 19;  // 13 bits: kSlots
        while (keys[slot] != UINT32_MAX && keys[slot] != key) slot = (slot + 1) & (kSlots - 1);
        if (keys[slot] == key) {
            prefix = codes[slot];
            continue;
        }
        writer.put(prefix, width);
        if (next < kMaxCode) {
            keys[slot] = key;
            codes[slot] = next++;
            if (next > (1u << width) && width < 12) ++width;
        } else {
            writer.put(clear, width);
            reset();
            width = min_size + 1;
            next = end + 1;
        }
        prefix = c;
    }
    writer.put(prefix, width);
    writer.put(end, width);
    writer.finish();
}

}  // namespace

bool encode_gif(const uint8_t* pixels, uint32_t frames, uint32_t height, uint32_t width,
                uint32_t channels, double fps, std::string* out) {
    if (height == 0 || width == 0 || height > 65535 || width > 65535 || channels == 0) return false;
    try {
        std::string gif = "GIF89a";
        put_u16(gif, width);
        put_u16(gif, height);
        gif += '\x70';  // no global palette; 8 bits of colour resolution
        gif += '\0';    // background colour
        gif += '\0';    // square pixels
        gif += "\x21\xff\x0bNETSCAPE2.0\x03\x01";
        put_u16(gif, 0);  // loop forever
        gif += '\0';
        const double hundredths = fps > 0 ? std::round(100.0 / fps) : 0;
        const uint32_t delay = static_cast<uint32_t>(std::clamp(hundredths, 1.0, 65535.0));
        const size_t frame_pixels = size_t(height) * width;
        const size_t frame_bytes = frame_pixels * channels;
        size_t last_delay_at = 0;  // where the delay of the frame written last is
        uint32_t last_delay = 0;
        for (uint32_t f = 0; f < frames; ++f) {
            const uint8_t* frame_pixels_at = pixels + f * frame_bytes;
            if (f > 0 && same_colors(frame_pixels_at - frame_bytes, frame_pixels_at, frame_pixels, channels)) {
                // A frame that repeats the one before lengthens it instead, as Pillow (the stock
                // writer's GIF encoder) merges it; the delays add up.
                last_delay = std::min<uint32_t>(last_delay + delay, 65535);
                gif[last_delay_at] = static_cast<char>(last_delay & 0xff);
                gif[last_delay_at + 1] = static_cast<char>((last_delay >> 8) & 0xff);
                continue;
            }
            const IndexedFrame frame = index_frame(frame_pixels_at, frame_pixels, channels);
            gif += "\x21\xf9\x04";
            gif += '\x04';  // disposal: leave the frame in place (each frame covers the screen)
            last_delay_at = gif.size();
            last_delay = delay;
            put_u16(gif, delay);
            gif += '\0';  // no transparent colour
            gif += '\0';
            uint32_t bits = 1;
            while ((1u << bits) < frame.palette.size()) ++bits;
            gif += '\x2c';
            put_u16(gif, 0);
            put_u16(gif, 0);
            put_u16(gif, width);
            put_u16(gif, height);
            gif += static_cast<char>(0x80 | (bits - 1));  // local palette of 2^bits entries
            for (uint32_t i = 0; i < (1u << bits); ++i) {
                const uint32_t rgb = i < frame.palette.size() ? frame.palette[i] : 0;
                gif += static_cast<char>((rgb >> 16) & 0xff);
                gif += static_cast<char>((rgb >> 8) & 0xff);
                gif += static_cast<char>(rgb & 0xff);
            }
            const uint32_t min_size = std::max<uint32_t>(2, bits);
            gif += static_cast<char>(min_size);
            lzw(frame.indices, min_size, gif);
        }
        gif += '\x3b';
        out->swap(gif);
        return true;
    } catch (const std::bad_alloc&) {
        return false;
    }
}

}  // namespace fasttb
