// PNG encoder for Summary.Image, run on the worker thread (no GIL, no exceptions, no Python).
//
// The speed comes from a deflate written for filtered image rows rather than zlib's general one:
// - every row gets the PNG filter with the smallest sum of residual magnitudes, the heuristic
//   Pillow and libpng use, so the residuals are about what Pillow would compress; a row equal
//   to the one above is settled by one comparison (Up, all zeros);
// - matches are found greedily among a few candidates: a repeat of the previous pixel
//   (distance = bytes per pixel, where filtered images keep most of their redundancy), of the
//   latest far distance when it gave a long match (periods of tiles and patterns), the few
//   recent distances, and one hash probe, looking on until a match is 128 bytes long. A match
//   is taken only if it saves bits over its literals at the previous block's code lengths, and
//   probes thin out while they save less than they cost, so photos and noise stay fast. A long
//   match far back is checked for a short period that repeats it just as far, cheaper to code;
// - each slice of rows gets Huffman codes from its exact symbol counts, or is stored raw when
//   that is smaller, so incompressible data costs little more than a copy; slices that compress
//   well are gathered into one block while their statistics stay alike, as a header would cost
//   about as much as such a slice.
// The chunks' CRC-32 comes from crc32.h; the zlib stream's Adler-32 is computed here (SSE2 on
// x86-64).
#include "encoders/png.h"

#include "checksum/crc32.h"
#include "encoders/pixels.h"


#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>

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
constexpr size_t kMaxSlice = 2 * kBlockTarget;  // the most bytes in one deflate block
constexpr size_t kWindow = 32768;  // deflate's largest distance
constexpr size_t kPriceSample = 16384;  // bytes counted to price the first slice's literals
constexpr unsigned kMinMatch = 3;
constexpr unsigned kMinFarMatch = 4;  // the hash covers 4 bytes; 3 far bytes rarely pay anyway
constexpr unsigned kMaxMatch = 258;
constexpr unsigned kLongRun = 32;     // a match this long is taken without pricing
constexpr unsigned kNiceMatch = 128;  // and one this long without looking for a longer one
constexpr unsigned kPricedBytes = 8;  // literals priced per candidate match (a power of two)
// Hash probes are charged kProbeCost bits each against what their matches save; the deficit,
// shifted right by kSkipShift, is how many positions are skipped before the next probe.
constexpr int64_t kProbeCost = 4;
constexpr int64_t kMaxCredit = 1024;
constexpr unsigned kSkipShift = 5;
constexpr int64_t kMaxSkip = 32;
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

inline uint32_t load32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

inline unsigned floor_log2(uint32_t v) {  // v > 0
#if defined(__GNUC__)
    return 31u - static_cast<unsigned>(__builtin_clz(v));
#else
    unsigned k = 0;
    while (v >>= 1) ++k;
    return k;
#endif
}

inline unsigned trailing_zeros(unsigned v) {  // v > 0
#if defined(__GNUC__)
    return static_cast<unsigned>(__builtin_ctz(v));
#else
    unsigned k = 0;
    while (!(v & 1u)) v >>= 1, ++k;
    return k;
#endif
}

// Number of leading bytes equal in a and b, at most `limit`; both must be readable for `limit`
// bytes rounded up to a multiple of 16.
inline unsigned common_prefix(const uint8_t* a, const uint8_t* b, unsigned limit) {
    unsigned n = 0;
#if defined(__SSE2__)
    for (; n < limit; n += 16) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + n));
        const __m128i y = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + n));
        const unsigned same = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(x, y)));
        if (same != 0xffffu) return std::min(limit, n + trailing_zeros(~same));
    }
    return limit;
#else
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
#endif
}

// ---- Bit output, least significant bit first as deflate wants. ----

class BitWriter {
   public:
    explicit BitWriter(uint8_t* p) : p_(p) {}
    // Callers keep the pending bits at 64 or fewer; after flush() at most 7 are pending.
    void put(uint64_t value, unsigned len) {
        bits_ |= value << n_;
        n_ += len;
    }
    // Stores 8 bytes (the output has slack for that) but advances only over complete ones.
    void flush() {
        store_le64(p_, bits_);
        p_ += n_ >> 3;
        const unsigned done = n_ & ~7u;
        bits_ = done < 64 ? bits_ >> done : 0;
        n_ &= 7u;
    }
    void align() {
        n_ = (n_ + 7u) & ~7u;
        flush();
    }
    uint8_t* pos() const { return p_; }  // the next byte, once aligned
    void skip(size_t n) { p_ += n; }

   private:
    uint8_t* p_;
    uint64_t bits_ = 0;
    unsigned n_ = 0;
};

// ---- Huffman codes. ----

constexpr int kLitLenSymbols = 286;
constexpr int kDistSymbols = 30;
constexpr int kMaxSymbols = 288;

// Sorts keys (weight << 9 | symbol, made in symbol order) by weight, ties in symbol order. Many
// keys are radix-sorted a byte of weight at a time, as many passes as the heaviest needs: a
// block's literal/length code is rebuilt for every slice, and a comparison sort of ~280 keys
// was a tenth of the time of some images.
void sort_by_weight(uint64_t* key, int m) {
    if (m <= 64) {
        std::sort(key, key + m);
        return;
    }
    uint64_t tmp[kMaxSymbols];
    uint64_t heaviest = 0;
    for (int i = 0; i < m; ++i) heaviest = std::max(heaviest, key[i] >> 9);
    uint64_t* from = key;
    uint64_t* to = tmp;
    for (unsigned shift = 9; shift < 64 && (heaviest >> (shift - 9)) != 0; shift += 8) {
        int start[257] = {};
        for (int i = 0; i < m; ++i) ++start[((from[i] >> shift) & 255u) + 1];
        for (int b = 0; b < 256; ++b) start[b + 1] += start[b];
        for (int i = 0; i < m; ++i) to[start[(from[i] >> shift) & 255u]++] = from[i];
        std::swap(from, to);
    }
    if (from != key) std::memcpy(key, from, sizeof(uint64_t) * size_t(m));
}

// Optimal code lengths for the symbols with nonzero counts, none longer than `limit`. When the
// optimal tree is too deep the counts are flattened and the tree rebuilt, which costs a little
// compression only in very skewed blocks. Needs at least two used symbols, so that the code is
// complete (zlib's inflate rejects incomplete codes).
void build_lengths(const uint32_t* counts, int n, unsigned limit, uint8_t* lens) {
    // Each used symbol as one integer, weight above symbol, so that sorting is of plain
    // integers; weights stay below 2^33, symbols below 2^9.
    uint64_t key[kMaxSymbols];
    int order[kMaxSymbols];
    uint64_t weight[kMaxSymbols];
    uint64_t node_weight[2 * kMaxSymbols];
    int parent[2 * kMaxSymbols];
    unsigned depth[2 * kMaxSymbols];
    int m = 0;
    for (int s = 0; s < n; ++s) {
        lens[s] = 0;
        if (counts[s]) key[m++] = (uint64_t(counts[s]) << 9) | unsigned(s);
    }
    if (m < 2) {
        if (m == 1) lens[key[0] & 511u] = 1;
        return;
    }
    sort_by_weight(key, m);
    for (int i = 0; i < m; ++i) {
        order[i] = static_cast<int>(key[i] & 511u);
        weight[i] = key[i] >> 9;
    }
    for (;;) {
        for (int i = 0; i < m; ++i) node_weight[i] = weight[i];
        // Two-queue construction: leaves come sorted and inner nodes are made in weight order,
        // so the two lightest nodes are always at the heads of the two queues.
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
        // Parents come after their children, so one backward pass gives every depth.
        unsigned deepest = 0;
        depth[2 * m - 2] = 0;
        for (int i = 2 * m - 3; i >= 0; --i) {
            depth[i] = depth[parent[i]] + 1;
            deepest = std::max(deepest, depth[i]);
        }
        if (deepest <= limit) {
            for (int i = 0; i < m; ++i) lens[order[i]] = static_cast<uint8_t>(depth[i]);
            return;
        }
        // Halving keeps the leaves in weight order.
        for (int i = 0; i < m; ++i) weight[i] = (weight[i] >> 1) + 1;
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
        uint32_t c = len ? next[len]++ : 0, r = 0;
        for (unsigned i = 0; i < len; ++i, c >>= 1) r = (r << 1) | (c & 1u);
        codes[s] = r;
    }
}

// Gives unused symbols a count of one until two are used, so that every tree sent is complete.
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

// ---- Deflate's length and distance symbols (RFC 1951 3.2.5). ----

struct LengthCode {
    uint16_t symbol;  // 257..285
    uint8_t extra_bits;
    uint8_t extra;
};

struct LengthTable {
    LengthCode of[kMaxMatch + 1];
    LengthTable() : of() {
        static const uint16_t kBase[29] = {3,  4,  5,  6,  7,  8,  9,  10,  11,  13,
                                           15, 17, 19, 23, 27, 31, 35, 43,  51,  59,
                                           67, 83, 99, 115, 131, 163, 195, 227, 258};
        for (int code = 0; code < 29; ++code) {
            const unsigned extra_bits = code < 8 || code == 28 ? 0u : unsigned(code - 4) / 4;
            for (unsigned k = 0; k < (1u << extra_bits); ++k) {
                const unsigned len = kBase[code] + k;
                // 258 has its own symbol (285) although 284's extra bits could reach it.
                if (len >= kMaxMatch && code != 28) break;
                of[len] = {static_cast<uint16_t>(257 + code), static_cast<uint8_t>(extra_bits),
                           static_cast<uint8_t>(k)};
            }
        }
    }
};

const LengthTable& length_table() {
    static const LengthTable table;
    return table;
}

inline unsigned distance_extra_bits(unsigned symbol) { return symbol < 4 ? 0 : symbol / 2 - 1; }

// Symbol (0..29) and extra-bit value of a distance in [1, 32768].
inline void distance_code(unsigned d, unsigned* symbol, unsigned* extra) {
    if (d <= 4) {
        *symbol = d - 1;
        *extra = 0;
        return;
    }
    const unsigned v = d - 1, k = floor_log2(v);  // k >= 2
    *symbol = 2 * k + ((v >> (k - 1)) & 1u);
    *extra = v & ((1u << (k - 1)) - 1u);
}

// ---- Matching. ----

// A run of literals followed by one match (length 0 for the literals that end a block).
struct Sequence {
    uint32_t literals;
    uint16_t length;
    uint16_t distance;
};

// Counts bytes [from, to) of p into four tables, to be summed by the caller: with one table,
// runs of one byte value would wait on their own increments.
void count_bytes(uint32_t (&count)[4][256], const uint8_t* p, size_t from, size_t to) {
    size_t k = from;
    for (; k + 4 <= to; k += 4) {
        ++count[0][p[k]];
        ++count[1][p[k + 1]];
        ++count[2][p[k + 2]];
        ++count[3][p[k + 3]];
    }
    for (; k < to; ++k) ++count[0][p[k]];
}

struct BlockCounts {
    uint32_t litlen[kLitLenSymbols];
    uint32_t dist[kDistSymbols];
};

// Estimated bits of each literal and match, from the previous block's codes: what lets the
// matcher turn down matches that cost more than the literals they replace (short matches far
// back are common in photos and lose to the literals' short codes).
struct Prices {
    uint8_t literal[256];
    uint8_t length[kMaxMatch + 1];  // length code + extra bits
    uint8_t dist[kDistSymbols];     // distance code + extra bits

    // Before any block has been coded: a literal's price from its frequency in `data`.
    void from_histogram(const uint8_t* data, size_t n) {
        uint32_t count[4][256] = {};
        count_bytes(count, data, 0, n);
        for (int b = 0; b < 256; ++b) {
            // log2(n / count), rounded up; unseen bytes get a long code's price.
            const uint64_t c = uint64_t(count[0][b]) + count[1][b] + count[2][b] + count[3][b];
            unsigned bits = 1;
            while (bits < 15 && (c << bits) < n) ++bits;
            literal[b] = static_cast<uint8_t>(c ? bits : 15);
        }
        const LengthTable& lt = length_table();
        for (unsigned len = kMinMatch; len <= kMaxMatch; ++len)
            length[len] = static_cast<uint8_t>(8 + lt.of[len].extra_bits);
        for (int s = 0; s < kDistSymbols; ++s)
            dist[s] = static_cast<uint8_t>(6 + distance_extra_bits(s));
    }

    void from_codes(const uint8_t* litlen_lens, const uint8_t* dist_lens) {
        // Symbols the previous block did not use would now get longer codes than average.
        for (int b = 0; b < 256; ++b) literal[b] = litlen_lens[b] ? litlen_lens[b] : 15;
        const LengthTable& lt = length_table();
        for (unsigned len = kMinMatch; len <= kMaxMatch; ++len) {
            const unsigned s = lt.of[len].symbol;
            length[len] = static_cast<uint8_t>((litlen_lens[s] ? litlen_lens[s] : 12) +
                                               lt.of[len].extra_bits);
        }
        for (int s = 0; s < kDistSymbols; ++s)
            dist[s] = static_cast<uint8_t>((dist_lens[s] ? dist_lens[s] : 10) +
                                           distance_extra_bits(s));
    }
};

// The first j in [i, end) where p[j, j + 3) repeats the three bytes `dist` before it (where a
// match at that distance could start), or end. Needs i >= dist bytes of history and p readable
// up to end + 16.
inline size_t next_repeat(const uint8_t* p, size_t i, size_t end, unsigned dist) {
#if defined(__SSE2__)
    for (; i < end; i += 14) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i - dist));
        const unsigned eq = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, w)));
        const unsigned starts = eq & (eq >> 1) & (eq >> 2) & 0x3fffu;
        if (starts) return std::min(end, i + trailing_zeros(starts));
    }
    return end;
#else
    for (; i < end; ++i)
        if (p[i] == p[i - dist] && p[i + 1] == p[i + 1 - dist] && p[i + 2] == p[i + 2 - dist])
            return i;
    return end;
#endif
}

constexpr unsigned kPeriodScan = 1024;  // the farthest distance nearest_repeat() looks at
constexpr unsigned kPeriodChecks = 4;   // and the most candidates it compares in full
constexpr unsigned kScanBeyond = 4096;  // it looks behind matches farther (11+ extra bits)
constexpr unsigned kScanBackoff = 256;  // bytes before a failed scan's distance is rescanned

// The smallest distance d <= kPeriodScan, d <= reach, at which p[i, i + len) repeats, or 0 if
// none of the first kPeriodChecks candidates does. Candidates are the places where four bytes
// of the match repeat, taken where they are not one value (within runs every distance would be
// a candidate). p[i - reach, i) must be readable, and p up to i + len rounded up to 16.
inline unsigned nearest_repeat(const uint8_t* p, size_t i, unsigned len, size_t reach) {
    unsigned at = 0;
    while (at + 4 < len && at < kMaxMatch / 2 && p[i + at] == p[i + at + 3]) ++at;
    const uint8_t* const anchor = p + i + at;
    unsigned checks = 0;
#if defined(__SSE2__)
    const __m128i w0 = _mm_set1_epi8(static_cast<char>(anchor[0]));
    const __m128i w1 = _mm_set1_epi8(static_cast<char>(anchor[1]));
    const __m128i w2 = _mm_set1_epi8(static_cast<char>(anchor[2]));
    const __m128i w3 = _mm_set1_epi8(static_cast<char>(anchor[3]));
    // 16 distances at a time, [d, d + 15], from the nearest; bit k of the mask is d + 15 - k.
    for (unsigned d = 1; d + 15 <= kPeriodScan && d + 15 <= reach; d += 16) {
        const uint8_t* q = anchor - (d + 15);
        auto equal = [&](int k, __m128i w) {
            return _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + k)), w);
        };
        unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(_mm_and_si128(
            _mm_and_si128(equal(0, w0), equal(1, w1)), _mm_and_si128(equal(2, w2), equal(3, w3)))));
        while (mask) {
            const unsigned k = floor_log2(mask);
            if (common_prefix(p + i, p + i - (d + 15 - k), len) == len) return d + 15 - k;
            if (++checks == kPeriodChecks) return 0;
            mask &= ~(1u << k);
        }
    }
#else
    for (unsigned d = 1; d <= kPeriodScan && d <= reach; ++d) {
        if (load32(anchor) != load32(anchor - d)) continue;
        if (common_prefix(p + i, p + i - d, len) == len) return d;
        if (++checks == kPeriodChecks) return 0;
    }
#endif
    return 0;
}

class Matcher {
   public:
    Matcher(unsigned hash_bits, uint32_t* table) : shift_(32 - hash_bits), table_(table) {}

    // Greedily splits p[0, n) into literals and matches and counts their symbols. p[-history, 0)
    // holds the stream's preceding bytes (history <= kWindow) and may be referred to; p must be
    // readable up to n + 16. `start` is p's offset in the stream, for the hash table.
    size_t tokenize(const uint8_t* p, size_t n, size_t history, uint64_t start, unsigned bpp,
                    const Prices& prices, Sequence* seqs, BlockCounts* counts) {
        const LengthTable& lt = length_table();
        unsigned near_symbol, near_extra;
        distance_code(bpp, &near_symbol, &near_extra);
        // Literals are counted in four tables (see count_bytes), merged at the end.
        uint32_t lits[4][256] = {};
        auto count_literals = [&](size_t from, size_t to) { count_bytes(lits, p, from, to); };
        size_t i = 0, run_start = 0, nseq = 0, next_probe = 0, next_near = 0;
        // Bits saved by a match at i instead of the literals it covers. Long matches always
        // win, the longer first (a byte taken as worth 8 bits); for the rest the first
        // kPricedBytes literals are priced and the remainder assumed to cost the same on
        // average, which keeps a candidate's cost bounded.
        auto saving = [&](unsigned len, unsigned ds) -> int {
            if (len >= kLongRun)
                return (1 << 20) + 8 * int(len) - prices.length[len] - prices.dist[ds];
            int covered = 0;
            for (unsigned k = 0; k < std::min(len, kPricedBytes); ++k)
                covered += prices.literal[p[i + k]];
            if (len > kPricedBytes) covered = covered * int(len) / int(kPricedBytes);
            return covered - prices.length[len] - prices.dist[ds];
        };
        size_t next_period = 0, next_scan = 0;
        unsigned period_seen = 0, unscanned = 0, scan_backoff = 0;
        while (i + kMinMatch <= n) {
            // The latest far distance is watched for like the previous pixel, between probes:
            // periodic content (tiles, patterns, plots) repeats it, and after a stretch of
            // literals, which thins the probes out, a period's next start is found at once.
            const unsigned period = recent_[0];
            if (period != period_seen) {
                period_seen = period;
                next_period = 0;
            }
            const bool watch =
                period_long_ && period != 0 && period != bpp && i + history >= period;
            if (i + history >= bpp) {
                // Skip, as literals, to the next position that needs a look: a probe is due or
                // a previous-pixel or previous-period repeat starts there.
                const size_t stop = std::min(next_probe, n - kMinMatch + 1);
                if (i < stop) {
                    const size_t from = std::max(i, std::min(next_near, stop));
                    size_t j = from < stop ? next_repeat(p, from, stop, bpp) : stop;
                    const size_t from_period = std::max(i, std::min(next_period, j));
                    if (watch && from_period < j) j = next_repeat(p, from_period, j, period);
                    count_literals(i, j);
                    i = j;
                    if (i + kMinMatch > n) break;
                }
            }
            const size_t left = n - i;
            const unsigned limit = left < kMaxMatch ? static_cast<unsigned>(left) : kMaxMatch;
            unsigned len = 0, dist = 0, symbol = 0;
            int best = 0;
            if (i + history >= bpp && i >= next_near) {
                const unsigned near = common_prefix(p + i, p + i - bpp, limit);
                if (near >= kMinMatch) {
                    const int s = saving(near, near_symbol);
                    if (s > 0) {
                        best = s;
                        len = near;
                        dist = bpp;
                        symbol = near_symbol;
                    } else {
                        // The rest of this run would be turned down too: do not price it again.
                        next_near = i + near - kMinMatch + 1;
                    }
                }
            }
            if (watch && i >= next_period) {
                const unsigned rep = common_prefix(p + i, p + i - period, limit);
                if (rep >= kMinMatch) {
                    const int s = saving(rep, recent_symbol_[0]);
                    if (s > best) {
                        best = s;
                        len = rep;
                        dist = period;
                        symbol = recent_symbol_[0];
                    } else if (s <= 0) {
                        next_period = i + rep - kMinMatch + 1;
                    }
                }
            }
            if (left >= kMinFarMatch && i >= next_probe) {
                const uint64_t reach = std::min<uint64_t>(kWindow, i + history);
                bool found = false;
                // Recent far distances first: periodic content repeats them, and a distance
                // used often gets a short code.
                for (int r = 0; r < kRecent && len < kNiceMatch; ++r) {
                    const unsigned d = recent_[r];
                    if (d == 0 || d > reach || p[i + len] != p[i + len - d]) continue;
                    const unsigned rep = common_prefix(p + i, p + i - d, limit);
                    if (rep >= kMinMatch && rep > len) {
                        const int s = saving(rep, recent_symbol_[r]);
                        if (s > best) {
                            best = s;
                            len = rep;
                            dist = d;
                            symbol = recent_symbol_[r];
                        }
                    }
                }
                if (len < kNiceMatch) {
                    uint32_t* slot = table_ + ((load32(p + i) * 2654435761u) >> shift_);
                    const uint32_t here = static_cast<uint32_t>(start + i);
                    // Offsets wrap at 2^32, so a stale slot can name any distance; checking it
                    // against the window keeps every read inside the buffer, and the
                    // comparison rejects whatever does not actually match.
                    const uint32_t d = here - *slot;
                    *slot = here;
                    if (d != 0 && d <= reach && d != bpp && p[i + len] == p[i + len - d]) {
                        const unsigned far = common_prefix(p + i, p + i - d, limit);
                        if (far >= kMinFarMatch && far > len) {
                            unsigned ds, extra;
                            distance_code(d, &ds, &extra);
                            const int s = saving(far, ds);
                            if (s > best) {
                                best = s;
                                len = far;
                                dist = d;
                                symbol = ds;
                                found = true;
                            }
                        }
                    }
                }
                // Hash probes are paid for in the bits their matches save: while they save
                // less than they cost (photos, noise) probes thin out, down to one every
                // kMaxSkip bytes. (Counting what the recent distances save too would keep
                // probing dense in photos, for little.)
                credit_ = std::min(credit_ - kProbeCost + (found ? best : 0), kMaxCredit);
                if (credit_ < 0)
                    next_probe = i + 1 + static_cast<size_t>(std::min<int64_t>(
                                             -credit_ >> kSkipShift, kMaxSkip));
            }
            if (len >= kLongRun && dist > kScanBeyond && (dist != unscanned || i >= next_scan)) {
                // A long match far back, in content that repeats: the repeat may be a short
                // period, much cheaper to code (a pattern's row repeating itself, found first in
                // an earlier row). Scans that find none back off, for that distance.
                const unsigned d = nearest_repeat(p, i, len, history + i);
                if (d) {
                    dist = d;
                    unsigned extra;
                    distance_code(d, &symbol, &extra);
                    unscanned = 0;
                } else {
                    scan_backoff = dist == unscanned ? std::min(scan_backoff + 1, 8u) : 0;
                    unscanned = dist;
                    next_scan = i + (size_t(kScanBackoff) << scan_backoff);
                }
            }
            if (len) {
                if (dist != bpp) {
                    remember(dist, symbol);
                    period_long_ = len >= kLongRun;
                }
                seqs[nseq++] = {static_cast<uint32_t>(i - run_start), static_cast<uint16_t>(len),
                                static_cast<uint16_t>(dist)};
                ++counts->litlen[lt.of[len].symbol];
                ++counts->dist[symbol];
                i += len;
                run_start = i;
            } else {
                ++lits[0][p[i]];
                ++i;
            }
        }
        count_literals(i, n);
        for (int b = 0; b < 256; ++b)
            counts->litlen[b] += lits[0][b] + lits[1][b] + lits[2][b] + lits[3][b];
        seqs[nseq++] = {static_cast<uint32_t>(n - run_start), 0, 0};
        return nseq;
    }

   private:
    static constexpr int kRecent = 4;

    // Moves `dist` to the front of the recent distances.
    void remember(unsigned dist, unsigned symbol) {
        int r = 0;
        while (r < kRecent - 1 && recent_[r] != dist) ++r;
        for (; r > 0; --r) {
            recent_[r] = recent_[r - 1];
            recent_symbol_[r] = recent_symbol_[r - 1];
        }
        recent_[0] = dist;
        recent_symbol_[0] = symbol;
    }

    unsigned shift_;
    uint32_t* table_;
    int64_t credit_ = 0;
    bool period_long_ = false;  // the latest far match was long, so its distance is watched
    unsigned recent_[kRecent] = {};  // far distances of the latest matches, newest first
    unsigned recent_symbol_[kRecent] = {};
};

// ---- Blocks. ----

constexpr uint8_t kCodeLengthOrder[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                          11, 4,  12, 3, 13, 2, 14, 1, 15};
constexpr uint8_t kCodeLengthExtra[19] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0, 0, 2, 3, 7};

inline unsigned length_extra_bits(unsigned symbol) {  // 257..285
    return symbol < 265 || symbol == 285 ? 0 : (symbol - 261) / 4;
}

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
    uint8_t dist_lens[kDistSymbols];
    int nlit, ndist;
    CodeLengthItem items[kLitLenSymbols + kDistSymbols];
    int nitems;
    uint8_t cl_lens[19];
    int ncl;
    uint64_t header_bits;  // the block type and the codes
    uint64_t bits;         // the whole block, header included
};

// Chooses the block's Huffman codes from its counts and computes its exact size.
void plan_block(const BlockCounts& bc, BlockPlan* plan) {
    uint32_t litlen[kLitLenSymbols];
    std::memcpy(litlen, bc.litlen, sizeof litlen);
    litlen[256] = 1;  // end of block
    ensure_two_used(litlen, kLitLenSymbols);
    build_lengths(litlen, kLitLenSymbols, 15, plan->litlen_lens);
    plan->nlit = kLitLenSymbols;
    while (plan->nlit > 257 && plan->litlen_lens[plan->nlit - 1] == 0) --plan->nlit;

    uint32_t dist[kDistSymbols];
    std::memcpy(dist, bc.dist, sizeof dist);
    ensure_two_used(dist, kDistSymbols);
    build_lengths(dist, kDistSymbols, 15, plan->dist_lens);
    plan->ndist = kDistSymbols;
    while (plan->ndist > 1 && plan->dist_lens[plan->ndist - 1] == 0) --plan->ndist;

    uint8_t all[kLitLenSymbols + kDistSymbols];
    std::memcpy(all, plan->litlen_lens, plan->nlit);
    std::memcpy(all + plan->nlit, plan->dist_lens, plan->ndist);
    plan->nitems = encode_code_lengths(all, plan->nlit + plan->ndist, plan->items);
    uint32_t cl_counts[19] = {};
    for (int i = 0; i < plan->nitems; ++i) ++cl_counts[plan->items[i].symbol];
    ensure_two_used(cl_counts, 19);
    build_lengths(cl_counts, 19, 7, plan->cl_lens);
    plan->ncl = 19;
    while (plan->ncl > 4 && plan->cl_lens[kCodeLengthOrder[plan->ncl - 1]] == 0) --plan->ncl;

    uint64_t bits = 3 + 5 + 5 + 4 + 3 * uint64_t(plan->ncl);
    for (int i = 0; i < plan->nitems; ++i) {
        const int s = plan->items[i].symbol;
        bits += plan->cl_lens[s] + kCodeLengthExtra[s];
    }
    plan->header_bits = bits;
    for (int s = 0; s < kLitLenSymbols; ++s) {
        const unsigned extra = s > 256 ? length_extra_bits(s) : 0;
        bits += uint64_t(bc.litlen[s]) * (plan->litlen_lens[s] + extra);
    }
    for (int s = 0; s < kDistSymbols; ++s)
        bits += uint64_t(bc.dist[s]) * (plan->dist_lens[s] + distance_extra_bits(s));
    bits += plan->litlen_lens[256];
    plan->bits = bits;
}

// About log2(x) for x >= 1 (within 0.01): enough to compare ways of coding a block.
inline float approx_log2(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    const float exponent = float(int(u >> 23) - 127);
    u = (u & 0x7fffffu) | 0x3f800000u;  // the mantissa, as a float in [1, 2)
    float m;
    std::memcpy(&m, &u, 4);
    return exponent + (2.0f - m / 3.0f) * m - 5.0f / 3.0f;  // exact at 1 and 2
}

// The Shannon bound on coding these symbols, in bits, extra bits left out: within about 1% of
// what a Huffman code gets for blocks of thousands of symbols, for a fraction of the cost.
float entropy_bits(const BlockCounts& bc) {
    float sum_clogc = 0.0f, total[2] = {0.0f, 0.0f};
    for (int s = 0; s < kLitLenSymbols; ++s) {
        if (!bc.litlen[s]) continue;
        const float c = float(bc.litlen[s]);
        total[0] += c;
        sum_clogc += c * approx_log2(c);
    }
    for (int s = 0; s < kDistSymbols; ++s) {
        if (!bc.dist[s]) continue;
        const float c = float(bc.dist[s]);
        total[1] += c;
        sum_clogc += c * approx_log2(c);
    }
    float bits = -sum_clogc;
    for (float t : total)
        if (t > 0.0f) bits += t * approx_log2(t);
    return bits;
}

// Writes a block with the plan's Huffman codes. Literals are read from `data`: interleaved with
// the bytes the matches cover (a slice as tokenized), or, with kLiteralsApart, one after another
// (gathered from several slices, whose sequences each end in a match of length 0).
template <bool kLiteralsApart>
void write_dynamic_block(const BlockPlan& plan, const uint8_t* data, const Sequence* seqs,
                         size_t nseq, bool final, BitWriter* out) {
    const LengthTable& lt = length_table();
    uint32_t litlen_codes[kLitLenSymbols], dist_codes[kDistSymbols], cl_codes[19];
    build_codes(plan.litlen_lens, kLitLenSymbols, litlen_codes);
    build_codes(plan.dist_lens, kDistSymbols, dist_codes);
    build_codes(plan.cl_lens, 19, cl_codes);
    // The writer's state is kept in a local, in registers, for the whole loop.
    BitWriter bits = *out;
    BitWriter* const w = &bits;

    w->put(final ? 1u : 0u, 1);
    w->put(2, 2);  // dynamic Huffman codes
    w->put(plan.nlit - 257, 5);
    w->put(plan.ndist - 1, 5);
    w->put(plan.ncl - 4, 4);
    w->flush();
    for (int i = 0; i < plan.ncl; ++i) {
        w->put(plan.cl_lens[kCodeLengthOrder[i]], 3);
        w->flush();
    }
    for (int i = 0; i < plan.nitems; ++i) {
        const CodeLengthItem& it = plan.items[i];
        w->put(cl_codes[it.symbol], plan.cl_lens[it.symbol]);
        w->put(it.extra, kCodeLengthExtra[it.symbol]);
        w->flush();
    }

    // Each literal's code in the high bits and its length (at most 15) in the low 4.
    uint32_t lit[256];
    for (int s = 0; s < 256; ++s) lit[s] = (litlen_codes[s] << 4) | plan.litlen_lens[s];
    for (size_t q = 0; q < nseq; ++q) {
        const Sequence& sq = seqs[q];
        // Three literals (at most 45 bits) fit beside the 7 bits a flush may leave pending.
        // They are joined before they are put, so that only one step waits on the writer.
        const uint8_t* b = data;
        const uint8_t* const lit_end = data + sq.literals;
        for (; b + 3 <= lit_end; b += 3) {
            const uint32_t x = lit[b[0]], y = lit[b[1]], z = lit[b[2]];
            const unsigned x_len = x & 15u, xy_len = x_len + (y & 15u);
            w->put(uint64_t(x >> 4) | (uint64_t(y >> 4) << x_len) | (uint64_t(z >> 4) << xy_len),
                   xy_len + (z & 15u));
            w->flush();
        }
        for (; b < lit_end; ++b) {
            w->put(lit[*b] >> 4, lit[*b] & 15u);
            w->flush();
        }
        data = lit_end;
        if (!sq.length) continue;
        // A match is at most 15 + 5 + 15 + 13 bits.
        const LengthCode& lc = lt.of[sq.length];
        w->put(litlen_codes[lc.symbol] | (uint32_t(lc.extra) << plan.litlen_lens[lc.symbol]),
               plan.litlen_lens[lc.symbol] + lc.extra_bits);
        unsigned ds, extra;
        distance_code(sq.distance, &ds, &extra);
        w->put(dist_codes[ds] | (uint64_t(extra) << plan.dist_lens[ds]),
               plan.dist_lens[ds] + distance_extra_bits(ds));
        w->flush();
        if (!kLiteralsApart) data += sq.length;
    }
    w->put(litlen_codes[256], plan.litlen_lens[256]);
    w->flush();
    *out = bits;
}

// An array kept from one image to the next by the thread that encodes them: allocated anew for
// each image, the encoder's buffers had the kernel map and clear their pages every time, about a
// tenth of the time of a 256x256 image. Arrays over kKeptBytes are let go after each image.
constexpr size_t kKeptBytes = size_t(8) << 20;

template <typename T>
class Reused {
   public:
    // At least `count` elements, contents unspecified; null when memory runs out.
    T* get(size_t count) {
        if (count > capacity_) {
            data_.reset();
            data_.reset(new (std::nothrow) T[count]);
            capacity_ = data_ ? count : 0;
        }
        return data_.get();
    }
    void trim() {
        if (capacity_ > kKeptBytes / sizeof(T)) {
            data_.reset();
            capacity_ = 0;
        }
    }

   private:
    std::unique_ptr<T[]> data_;
    size_t capacity_ = 0;
};

// Slices that compress well, gathered to be written as one block: a block's header costs about
// as much as a slice of a flat or synthetic image compresses to.
class PendingBlock {
   public:
    // Room for at least every sequence and literal of one slice of `slice_bytes` bytes.
    bool allocate(size_t slice_bytes, Reused<Sequence>* seqs, Reused<uint8_t>* lits) {
        seq_capacity_ = slice_bytes / kMinMatch + 1;
        lit_capacity_ = slice_bytes;
        seqs_ = seqs->get(seq_capacity_);
        lits_ = lits->get(lit_capacity_);
        return seqs_ && lits_;
    }

    bool empty() const { return nseq_ == 0; }

    // Whether a slice with these counts costs less in the gathered block than in a block of
    // its own with `header_bits` of codes: the block's codes are made for all it holds, so
    // appending pays as long as the symbols' statistics stay alike.
    bool worth_appending(const BlockCounts& bc, uint64_t header_bits) {
        BlockCounts merged;
        for (int s = 0; s < kLitLenSymbols; ++s)
            merged.litlen[s] = counts_.litlen[s] + bc.litlen[s];
        for (int s = 0; s < kDistSymbols; ++s) merged.dist[s] = counts_.dist[s] + bc.dist[s];
        merged_entropy_ = entropy_bits(merged);
        return merged_entropy_ <= entropy_ + entropy_bits(bc) + float(header_bits);
    }

    bool fits(size_t nseq, size_t nlit) const {
        return nseq_ + nseq <= seq_capacity_ && nlit_ + nlit <= lit_capacity_;
    }

    // After worth_appending(bc) or into an empty block.
    void append(const uint8_t* data, const Sequence* seqs, size_t nseq, const BlockCounts& bc) {
        const bool empty_before = empty();
        for (size_t q = 0; q < nseq; ++q) {
            std::memcpy(lits_ + nlit_, data, seqs[q].literals);
            nlit_ += seqs[q].literals;
            data += seqs[q].literals + seqs[q].length;
        }
        std::memcpy(seqs_ + nseq_, seqs, nseq * sizeof(Sequence));
        nseq_ += nseq;
        for (int s = 0; s < kLitLenSymbols; ++s) counts_.litlen[s] += bc.litlen[s];
        for (int s = 0; s < kDistSymbols; ++s) counts_.dist[s] += bc.dist[s];
        entropy_ = empty_before ? entropy_bits(bc) : merged_entropy_;
    }

    void write(bool final, BitWriter* w) {
        if (empty()) return;
        BlockPlan plan;
        plan_block(counts_, &plan);
        write_dynamic_block<true>(plan, lits_, seqs_, nseq_, final, w);
        nseq_ = nlit_ = 0;
        counts_ = {};
    }

   private:
    Sequence* seqs_ = nullptr;
    uint8_t* lits_ = nullptr;
    size_t seq_capacity_ = 0, lit_capacity_ = 0, nseq_ = 0, nlit_ = 0;
    BlockCounts counts_ = {};
    float entropy_ = 0.0f;         // of counts_
    float merged_entropy_ = 0.0f;  // of counts_ and the slice worth_appending() saw
};

// What encode_png() allocates, kept per thread (see Reused).
struct Workspace {
    Reused<uint8_t> window, zeros, interleaved, png, pending_literals;
    Reused<Sequence> seqs, pending_seqs;
    Reused<uint32_t> table;
    void trim() {
        window.trim(), zeros.trim(), interleaved.trim(), png.trim(), pending_literals.trim();
        seqs.trim(), pending_seqs.trim(), table.trim();
    }
};

uint64_t stored_bits(size_t n) {
    // Per piece: 3 header bits, padding to a byte (at most 7 + 7 with what was pending), LEN and
    // NLEN.
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

// encode_png() of HWC pixels (planes == 0) or of that many CHW planes (encode_png_planes()).
bool encode(const uint8_t* pixels, uint32_t planes, uint32_t height, uint32_t width,
            uint32_t channels, std::string* out) {
    static const uint8_t kColorType[5] = {0, 0, 4, 2, 6};
    if (!pixels || !out || height == 0 || width == 0 || height > kMaxDimension ||
        width > kMaxDimension || channels < 1 || channels > 4)
        return false;
    const unsigned bpp = channels;
    const uint64_t row_bytes = uint64_t(width) * bpp;  // < 2^33
    const uint64_t stride = row_bytes + 1;             // filter byte + row
    // Everything below is sized from stride * height; refuse what the address space cannot hold
    // with room to spare, so that no later sum can overflow.
    if (stride > (uint64_t(SIZE_MAX) >> 4) / height) return false;
    const uint64_t raw = stride * height;

    const uint64_t rows_per_block = std::max<uint64_t>(1, kBlockTarget / stride);
    const uint64_t block_bytes = rows_per_block * stride;
    const uint64_t nblocks = (height + rows_per_block - 1) / rows_per_block;
    // A slice coded on its own is never larger than stored: its data plus at most 8 bytes per
    // stored piece of up to 64 KiB. Slices gathered into one block get codes for all of them,
    // which in theory can cost more than that: the bound is then what any Huffman-coded block
    // can take, 2 bytes per byte (a literal's code has at most 15 bits, a match of 3 bytes or
    // more at most 48) and a header of under 1 KiB for each block (at most two per slice).
    // Only the bytes written are ever touched.
    const uint64_t slices = nblocks * ((block_bytes + kMaxSlice - 1) / kMaxSlice);
    const uint64_t zlib_bound = 2 + 2 * raw + 2048 * (slices + 1) + 4;
    const uint64_t idat_chunks = zlib_bound / kMaxChunk + 1;
    const uint64_t bound = 8 + 25 + 12 * idat_chunks + zlib_bound + 12 + 16;  // 16: write slack

    const size_t n = static_cast<size_t>(row_bytes);
    // Small images get a small hash table: clearing it is a fixed cost per image.
    unsigned hash_bits = 10;
    while (hash_bits < 15 && (uint64_t(1) << (hash_bits + 3)) < raw) ++hash_bits;
    static thread_local Workspace space;
    const struct Trim {
        Workspace& space;
        ~Trim() { space.trim(); }
    } trim{space};
    const size_t slice_bytes = static_cast<size_t>(std::min<uint64_t>(block_bytes, kMaxSlice));
    uint8_t* const window = space.window.get(kWindow + static_cast<size_t>(block_bytes) + 16);
    Sequence* const seqs = space.seqs.get(slice_bytes / kMinMatch + 1);
    uint8_t* const zeros = space.zeros.get(n);  // the row above the first
    // CHW planes are interleaved a row at a time, into two buffers: the row and the one above.
    uint8_t* const interleaved = planes ? space.interleaved.get(2 * n) : zeros;
    uint32_t* const table = space.table.get(size_t(1) << hash_bits);
    PendingBlock pending;
    // The PNG is built in a buffer of its largest size and then copied out: resizing `out` to
    // that size would write all of it, ten or a hundred times the PNG itself for most images.
    uint8_t* const base = space.png.get(static_cast<size_t>(bound));
    if (!window || !seqs || !zeros || !interleaved || !table || !base ||
        !pending.allocate(slice_bytes, &space.pending_seqs, &space.pending_literals))
        return false;
    std::memset(zeros, 0, n);
    std::memset(table, 0, sizeof(uint32_t) << hash_bits);
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

    uint8_t* const idat = base + 33;
    uint8_t* const zstart = idat + 8;
    zstart[0] = 0x78;  // deflate with a 32 KiB window
    zstart[1] = 0x01;  // no dictionary, "fastest"; 0x7801 is a multiple of 31 as required
    BitWriter w(zstart + 2);
    Matcher matcher(hash_bits, table);
    Prices prices;
    uint32_t adler = 1;
    size_t history = 0;  // bytes of earlier blocks kept at the front of `window`
    uint64_t offset = 0;  // of the current slice in the stream
    const uint8_t* prev = zeros;  // the row above the next
    for (uint64_t y0 = 0; y0 < height; y0 += rows_per_block) {
        const uint64_t y1 = std::min<uint64_t>(height, y0 + rows_per_block);
        uint8_t* const data = window + history;
        const size_t len = static_cast<size_t>((y1 - y0) * stride);
        size_t summed = 0;  // bytes of `data` already in the Adler-32
        for (uint64_t y = y0; y < y1; ++y) {
            const uint8_t* cur;
            if (planes) {
                uint8_t* const row = interleaved + (y & 1) * n;
                interleave_row(pixels, size_t(height) * width, planes, y, width, row);
                cur = row;
            } else {
                cur = pixels + y * row_bytes;
            }
            const size_t at = static_cast<size_t>((y - y0) * stride);
            if (filter_row(cur, prev, n, bpp, data + at)) {
                adler = update_adler(adler, data + summed, at - summed);
                adler = update_adler_zero_row(adler, data[at], n);
                summed = at + static_cast<size_t>(stride);
            }
            prev = cur;
        }
        adler = update_adler(adler, data + summed, len - summed);
        std::memset(data + len, 0, 16);  // the matcher reads whole words

        // A group is one row when rows are long; it is then deflated in slices, which bounds
        // the sequence buffer and keeps every count within 32 bits.
        for (size_t at = 0; at < len;) {
            const size_t part = std::min(len - at, kMaxSlice);
            const uint8_t* const slice = data + at;
            // Literal prices for the first slice from a sample of its bytes: counting all of a
            // slice of one repeated value is slow (every count waits on the last), and a
            // sample prices literals as well.
            if (offset == 0) prices.from_histogram(slice, std::min(part, kPriceSample));
            BlockCounts counts = {};
            const size_t nseq = matcher.tokenize(slice, part, std::min(kWindow, history + at),
                                                 offset, bpp, prices, seqs, &counts);
            BlockPlan plan;
            plan_block(counts, &plan);
            prices.from_codes(plan.litlen_lens, plan.dist_lens);
            at += part;
            offset += part;
            const bool final = y1 == height && at == len;
            size_t nlit = 0;
            for (size_t q = 0; q < nseq; ++q) nlit += seqs[q].literals;
            // Under one bit per byte a slice is gathered with its neighbours into one block,
            // unless its symbols differ enough from theirs to pay for a block of its own.
            if (plan.bits <= part) {
                if (!pending.empty() && (!pending.fits(nseq, nlit) ||
                                         !pending.worth_appending(counts, plan.header_bits)))
                    pending.write(false, &w);
                pending.append(slice, seqs, nseq, counts);
                if (final) pending.write(true, &w);
            } else {
                pending.write(false, &w);
                if (plan.bits < stored_bits(part))
                    write_dynamic_block<false>(plan, slice, seqs, nseq, final, &w);
                else
                    write_stored(slice, part, final, &w);
            }
        }

        const size_t keep = std::min(kWindow, history + len);
        std::memmove(window, data + len - keep, keep);
        history = keep;
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
        end = p;
    }
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
