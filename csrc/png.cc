// PNG encoder for Summary.Image, run on the worker thread (no GIL, no exceptions, no Python).
//
// Speed comes from a deflate written for filtered image rows instead of a general-purpose one:
// each row gets the PNG filter with the smallest sum of absolute residuals (the heuristic
// Pillow and libpng use), and the deflate stream only looks for repeats of the previous pixel
// (distance = bytes per pixel), which is where filtered images keep their redundancy. Each block
// of rows gets its own Huffman tables from exact symbol counts, or is stored raw when that is
// smaller, so noise costs little more than a copy. zlib supplies only the checksums.
#include "png.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <memory>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace fasttb {
namespace {

constexpr uint64_t kMaxDimension = 0x7fffffffu;  // PNG stores width and height in 31 bits
constexpr uint64_t kMaxChunk = 0x7fffffffu;      // and chunk lengths too
// Rows are filtered and deflated in groups of about this many bytes: small enough that the
// group and its tokens stay in L2, large enough that a Huffman header (~100 bytes) is noise.
constexpr size_t kBlockTarget = size_t(1) << 17;
constexpr unsigned kMinMatch = 3;
constexpr unsigned kMaxMatch = 258;
constexpr unsigned kStoredMax = 65535;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
constexpr bool kLittleEndian = true;
#else
constexpr bool kLittleEndian = false;
#endif

void store_be32(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

void store_le64(uint8_t* p, uint64_t v) {
    if (kLittleEndian) {
        std::memcpy(p, &v, 8);
    } else {
        for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
    }
}

// Number of leading bytes equal in a and b, at most `limit`; both must be readable for
// `limit` bytes rounded up to a multiple of 8.
inline unsigned common_prefix(const uint8_t* a, const uint8_t* b, unsigned limit) {
    unsigned n = 0;
#if defined(__GNUC__)
    if (kLittleEndian) {
        while (n < limit) {
            uint64_t x, y;
            std::memcpy(&x, a + n, 8);
            std::memcpy(&y, b + n, 8);
            const uint64_t d = x ^ y;
            if (d) return std::min(limit, n + static_cast<unsigned>(__builtin_ctzll(d) >> 3));
            n += 8;
        }
        return limit;
    }
#endif
    while (n < limit && a[n] == b[n]) ++n;
    return n;
}

// ---- Bit output, least significant bit first as deflate wants. ----

class BitWriter {
   public:
    explicit BitWriter(uint8_t* p) : p_(p) {}
    // The caller keeps pending bits + len <= 64; after flush() at most 7 bits are pending.
    void put(uint64_t value, unsigned len) {
        bits_ |= value << n_;
        n_ += len;
    }
    // Writes 8 bytes (the output has slack for that) but advances only over complete bytes.
    void flush() {
        store_le64(p_, bits_);
        p_ += n_ >> 3;
        bits_ = (n_ & 56u) ? bits_ >> (n_ & 56u) : bits_;
        n_ &= 7u;
    }
    void align() {
        n_ = (n_ + 7u) & ~7u;
        flush();
    }
    uint8_t* pos() const { return p_; }  // valid after align()
    void skip(size_t n) { p_ += n; }

   private:
    uint8_t* p_;
    uint64_t bits_ = 0;
    unsigned n_ = 0;
};

// ---- Huffman codes. ----

constexpr int kLitLenSymbols = 286;
constexpr int kMaxSymbols = 288;

// Optimal code lengths for the symbols with nonzero counts, none longer than `limit`. When the
// optimal tree is too deep the counts are flattened and the tree rebuilt; that loses a little
// compression only in very skewed blocks. Needs at least two used symbols so the code is
// complete (zlib rejects incomplete codes).
void build_lengths(const uint32_t* counts, int n, unsigned limit, uint8_t* lens) {
    uint64_t weight[kMaxSymbols];
    int order[kMaxSymbols];
    uint64_t node_weight[2 * kMaxSymbols];
    int parent[2 * kMaxSymbols];
    uint8_t depth[2 * kMaxSymbols];
    int m = 0;
    for (int s = 0; s < n; ++s) {
        lens[s] = 0;
        weight[s] = counts[s];
        if (counts[s]) order[m++] = s;
    }
    for (;;) {
        std::sort(order, order + m, [&](int a, int b) {
            return weight[a] != weight[b] ? weight[a] < weight[b] : a < b;
        });
        // Two-queue construction: leaves come sorted, internal nodes are made in order.
        for (int i = 0; i < m; ++i) node_weight[i] = weight[order[i]];
        int leaf = 0, inner = m;
        for (int k = m; k < 2 * m - 1; ++k) {
            int pick[2];
            for (int& p : pick) {
                if (leaf < m && (inner >= k || node_weight[leaf] <= node_weight[inner]))
                    p = leaf++;
                else
                    p = inner++;
            }
            node_weight[k] = node_weight[pick[0]] + node_weight[pick[1]];
            parent[pick[0]] = parent[pick[1]] = k;
        }
        unsigned deepest = 0;
        depth[2 * m - 2] = 0;
        for (int i = 2 * m - 3; i >= 0; --i) {
            depth[i] = static_cast<uint8_t>(std::min(255, depth[parent[i]] + 1));
            deepest = std::max<unsigned>(deepest, depth[i]);
        }
        if (deepest <= limit) {
            for (int i = 0; i < m; ++i) lens[order[i]] = depth[i];
            return;
        }
        for (int i = 0; i < m; ++i) weight[order[i]] = (weight[order[i]] >> 1) + 1;
    }
}

// Canonical codes (RFC 1951 3.2.2), bit-reversed for LSB-first output.
void build_codes(const uint8_t* lens, int n, uint32_t* codes) {
    uint32_t count[16] = {}, next[16] = {};
    for (int s = 0; s < n; ++s) ++count[lens[s]];
    count[0] = 0;
    uint32_t code = 0;
    for (int len = 1; len < 16; ++len) {
        code = (code + count[len - 1]) << 1;
        next[len] = code;
    }
    for (int s = 0; s < n; ++s) {
        const unsigned len = lens[s];
        if (!len) {
            codes[s] = 0;
            continue;
        }
        uint32_t c = next[len]++, r = 0;
        for (unsigned i = 0; i < len; ++i, c >>= 1) r = (r << 1) | (c & 1u);
        codes[s] = r;
    }
}

// Gives two symbols a count of at least one if fewer than two are used, so that every tree
// we send is complete.
void ensure_two_used(uint32_t* counts, int n) {
    int used = 0;
    for (int s = 0; s < n; ++s) used += counts[s] != 0;
    for (int s = 0; s < n && used < 2; ++s) {
        if (!counts[s]) {
            counts[s] = 1;
            ++used;
        }
    }
}

// Length symbol (257..285) and extra bits for every match length.
struct LengthCode {
    uint16_t symbol;
    uint8_t extra_bits;
    uint8_t extra;
};

struct LengthTable {
    LengthCode of[kMaxMatch + 1];
    LengthTable() : of() {
        static const uint16_t kBase[29] = {3,  4,  5,  6,  7,  8,  9,  10,  11,  13,
                                           15, 17, 19, 23, 27, 31, 35, 43,  51,  59,
                                           67, 83, 99, 115, 131, 163, 195, 227, 258};
        static const uint8_t kExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                           2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
        for (int code = 0; code < 29; ++code) {
            const unsigned span = code == 28 ? 1u : 1u << kExtra[code];
            for (unsigned k = 0; k < span; ++k) {
                const unsigned len = kBase[code] + k;
                // 258 has its own symbol (285) although 284's extra bits could reach it.
                if (len >= kMaxMatch && code != 28) break;
                of[len] = {static_cast<uint16_t>(257 + code), kExtra[code],
                           static_cast<uint8_t>(k)};
            }
        }
    }
};

const LengthTable& length_table() {
    static const LengthTable table;
    return table;
}

// ---- The deflate stream of the filtered rows. ----

// Tokens: 0..255 a literal byte, 256 + (len - 3) a match of `len` bytes at distance bpp.
using Token = uint16_t;
constexpr int kTokenKinds = 256 + kMaxMatch - kMinMatch + 1;

// Splits data[0, n) into literals and previous-pixel repeats, greedily, and counts them.
// data[-history, 0) may be referred to; data must be readable up to n + 8.
size_t tokenize(const uint8_t* data, size_t n, size_t history, unsigned bpp, Token* tokens,
                uint32_t* counts) {
    size_t i = 0, t = 0;
    // A match needs bpp bytes behind it; only the first block of a stream lacks them.
    while (i < n && i + history < bpp) {
        tokens[t++] = data[i];
        ++counts[data[i]];
        ++i;
    }
    while (i < n) {
        const size_t left = n - i;
        const unsigned limit = left < kMaxMatch ? static_cast<unsigned>(left) : kMaxMatch;
        const unsigned len = limit >= kMinMatch ? common_prefix(data + i, data + i - bpp, limit)
                                                : 0;
        if (len >= kMinMatch) {
            const Token tok = static_cast<Token>(256 + len - kMinMatch);
            tokens[t++] = tok;
            ++counts[tok];
            i += len;
        } else {
            tokens[t++] = data[i];
            ++counts[data[i]];
            ++i;
        }
    }
    return t;
}

constexpr uint8_t kCodeLengthOrder[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                          11, 4,  12, 3, 13, 2, 14, 1, 15};

struct CodeLengthItem {
    uint8_t symbol;  // 0..18
    uint8_t extra;
};

// Run-length codes the concatenated literal/length and distance code lengths (RFC 1951 3.2.7).
int encode_code_lengths(const uint8_t* lens, int n, CodeLengthItem* items) {
    int k = 0;
    for (int i = 0; i < n;) {
        const uint8_t v = lens[i];
        int run = 1;
        while (i + run < n && lens[i + run] == v) ++run;
        i += run;
        if (v == 0) {
            while (run >= 11) {
                const int r = std::min(run, 138);
                items[k++] = {18, static_cast<uint8_t>(r - 11)};
                run -= r;
            }
            if (run >= 3) {
                items[k++] = {17, static_cast<uint8_t>(run - 3)};
                run = 0;
            }
        } else {
            items[k++] = {v, 0};
            --run;
            while (run >= 3) {
                const int r = std::min(run, 6);
                items[k++] = {16, static_cast<uint8_t>(r - 3)};
                run -= r;
            }
        }
        while (run-- > 0) items[k++] = {v, 0};
    }
    return k;
}

struct BlockPlan {
    uint8_t litlen_lens[kLitLenSymbols];
    uint8_t dist_lens[30];
    int nlit, ndist;
    CodeLengthItem items[kLitLenSymbols + 30];
    int nitems;
    uint8_t cl_lens[19];
    uint32_t cl_codes[19];
    int ncl;
    uint64_t bits;  // the whole block, header included
};

// Chooses Huffman codes for one block from its token counts and computes its exact size.
void plan_block(const uint32_t* token_counts, unsigned bpp, BlockPlan* plan) {
    const LengthTable& lt = length_table();
    uint32_t counts[kLitLenSymbols] = {};
    for (int s = 0; s < 256; ++s) counts[s] = token_counts[s];
    for (unsigned len = kMinMatch; len <= kMaxMatch; ++len)
        counts[lt.of[len].symbol] += token_counts[256 + len - kMinMatch];
    counts[256] = 1;  // end of block
    ensure_two_used(counts, kLitLenSymbols);
    build_lengths(counts, kLitLenSymbols, 15, plan->litlen_lens);
    plan->nlit = kLitLenSymbols;
    while (plan->nlit > 257 && plan->litlen_lens[plan->nlit - 1] == 0) --plan->nlit;

    // The only distance used is bpp (code bpp - 1); a second one-bit code keeps the tree
    // complete, and keeps every match's bits short enough to batch two tokens per flush.
    std::memset(plan->dist_lens, 0, sizeof plan->dist_lens);
    const unsigned dist_code = bpp - 1;
    plan->dist_lens[dist_code] = 1;
    plan->dist_lens[dist_code == 0 ? 1 : 0] = 1;
    plan->ndist = static_cast<int>(std::max(dist_code, 1u)) + 1;

    uint8_t all[kLitLenSymbols + 30];
    std::memcpy(all, plan->litlen_lens, plan->nlit);
    std::memcpy(all + plan->nlit, plan->dist_lens, plan->ndist);
    plan->nitems = encode_code_lengths(all, plan->nlit + plan->ndist, plan->items);
    uint32_t cl_counts[19] = {};
    for (int i = 0; i < plan->nitems; ++i) ++cl_counts[plan->items[i].symbol];
    ensure_two_used(cl_counts, 19);
    build_lengths(cl_counts, 19, 7, plan->cl_lens);
    build_codes(plan->cl_lens, 19, plan->cl_codes);
    plan->ncl = 19;
    while (plan->ncl > 4 && plan->cl_lens[kCodeLengthOrder[plan->ncl - 1]] == 0) --plan->ncl;

    static const uint8_t kClExtra[19] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0, 0, 0, 0, 0, 0, 2, 3, 7};
    uint64_t bits = 3 + 5 + 5 + 4 + 3 * uint64_t(plan->ncl);
    for (int i = 0; i < plan->nitems; ++i) {
        const int s = plan->items[i].symbol;
        bits += plan->cl_lens[s] + kClExtra[s];
    }
    for (int s = 0; s < 256; ++s) bits += uint64_t(token_counts[s]) * plan->litlen_lens[s];
    const unsigned dist_bits = plan->dist_lens[dist_code];
    for (unsigned len = kMinMatch; len <= kMaxMatch; ++len) {
        const LengthCode& lc = lt.of[len];
        bits += uint64_t(token_counts[256 + len - kMinMatch]) *
                (plan->litlen_lens[lc.symbol] + lc.extra_bits + dist_bits);
    }
    bits += plan->litlen_lens[256];
    plan->bits = bits;
}

void write_dynamic_block(const BlockPlan& plan, const Token* tokens, size_t ntokens, unsigned bpp,
                         bool final, BitWriter* w) {
    const LengthTable& lt = length_table();
    uint32_t litlen_codes[kLitLenSymbols], dist_codes[30];
    build_codes(plan.litlen_lens, kLitLenSymbols, litlen_codes);
    build_codes(plan.dist_lens, 30, dist_codes);

    w->put(final ? 1u : 0u, 1);
    w->put(2, 2);
    w->put(plan.nlit - 257, 5);
    w->put(plan.ndist - 1, 5);
    w->put(plan.ncl - 4, 4);
    w->flush();
    for (int i = 0; i < plan.ncl; ++i) {
        w->put(plan.cl_lens[kCodeLengthOrder[i]], 3);
        w->flush();
    }
    static const uint8_t kClExtra[19] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0, 0, 0, 0, 0, 0, 2, 3, 7};
    for (int i = 0; i < plan.nitems; ++i) {
        const CodeLengthItem& it = plan.items[i];
        w->put(plan.cl_codes[it.symbol], plan.cl_lens[it.symbol]);
        w->put(it.extra, kClExtra[it.symbol]);
        w->flush();
    }

    // One table entry per token: its bits (length code, extra bits and distance code joined)
    // in the high part, their count (at most 15 + 5 + 1) in the low 6 bits.
    uint32_t entry[kTokenKinds];
    for (int s = 0; s < 256; ++s) entry[s] = (litlen_codes[s] << 6) | plan.litlen_lens[s];
    const unsigned dist_code = bpp - 1;
    for (unsigned len = kMinMatch; len <= kMaxMatch; ++len) {
        const LengthCode& lc = lt.of[len];
        const unsigned ll = plan.litlen_lens[lc.symbol];
        const uint32_t bits = litlen_codes[lc.symbol] | (uint32_t(lc.extra) << ll) |
                              (dist_codes[dist_code] << (ll + lc.extra_bits));
        entry[256 + len - kMinMatch] = (bits << 6) | (ll + lc.extra_bits + plan.dist_lens[dist_code]);
    }
    size_t i = 0;
    for (; i + 2 <= ntokens; i += 2) {
        const uint32_t a = entry[tokens[i]], b = entry[tokens[i + 1]];
        w->put(a >> 6, a & 63u);
        w->put(b >> 6, b & 63u);
        w->flush();
    }
    if (i < ntokens) {
        const uint32_t a = entry[tokens[i]];
        w->put(a >> 6, a & 63u);
        w->flush();
    }
    w->put(litlen_codes[256], plan.litlen_lens[256]);
    w->flush();
}

uint64_t stored_bits(size_t n) {
    // Per piece: 3 header bits, padding to a byte (at most 7 + 7 with what is pending), LEN, NLEN.
    const uint64_t pieces = n ? (n + kStoredMax - 1) / kStoredMax : 1;
    return pieces * (3 + 14 + 32) + 8 * uint64_t(n);
}

void write_stored(const uint8_t* data, size_t n, bool final, BitWriter* w) {
    do {
        const size_t piece = std::min<size_t>(n, kStoredMax);
        n -= piece;
        w->put(final && n == 0 ? 1u : 0u, 1);
        w->put(0, 2);
        w->align();
        w->put(piece, 16);
        w->put(piece ^ 0xffffu, 16);
        w->flush();
        std::memcpy(w->pos(), data, piece);
        w->skip(piece);
        data += piece;
    } while (n);
}

// ---- PNG row filters. ----

enum Filter : uint8_t { kNone = 0, kSub = 1, kUp = 2, kAvg = 3, kPaeth = 4 };

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

// Residuals of every filter for bytes [x0, x1) of a row, with their summed costs (None first).
void filter_span_scalar(const uint8_t* cur, const uint8_t* prev, size_t x0, size_t x1,
                        unsigned bpp, uint8_t* const res[4], uint64_t cost[5]) {
    for (size_t x = x0; x < x1; ++x) {
        const unsigned a = x >= bpp ? cur[x - bpp] : 0u;
        const unsigned c = x >= bpp ? prev[x - bpp] : 0u;
        const unsigned b = prev[x], v = cur[x];
        const uint8_t r[4] = {static_cast<uint8_t>(v - a), static_cast<uint8_t>(v - b),
                              static_cast<uint8_t>(v - ((a + b) >> 1)),
                              static_cast<uint8_t>(v - paeth_predictor(a, b, c))};
        cost[0] += magnitude(static_cast<uint8_t>(v));
        for (int f = 0; f < 4; ++f) {
            res[f][x] = r[f];
            cost[f + 1] += magnitude(r[f]);
        }
    }
}

#if defined(__SSE2__)
// The same for 16 bytes at a time from x0 >= bpp; returns where it stopped (fewer than 16 bytes
// before x1). SSE2 is part of x86-64, so this needs no run-time dispatch.
size_t filter_span_sse2(const uint8_t* cur, const uint8_t* prev, size_t x0, size_t x1,
                        unsigned bpp, uint8_t* const res[4], uint64_t cost[5]) {
    const __m128i zero = _mm_setzero_si128();
    const __m128i ones = _mm_set1_epi8(1);
    __m128i acc[5] = {zero, zero, zero, zero, zero};
    auto add_cost = [&](int k, __m128i r) {
        const __m128i mag = _mm_min_epu8(r, _mm_sub_epi8(zero, r));
        acc[k] = _mm_add_epi64(acc[k], _mm_sad_epu8(mag, zero));
    };
    auto abs16 = [&](__m128i v) { return _mm_max_epi16(v, _mm_sub_epi16(zero, v)); };
    // Mask of lanes where Paeth picks a (first) and where, failing a, it picks b over c.
    auto paeth_masks = [&](__m128i a, __m128i b, __m128i c, __m128i* pick_a, __m128i* pick_b) {
        const __m128i bc = _mm_sub_epi16(b, c), ac = _mm_sub_epi16(a, c);
        const __m128i pa = abs16(bc), pb = abs16(ac), pc = abs16(_mm_add_epi16(bc, ac));
        *pick_a = _mm_or_si128(_mm_cmpgt_epi16(pa, pb), _mm_cmpgt_epi16(pa, pc));  // inverted
        *pick_b = _mm_cmpgt_epi16(pb, pc);                                         // inverted
    };
    size_t x = x0;
    for (; x + 16 <= x1; x += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + x));
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + x - bpp));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(prev + x));
        const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(prev + x - bpp));
        const __m128i sub = _mm_sub_epi8(v, a);
        const __m128i up = _mm_sub_epi8(v, b);
        // pavgb rounds up; the filter wants the floor.
        const __m128i mean = _mm_sub_epi8(_mm_avg_epu8(a, b), _mm_and_si128(_mm_xor_si128(a, b), ones));
        const __m128i avg = _mm_sub_epi8(v, mean);
        __m128i not_a_lo, not_b_lo, not_a_hi, not_b_hi;
        paeth_masks(_mm_unpacklo_epi8(a, zero), _mm_unpacklo_epi8(b, zero),
                    _mm_unpacklo_epi8(c, zero), &not_a_lo, &not_b_lo);
        paeth_masks(_mm_unpackhi_epi8(a, zero), _mm_unpackhi_epi8(b, zero),
                    _mm_unpackhi_epi8(c, zero), &not_a_hi, &not_b_hi);
        const __m128i not_a = _mm_packs_epi16(not_a_lo, not_a_hi);
        const __m128i not_b = _mm_packs_epi16(not_b_lo, not_b_hi);
        const __m128i b_or_c = _mm_or_si128(_mm_andnot_si128(not_b, b), _mm_and_si128(not_b, c));
        const __m128i pred = _mm_or_si128(_mm_andnot_si128(not_a, a), _mm_and_si128(not_a, b_or_c));
        const __m128i pae = _mm_sub_epi8(v, pred);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(res[0] + x), sub);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(res[1] + x), up);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(res[2] + x), avg);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(res[3] + x), pae);
        add_cost(0, v);
        add_cost(1, sub);
        add_cost(2, up);
        add_cost(3, avg);
        add_cost(4, pae);
    }
    for (int k = 0; k < 5; ++k) {
        uint64_t lanes[2];
        _mm_storeu_si128(reinterpret_cast<__m128i*>(lanes), acc[k]);
        cost[k] += lanes[0] + lanes[1];
    }
    return x;
}
#endif

// Writes the best-filtered version of `cur` (prev is the row above, zeros for the first row)
// to dst[0] (filter type) and dst[1, n]. `scratch` holds 4 rows of n bytes.
void filter_row(const uint8_t* cur, const uint8_t* prev, size_t n, unsigned bpp,
                uint8_t* scratch, uint8_t* dst) {
    uint8_t* const res[4] = {scratch, scratch + n, scratch + 2 * n, scratch + 3 * n};
    uint64_t cost[5] = {};
    size_t x = std::min<size_t>(bpp, n);
    filter_span_scalar(cur, prev, 0, x, bpp, res, cost);
#if defined(__SSE2__)
    x = filter_span_sse2(cur, prev, x, n, bpp, res, cost);
#endif
    filter_span_scalar(cur, prev, x, n, bpp, res, cost);
    int best = 0;
    for (int f = 1; f < 5; ++f)
        if (cost[f] < cost[best]) best = f;
    dst[0] = static_cast<uint8_t>(best);
    std::memcpy(dst + 1, best == kNone ? cur : res[best - 1], n);
}

void put_chunk_header(uint8_t* p, uint32_t len, const char* type) {
    store_be32(p, len);
    std::memcpy(p + 4, type, 4);
}

uint32_t chunk_crc(const uint8_t* type_and_data, size_t n) {
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n) {
        const uInt piece = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
        crc = crc32(crc, type_and_data, piece);
        type_and_data += piece;
        n -= piece;
    }
    return static_cast<uint32_t>(crc);
}

uint32_t update_adler(uint32_t adler, const uint8_t* p, size_t n) {
    uLong a = adler;
    while (n) {
        const uInt piece = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
        a = adler32(a, p, piece);
        p += piece;
        n -= piece;
    }
    return static_cast<uint32_t>(a);
}

}  // namespace

bool encode_png(const uint8_t* pixels, uint32_t height, uint32_t width, uint32_t channels,
                std::string* out) {
    static const uint8_t kColorType[5] = {0, 0, 4, 2, 6};
    if (!pixels || !out || height == 0 || width == 0 || height > kMaxDimension ||
        width > kMaxDimension || channels < 1 || channels > 4)
        return false;
    const unsigned bpp = channels;
    const uint64_t row_bytes = uint64_t(width) * bpp;  // < 2^33, no overflow
    const uint64_t stride = row_bytes + 1;
    // Everything below is sized from `raw`; refuse what the address space cannot hold.
    if (stride > (uint64_t(SIZE_MAX) >> 4) / height) return false;
    const uint64_t raw = stride * height;

    const uint64_t rows_per_block = std::max<uint64_t>(1, kBlockTarget / stride);
    const uint64_t nblocks = (height + rows_per_block - 1) / rows_per_block;
    const uint64_t block_bytes = rows_per_block * stride;
    // Stored output is the worst case per block; the rest is fixed overhead and write slack.
    const uint64_t zlib_bound = 2 + raw + nblocks * 8 * ((block_bytes + kStoredMax - 1) /
                                                            kStoredMax + 1) + 4;
    const uint64_t idat_chunks = zlib_bound / kMaxChunk + 1;
    const uint64_t bound = 8 + 25 + 12 * idat_chunks + zlib_bound + 12 + 16;

    const size_t n = static_cast<size_t>(row_bytes);
    const size_t history = bpp;
    std::unique_ptr<uint8_t[]> block(new (std::nothrow) uint8_t[history + block_bytes + 8]);
    std::unique_ptr<Token[]> tokens(new (std::nothrow) Token[block_bytes]);
    std::unique_ptr<uint8_t[]> rows(new (std::nothrow) uint8_t[5 * n]);
    if (!block || !tokens || !rows) return false;
    uint8_t* zeros = rows.get() + 4 * n;
    std::memset(zeros, 0, n);
    std::memset(block.get(), 0, history);

    out->resize(static_cast<size_t>(bound));
    uint8_t* const base = reinterpret_cast<uint8_t*>(&(*out)[0]);
    static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    std::memcpy(base, kSignature, 8);
    put_chunk_header(base + 8, 13, "IHDR");
    uint8_t* ihdr = base + 16;
    store_be32(ihdr, width);
    store_be32(ihdr + 4, height);
    ihdr[8] = 8;
    ihdr[9] = kColorType[channels];
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    store_be32(base + 29, chunk_crc(base + 12, 17));

    uint8_t* const idat = base + 33;
    uint8_t* const zstart = idat + 8;
    zstart[0] = 0x78;  // deflate, 32 KiB window
    zstart[1] = 0x01;  // no dictionary, "fastest" level; 0x7801 % 31 == 0
    BitWriter w(zstart + 2);
    uint32_t adler = 1;
    uint8_t* data = block.get() + history;
    for (uint64_t y0 = 0; y0 < height; y0 += rows_per_block) {
        const uint64_t y1 = std::min<uint64_t>(height, y0 + rows_per_block);
        for (uint64_t y = y0; y < y1; ++y) {
            const uint8_t* cur = pixels + y * row_bytes;
            const uint8_t* prev = y ? cur - row_bytes : zeros;
            filter_row(cur, prev, n, bpp, rows.get(), data + (y - y0) * stride);
        }
        const size_t len = static_cast<size_t>((y1 - y0) * stride);
        adler = update_adler(adler, data, len);
        std::memset(data + len, 0, 8);  // common_prefix may read past the end

        uint32_t counts[kTokenKinds] = {};
        const size_t ntokens =
            tokenize(data, len, y0 ? history : 0, bpp, tokens.get(), counts);
        BlockPlan plan;
        plan_block(counts, bpp, &plan);
        const bool final = y1 == height;
        if (plan.bits < stored_bits(len))
            write_dynamic_block(plan, tokens.get(), ntokens, bpp, final, &w);
        else
            write_stored(data, len, final, &w);
        // The next block's matches may look back one pixel into this one.
        std::memcpy(block.get(), data + len - history, history);
    }
    w.align();
    uint8_t* zend = w.pos();
    store_be32(zend, adler);
    zend += 4;
    const uint64_t zlen = uint64_t(zend - zstart);

    uint8_t* end;
    if (zlen <= kMaxChunk) {
        put_chunk_header(idat, static_cast<uint32_t>(zlen), "IDAT");
        store_be32(zend, chunk_crc(idat + 4, 4 + zlen));
        end = zend + 4;
    } else {
        // Only for images of gigabytes: split the stream into several IDAT chunks, moving the
        // tail back to make room for the extra chunk headers.
        const uint64_t pieces = (zlen + kMaxChunk - 1) / kMaxChunk;
        const uint64_t grow = (pieces - 1) * 12;
        std::memmove(zstart + grow, zstart, static_cast<size_t>(zlen));
        const uint8_t* src = zstart + grow;
        uint8_t* p = idat;
        uint64_t left = zlen;
        while (left) {
            const uint64_t piece = std::min(left, kMaxChunk);
            put_chunk_header(p, static_cast<uint32_t>(piece), "IDAT");
            std::memmove(p + 8, src, static_cast<size_t>(piece));
            store_be32(p + 8 + piece, chunk_crc(p + 4, 4 + piece));
            p += 12 + piece;
            src += piece;
            left -= piece;
        }
        end = p;
    }
    put_chunk_header(end, 0, "IEND");
    store_be32(end + 8, chunk_crc(end + 4, 4));
    end += 12;
    out->resize(static_cast<size_t>(end - base));
    return true;
}

}  // namespace fasttb
