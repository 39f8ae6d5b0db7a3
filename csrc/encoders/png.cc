// PNG encoder for Summary.Image, run on the worker thread (no GIL, no exceptions, no Python).
//
// - every row gets the PNG filter with the smallest sum of residual magnitudes, the heuristic
//   Pillow and libpng use, so the residuals are about what Pillow would compress; a row equal
//   to the one above is settled by one comparison (Up, all zeros);
// - rows are deflated by a deflate written for filtered image rows (deflate.h).
// The chunks' CRC-32 comes from crc32.h; the zlib stream's Adler-32 is computed here (SSE2 on
// x86-64).
#include "encoders/png.h"

#include "checksum/crc32.h"
#include "encoders/deflate.h"
#include "encoders/pixels.h"
#include "encoders/reused.h"

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace fasttb {
namespace {

constexpr uint64_t kMaxDimension = 0x7fffffffu;  // PNG stores width and height in 31 bits
constexpr uint64_t kMaxChunk = 0x7fffffffu;      // and chunk lengths too
// Rows are filtered and deflated in groups of about this many bytes: small enough that a group
// and its match list stay in L2, large enough that a Huffman header (~100 bytes) is noise.
constexpr size_t kBlockTarget = size_t(1) << 16;
using deflate::kMaxSlice;
using deflate::kWindow;

void store_be32(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

// What encode_png() allocates, kept per thread (see Reused); the deflate encoder keeps its own.
struct Workspace {
    Reused<uint8_t> window, zeros, interleaved, png;
    void trim() { window.trim(), zeros.trim(), interleaved.trim(), png.trim(); }
};

// ---- PNG row filters. ----

inline uint8_t paeth_predictor(unsigned a, unsigned b, unsigned c) {
    const int pa = std::abs(int(b) - int(c));
    const int pb = std::abs(int(a) - int(c));
    const int pc = std::abs(int(a) + int(b) - 2 * int(c));
    if (pa <= pb && pa <= pc) return static_cast<uint8_t>(a);
    return static_cast<uint8_t>(pb <= pc ? b : c);
}

// A residual's cost for the choice of filter: its magnitude read as a signed byte, since small
// residuals of either sign compress best (the heuristic of the PNG specification and libpng).
inline unsigned magnitude(uint8_t v) { return v < 128 ? v : 256u - v; }

// The residuals of filter f (1 Sub, 2 Up, 3 Average, 4 Paeth) of byte x of a row.
inline uint8_t residual(int f, const uint8_t* cur, const uint8_t* prev, size_t x, unsigned bpp) {
    const unsigned a = x >= bpp ? cur[x - bpp] : 0u;
    const unsigned c = x >= bpp ? prev[x - bpp] : 0u;
    const unsigned b = prev[x], v = cur[x];
    switch (f) {
        case 1: return static_cast<uint8_t>(v - a);
        case 2: return static_cast<uint8_t>(v - b);
        case 3: return static_cast<uint8_t>(v - ((a + b) >> 1));
        default: return static_cast<uint8_t>(v - paeth_predictor(a, b, c));
    }
}

// The summed costs of all five filters (None first) over bytes [x0, x1) of a row, and Paeth's
// residuals, stored to paeth[x]: Paeth is the filter most often chosen.
void filter_costs_scalar(const uint8_t* cur, const uint8_t* prev, size_t x0, size_t x1,
                         unsigned bpp, uint8_t* paeth, uint64_t cost[5]) {
    for (size_t x = x0; x < x1; ++x) {
        cost[0] += magnitude(cur[x]);
        for (int f = 1; f < 4; ++f) cost[f] += magnitude(residual(f, cur, prev, x, bpp));
        paeth[x] = residual(4, cur, prev, x, bpp);
        cost[4] += magnitude(paeth[x]);
    }
}

#if defined(__SSE2__)
// The Average filter's prediction, floor((a + b) / 2), 16 bytes at a time: pavgb rounds up.
inline __m128i floor_average(__m128i a, __m128i b) {
    return _mm_sub_epi8(_mm_avg_epu8(a, b), _mm_and_si128(_mm_xor_si128(a, b), _mm_set1_epi8(1)));
}

// Sixteen bytes of the Sub, Up, Average and Paeth residuals, for bytes v at x >= bpp.
struct Residuals {
    __m128i sub, up, avg, paeth;
};

inline Residuals residuals_sse2(const uint8_t* cur, const uint8_t* prev, size_t x, unsigned bpp,
                                __m128i v) {
    // Paeth in bytes, 16 lanes at a time, from the two one-sided differences of b and c and of
    // a and c: pa = |b - c| and pb = |a - c| are exact, and pc = |(b - c) + (a - c)| is the
    // difference of the positive and the negative parts' sums. A sum saturates at 255 only
    // when both differences have one sign, and is then still at least pa and pb, which is all
    // the comparisons need.
    auto at_most = [](__m128i x, __m128i y) {  // x <= y, unsigned
        return _mm_cmpeq_epi8(_mm_min_epu8(x, y), x);
    };
    Residuals r;
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + x - bpp));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(prev + x));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(prev + x - bpp));
    r.sub = _mm_sub_epi8(v, a);
    r.up = _mm_sub_epi8(v, b);
    r.avg = _mm_sub_epi8(v, floor_average(a, b));
    const __m128i b_over = _mm_subs_epu8(b, c), b_under = _mm_subs_epu8(c, b);
    const __m128i a_over = _mm_subs_epu8(a, c), a_under = _mm_subs_epu8(c, a);
    const __m128i pa = _mm_or_si128(b_over, b_under), pb = _mm_or_si128(a_over, a_under);
    const __m128i over = _mm_adds_epu8(b_over, a_over);
    const __m128i under = _mm_adds_epu8(b_under, a_under);
    const __m128i pc = _mm_or_si128(_mm_subs_epu8(over, under), _mm_subs_epu8(under, over));
    const __m128i use_a = at_most(pa, _mm_min_epu8(pb, pc));
    const __m128i use_b = at_most(pb, pc);
    const __m128i b_or_c = _mm_or_si128(_mm_and_si128(use_b, b), _mm_andnot_si128(use_b, c));
    r.paeth = _mm_sub_epi8(v, _mm_or_si128(_mm_and_si128(use_a, a), _mm_andnot_si128(use_a, b_or_c)));
    return r;
}

// filter_costs_scalar() 16 bytes at a time from x0 >= bpp; returns where it stopped (x1 unless
// the span is under 16 bytes). SSE2 is part of x86-64, so this needs no run-time dispatch.
size_t filter_costs_sse2(const uint8_t* cur, const uint8_t* prev, size_t x0, size_t x1,
                         unsigned bpp, uint8_t* paeth, uint64_t cost[5]) {
    if (x1 - x0 < 16) return x0;
    // |r| of a signed byte is |(r ^ 0x80) - 0x80| of the unsigned one, which psadbw sums.
    const __m128i bias = _mm_set1_epi8(-128);
    auto magnitudes = [&](__m128i r) { return _mm_sad_epu8(_mm_xor_si128(r, bias), bias); };
    __m128i acc0 = _mm_setzero_si128(), acc1 = acc0, acc2 = acc0, acc3 = acc0, acc4 = acc0;
    size_t x = x0;
    for (; x + 16 <= x1; x += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + x));
        const Residuals r = residuals_sse2(cur, prev, x, bpp, v);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(paeth + x), r.paeth);
        acc0 = _mm_add_epi64(acc0, magnitudes(v));
        acc1 = _mm_add_epi64(acc1, magnitudes(r.sub));
        acc2 = _mm_add_epi64(acc2, magnitudes(r.up));
        acc3 = _mm_add_epi64(acc3, magnitudes(r.avg));
        acc4 = _mm_add_epi64(acc4, magnitudes(r.paeth));
    }
    if (x < x1) {
        // The last bytes in one more step ending at x1: the lanes done already are stored
        // again with the same values, and zeroed so that they are not counted again.
        const size_t t = x1 - 16;
        const __m128i lane = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const __m128i counted = _mm_cmpgt_epi8(lane, _mm_set1_epi8(static_cast<char>(x - t - 1)));
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + t));
        const Residuals r = residuals_sse2(cur, prev, t, bpp, v);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(paeth + t), r.paeth);
        acc0 = _mm_add_epi64(acc0, magnitudes(_mm_and_si128(v, counted)));
        acc1 = _mm_add_epi64(acc1, magnitudes(_mm_and_si128(r.sub, counted)));
        acc2 = _mm_add_epi64(acc2, magnitudes(_mm_and_si128(r.up, counted)));
        acc3 = _mm_add_epi64(acc3, magnitudes(_mm_and_si128(r.avg, counted)));
        acc4 = _mm_add_epi64(acc4, magnitudes(_mm_and_si128(r.paeth, counted)));
        x = x1;
    }
    const __m128i acc[5] = {acc0, acc1, acc2, acc3, acc4};
    for (int k = 0; k < 5; ++k) {
        uint64_t lanes[2];
        _mm_storeu_si128(reinterpret_cast<__m128i*>(lanes), acc[k]);
        cost[k] += lanes[0] + lanes[1];
    }
    return x;
}
#endif

// Writes filter f's residuals of row `cur` (1 Sub, 2 Up, 3 Average) to out[0, n).
void apply_filter(int f, const uint8_t* cur, const uint8_t* prev, size_t n, unsigned bpp,
                  uint8_t* out) {
    size_t x = 0;
    for (; x < n && x < bpp; ++x) out[x] = residual(f, cur, prev, x, bpp);
#if defined(__SSE2__)
    for (; x + 16 <= n; x += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + x));
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + x - bpp));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(prev + x));
        __m128i r;
        if (f == 1) {
            r = _mm_sub_epi8(v, a);
        } else if (f == 2) {
            r = _mm_sub_epi8(v, b);
        } else {
            r = _mm_sub_epi8(v, floor_average(a, b));
        }
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + x), r);
    }
#endif
    for (; x < n; ++x) out[x] = residual(f, cur, prev, x, bpp);
}

// Writes the best-filtered version of `cur` (prev is the row above, zeros for the first row) to
// dst[0] (the filter type) and dst[1, n]. Returns true when the row repeats the one above, and
// so is the Up filter and n zeros.
bool filter_row(const uint8_t* cur, const uint8_t* prev, size_t n, unsigned bpp, uint8_t* dst) {
    // No filter beats Up's all-zero residuals, and repeated rows are common in plots and flat
    // areas: one comparison settles them instead of five filters.
    if (std::memcmp(cur, prev, n) == 0) {
        dst[0] = 2;
        std::memset(dst + 1, 0, n);
        return true;
    }
    // Paeth's residuals go straight to their place; another filter, when it wins, is applied
    // afterwards, which costs less than storing every filter's residuals for every row.
    uint8_t* const paeth = dst + 1;
    uint64_t cost[5] = {};
    size_t x = std::min<size_t>(bpp, n);
    filter_costs_scalar(cur, prev, 0, x, bpp, paeth, cost);
#if defined(__SSE2__)
    x = filter_costs_sse2(cur, prev, x, n, bpp, paeth, cost);
#endif
    filter_costs_scalar(cur, prev, x, n, bpp, paeth, cost);
    int best = 0;
    for (int f = 1; f < 5; ++f)
        if (cost[f] < cost[best]) best = f;
    dst[0] = static_cast<uint8_t>(best);
    if (best == 0) std::memcpy(dst + 1, cur, n);
    if (best >= 1 && best <= 3) apply_filter(best, cur, prev, n, bpp, dst + 1);
    return false;
}

// ---- Chunks and checksums. ----

void put_chunk_header(uint8_t* p, uint32_t len, const char* type) {
    store_be32(p, len);
    std::memcpy(p + 4, type, 4);
}

uint32_t chunk_crc(const uint8_t* type_and_data, uint64_t n) {
    return crc32_extend(0, type_and_data, static_cast<size_t>(n));
}

// Adler-32 of the zlib stream (RFC 1950). zlib's own runs at about 2 GB/s here, a real share of
// the time for images that compress well, so x86-64 gets an SSE2 version.
constexpr uint32_t kAdlerMod = 65521;
constexpr size_t kAdlerBlock = 5552;  // the most bytes before the sums must be reduced

uint32_t update_adler(uint32_t adler, const uint8_t* p, size_t n) {
    uint64_t s1 = adler & 0xffffu, s2 = adler >> 16;
    while (n) {
        size_t block = std::min(n, kAdlerBlock);
        n -= block;
#if defined(__SSE2__)
        const size_t vec = block & ~size_t(15);
        if (vec) {
            // Per 16 bytes b0..b15: s1 += sum(b), s2 += 16 * s1 + sum((16 - k) * b_k). The
            // 16 * s1 terms are gathered in `prefix` (the s1 vector before each step).
            const __m128i zero = _mm_setzero_si128();
            const __m128i w_lo = _mm_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9);
            const __m128i w_hi = _mm_setr_epi16(8, 7, 6, 5, 4, 3, 2, 1);
            __m128i v1 = zero, v2 = zero, prefix = zero;
            for (size_t k = 0; k < vec; k += 16) {
                const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k));
                prefix = _mm_add_epi32(prefix, v1);
                v1 = _mm_add_epi32(v1, _mm_sad_epu8(b, zero));
                v2 = _mm_add_epi32(v2, _mm_madd_epi16(_mm_unpacklo_epi8(b, zero), w_lo));
                v2 = _mm_add_epi32(v2, _mm_madd_epi16(_mm_unpackhi_epi8(b, zero), w_hi));
            }
            uint32_t a1[4], a2[4], pre[4];
            _mm_storeu_si128(reinterpret_cast<__m128i*>(a1), v1);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(a2), v2);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(pre), prefix);
            s2 += s1 * vec + 16 * (uint64_t(pre[0]) + pre[1] + pre[2] + pre[3]) +
                  (uint64_t(a2[0]) + a2[1] + a2[2] + a2[3]);
            s1 += uint64_t(a1[0]) + a1[1] + a1[2] + a1[3];
            p += vec;
            block -= vec;
        }
#endif
        for (size_t k = 0; k < block; ++k) {
            s1 += p[k];
            s2 += s1;
        }
        p += block;
        s1 %= kAdlerMod;
        s2 %= kAdlerMod;
    }
    return static_cast<uint32_t>((s2 << 16) | s1);
}

// update_adler() over one filter byte `filter` and n zeros, in constant time.
uint32_t update_adler_zero_row(uint32_t adler, uint8_t filter, uint64_t n) {
    const uint64_t s1 = ((adler & 0xffffu) + filter) % kAdlerMod;
    const uint64_t s2 = ((adler >> 16) + s1 + (n % kAdlerMod) * s1) % kAdlerMod;
    return static_cast<uint32_t>((s2 << 16) | s1);
}

// ---- The driver. ----

// The sizes of one image's encoding.
struct Layout {
    unsigned bpp;             // bytes per pixel
    uint64_t row_bytes;       // < 2^33
    uint64_t stride;          // filter byte + row
    uint64_t raw;             // the filtered image: stride * height
    uint64_t rows_per_block;  // rows filtered, then deflated, together
    uint64_t block_bytes;
    uint64_t bound;  // the most bytes the PNG can take, with 16 bytes of slack for the writers
};

// False for sizes that a PNG cannot hold or that overflow.
bool plan_layout(uint32_t height, uint32_t width, uint32_t channels, Layout* l) {
    if (height == 0 || width == 0 || height > kMaxDimension || width > kMaxDimension ||
        channels < 1 || channels > 4)
        return false;
    l->bpp = channels;
    l->row_bytes = uint64_t(width) * l->bpp;
    l->stride = l->row_bytes + 1;
    // Everything below is sized from stride * height; refuse what the address space cannot hold
    // with room to spare, so that no later sum can overflow.
    if (l->stride > (uint64_t(SIZE_MAX) >> 4) / height) return false;
    l->raw = l->stride * height;

    l->rows_per_block = std::max<uint64_t>(1, kBlockTarget / l->stride);
    l->block_bytes = l->rows_per_block * l->stride;
    const uint64_t nblocks = (height + l->rows_per_block - 1) / l->rows_per_block;
    // A slice coded on its own is never larger than stored: its data plus at most 8 bytes per
    // stored piece of up to 64 KiB. Slices gathered into one block get codes for all of them,
    // which in theory can cost more than that: the bound is then what any Huffman-coded block
    // can take, 2 bytes per byte (a literal's code has at most 15 bits, a match of 3 bytes or
    // more at most 48) and a header of under 1 KiB for each block (at most two per slice).
    // Only the bytes written are ever touched.
    const uint64_t slices = nblocks * ((l->block_bytes + kMaxSlice - 1) / kMaxSlice);
    const uint64_t zlib_bound = 2 + 2 * l->raw + 2048 * (slices + 1) + 4;
    const uint64_t idat_chunks = zlib_bound / kMaxChunk + 1;
    l->bound = 8 + 25 + 12 * idat_chunks + zlib_bound + 12 + 16;  // 16: write slack
    return true;
}

// The signature and the IHDR chunk, 33 bytes at `base`.
void write_header(uint8_t* base, uint32_t height, uint32_t width, uint32_t channels) {
    static const uint8_t kColorType[5] = {0, 0, 4, 2, 6};
    static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    std::memcpy(base, kSignature, 8);
    put_chunk_header(base + 8, 13, "IHDR");
    uint8_t* const ihdr = base + 16;
    store_be32(ihdr, width);
    store_be32(ihdr + 4, height);
    ihdr[8] = 8;  // bit depth
    ihdr[9] = kColorType[channels];
    ihdr[10] = ihdr[11] = ihdr[12] = 0;  // deflate, adaptive filters, no interlace
    store_be32(base + 29, chunk_crc(base + 12, 17));
}

// Filters rows [y0, y1) into data (filter byte, then the row, for each) and adds them to the
// Adler-32. `prev` is the row above y0 and becomes the last row filtered. HWC pixels, or (planes
// > 0) CHW planes interleaved a row at a time into `interleaved`: the row and the one above.
uint32_t filter_rows(const uint8_t* pixels, uint32_t planes, uint32_t height, uint32_t width,
                     const Layout& l, uint64_t y0, uint64_t y1, uint8_t* interleaved,
                     const uint8_t** prev, uint8_t* data, uint32_t adler) {
    const size_t n = static_cast<size_t>(l.row_bytes);
    const size_t len = static_cast<size_t>((y1 - y0) * l.stride);
    size_t summed = 0;  // bytes of `data` already in the Adler-32
    for (uint64_t y = y0; y < y1; ++y) {
        const uint8_t* cur;
        if (planes) {
            uint8_t* const row = interleaved + (y & 1) * n;
            interleave_row(pixels, size_t(height) * width, planes, y, width, row);
            cur = row;
        } else {
            cur = pixels + y * l.row_bytes;
        }
        const size_t at = static_cast<size_t>((y - y0) * l.stride);
        if (filter_row(cur, *prev, n, l.bpp, data + at)) {
            adler = update_adler(adler, data + summed, at - summed);
            adler = update_adler_zero_row(adler, data[at], n);
            summed = at + static_cast<size_t>(l.stride);
        }
        *prev = cur;
    }
    return update_adler(adler, data + summed, len - summed);
}

// Hands data[0, len) to the deflate encoder, after `history` bytes it may refer to. A group is
// one row when rows are long; it is then deflated in slices, which bounds the encoder's buffers
// and keeps every count within 32 bits.
void deflate_rows(DeflateEncoder* deflate, const uint8_t* data, size_t len, size_t history,
                  unsigned bpp, bool last) {
    for (size_t at = 0; at < len;) {
        const size_t part = std::min(len - at, kMaxSlice);
        const size_t slice_history = std::min(kWindow, history + at);
        const uint8_t* const slice = data + at;
        at += part;
        deflate->add_slice(slice, part, slice_history, bpp, last && at == len);
    }
}

// Puts the zlib stream at zstart[0, zlen) into IDAT chunks starting at `idat` (zstart - 8);
// returns their end.
uint8_t* write_idat_chunks(uint8_t* idat, uint8_t* zstart, uint64_t zlen) {
    if (zlen <= kMaxChunk) {
        put_chunk_header(idat, static_cast<uint32_t>(zlen), "IDAT");
        store_be32(zstart + zlen, chunk_crc(idat + 4, 4 + zlen));
        return zstart + zlen + 4;
    }
    // Streams beyond a chunk's 2 GiB limit are split over several IDAT chunks. The stream is
    // first moved up by the extra headers' size so that each piece moves down into place
    // without overwriting data not yet moved.
    const uint64_t pieces = (zlen + kMaxChunk - 1) / kMaxChunk;
    const uint64_t grow = (pieces - 1) * 12;
    std::memmove(zstart + grow, zstart, static_cast<size_t>(zlen));
    const uint8_t* src = zstart + grow;
    uint8_t* p = idat;
    for (uint64_t left = zlen; left;) {
        const uint64_t piece = std::min(left, kMaxChunk);
        put_chunk_header(p, static_cast<uint32_t>(piece), "IDAT");
        std::memmove(p + 8, src, static_cast<size_t>(piece));
        store_be32(p + 8 + piece, chunk_crc(p + 4, 4 + piece));
        p += 12 + piece;
        src += piece;
        left -= piece;
    }
    return p;
}

// encode_png() of HWC pixels (planes == 0) or of that many CHW planes (encode_png_planes()).
bool encode(const uint8_t* pixels, uint32_t planes, uint32_t height, uint32_t width,
            uint32_t channels, std::string* out) {
    Layout l;
    if (!pixels || !out || !plan_layout(height, width, channels, &l)) return false;
    const size_t n = static_cast<size_t>(l.row_bytes);
    static thread_local Workspace space;
    const struct Trim {
        Workspace& space;
        ~Trim() { space.trim(); }
    } trim{space};
    const size_t slice_bytes = static_cast<size_t>(std::min<uint64_t>(l.block_bytes, kMaxSlice));
    uint8_t* const window = space.window.get(kWindow + static_cast<size_t>(l.block_bytes) + 16);
    uint8_t* const zeros = space.zeros.get(n);  // the row above the first
    // CHW planes are interleaved a row at a time, into two buffers: the row and the one above.
    uint8_t* const interleaved = planes ? space.interleaved.get(2 * n) : zeros;
    // The PNG is built in a buffer of its largest size and then copied out: resizing `out` to
    // that size would write all of it, ten or a hundred times the PNG itself for most images.
    uint8_t* const base = space.png.get(static_cast<size_t>(l.bound));
    if (!window || !zeros || !interleaved || !base) return false;
    uint8_t* const idat = base + 33;
    uint8_t* const zstart = idat + 8;
    DeflateEncoder deflate;
    if (!deflate.start(zstart + 2, l.raw, slice_bytes)) return false;
    std::memset(zeros, 0, n);
    write_header(base, height, width, channels);

    zstart[0] = 0x78;  // deflate with a 32 KiB window
    zstart[1] = 0x01;  // no dictionary, "fastest"; 0x7801 is a multiple of 31 as required
    uint32_t adler = 1;
    size_t history = 0;  // bytes of earlier blocks kept at the front of `window`
    const uint8_t* prev = zeros;  // the row above the next
    for (uint64_t y0 = 0; y0 < height; y0 += l.rows_per_block) {
        const uint64_t y1 = std::min<uint64_t>(height, y0 + l.rows_per_block);
        uint8_t* const data = window + history;
        const size_t len = static_cast<size_t>((y1 - y0) * l.stride);
        adler = filter_rows(pixels, planes, height, width, l, y0, y1, interleaved, &prev, data, adler);
        std::memset(data + len, 0, 16);  // the matcher reads whole words
        deflate_rows(&deflate, data, len, history, l.bpp, y1 == height);
        const size_t keep = std::min(kWindow, history + len);
        std::memmove(window, data + len - keep, keep);
        history = keep;
    }
    uint8_t* zend = deflate.finish();
    store_be32(zend, adler);
    zend += 4;

    uint8_t* end = write_idat_chunks(idat, zstart, uint64_t(zend - zstart));
    put_chunk_header(end, 0, "IEND");
    store_be32(end + 8, chunk_crc(end + 4, 4));
    end += 12;
    // The only call here that can throw; the worker must get `false`, never an exception.
    try {
        out->assign(reinterpret_cast<const char*>(base), static_cast<size_t>(end - base));
    } catch (const std::exception&) {
        return false;
    }
    return true;
}

}  // namespace

bool encode_png(const uint8_t* pixels, uint32_t height, uint32_t width, uint32_t channels,
                std::string* out) {
    return encode(pixels, 0, height, width, channels, out);
}

bool encode_png_planes(const uint8_t* planes, uint32_t count, uint32_t height, uint32_t width,
                       std::string* out) {
    if (count < 1 || count > 4) return false;
    return encode(planes, count, height, width, count == 1 ? 3 : count, out);
}

}  // namespace fasttb
