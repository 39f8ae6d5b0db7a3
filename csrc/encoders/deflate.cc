// See deflate.h. Bytes become tokens in Matcher::tokenize, tokens become bits in
// write_dynamic_block and write_stored; DeflateEncoder::add_slice chooses between them.
#include "encoders/deflate.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "encoders/reused.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace fasttb {
namespace {

using deflate::kMaxSlice;
using deflate::kWindow;
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
    //
    // At each position that needs a look, the candidates are tried in turn, each keeping the
    // match that saves the most bits so far: the previous pixel, the watched period, the recent
    // distances and one hash probe; a long match far back is then moved to a short period that
    // repeats it, if there is one.
    size_t tokenize(const uint8_t* p, size_t n, size_t history, uint64_t start, unsigned bpp,
                    const Prices& prices, Sequence* seqs, BlockCounts* counts) {
        unsigned near_symbol, near_extra;
        distance_code(bpp, &near_symbol, &near_extra);
        Scan s{p, n, history, start, bpp, prices, length_table(), near_symbol};
        while (s.i + kMinMatch <= n) {
            watch_period(s);
            if (!skip_literals(s)) break;
            const size_t left = n - s.i;
            s.limit = left < kMaxMatch ? static_cast<unsigned>(left) : kMaxMatch;
            Match m;
            try_previous_pixel(s, m);
            try_period(s, m);
            if (left >= kMinFarMatch && s.i >= s.next_probe) {
                const uint64_t reach = std::min<uint64_t>(kWindow, s.i + history);
                try_recent_distances(s, m, reach);
                const bool found = try_hash_probe(s, m, reach);
                pay_for_probe(s, found, m.saving);
            }
            prefer_short_period(s, m);
            take(s, m, seqs, counts);
        }
        count_bytes(s.lits, p, s.i, n);
        for (int b = 0; b < 256; ++b)
            counts->litlen[b] += s.lits[0][b] + s.lits[1][b] + s.lits[2][b] + s.lits[3][b];
        seqs[s.nseq++] = {static_cast<uint32_t>(n - s.run_start), 0, 0};
        return s.nseq;
    }

   private:
    static constexpr int kRecent = 4;

    // Where tokenize() stands in its input, and what it has learnt to skip.
    struct Scan {
        const uint8_t* p;
        size_t n;
        size_t history;
        uint64_t start;
        unsigned bpp;
        const Prices& prices;
        const LengthTable& lt;
        unsigned near_symbol;  // of the distance bpp
        size_t i = 0, run_start = 0, nseq = 0;
        // Positions before which a candidate is not looked at again.
        size_t next_probe = 0, next_near = 0, next_period = 0, next_scan = 0;
        unsigned period = 0, period_seen = 0;  // the watched distance
        bool watch = false;                    // and whether it is watched at i
        unsigned unscanned = 0, scan_backoff = 0;
        unsigned limit = 0;  // the longest match at i
        // Literals are counted in four tables (see count_bytes), merged at the end.
        uint32_t lits[4][256] = {};
    };

    // The best match found so far at a position: none while len is 0.
    struct Match {
        unsigned len = 0, dist = 0, symbol = 0;
        int saving = 0;
        void set(unsigned l, unsigned d, unsigned sym, int bits) {
            len = l;
            dist = d;
            symbol = sym;
            saving = bits;
        }
    };

    // Bits saved by a match at s.i instead of the literals it covers. Long matches always win,
    // the longer first (a byte taken as worth 8 bits); for the rest the first kPricedBytes
    // literals are priced and the remainder assumed to cost the same on average, which keeps a
    // candidate's cost bounded.
    static int saving(const Scan& s, unsigned len, unsigned ds) {
        if (len >= kLongRun)
            return (1 << 20) + 8 * int(len) - s.prices.length[len] - s.prices.dist[ds];
        int covered = 0;
        for (unsigned k = 0; k < std::min(len, kPricedBytes); ++k)
            covered += s.prices.literal[s.p[s.i + k]];
        if (len > kPricedBytes) covered = covered * int(len) / int(kPricedBytes);
        return covered - s.prices.length[len] - s.prices.dist[ds];
    }

    // The latest far distance is watched for like the previous pixel, between probes: periodic
    // content (tiles, patterns, plots) repeats it, and after a stretch of literals, which thins
    // the probes out, a period's next start is found at once.
    void watch_period(Scan& s) const {
        s.period = recent_[0];
        if (s.period != s.period_seen) {
            s.period_seen = s.period;
            s.next_period = 0;
        }
        s.watch = period_long_ && s.period != 0 && s.period != s.bpp && s.i + s.history >= s.period;
    }

    // Skips, as literals, to the next position that needs a look: a probe is due or a
    // previous-pixel or previous-period repeat starts there. False when too few bytes are left
    // for a match.
    static bool skip_literals(Scan& s) {
        if (s.i + s.history < s.bpp) return true;
        const size_t stop = std::min(s.next_probe, s.n - kMinMatch + 1);
        if (s.i >= stop) return true;
        const size_t from = std::max(s.i, std::min(s.next_near, stop));
        size_t j = from < stop ? next_repeat(s.p, from, stop, s.bpp) : stop;
        const size_t from_period = std::max(s.i, std::min(s.next_period, j));
        if (s.watch && from_period < j) j = next_repeat(s.p, from_period, j, s.period);
        count_bytes(s.lits, s.p, s.i, j);
        s.i = j;
        return s.i + kMinMatch <= s.n;
    }

    // Candidate: a repeat of the previous pixel (distance bpp).
    static void try_previous_pixel(Scan& s, Match& m) {
        if (s.i + s.history < s.bpp || s.i < s.next_near) return;
        const unsigned near = common_prefix(s.p + s.i, s.p + s.i - s.bpp, s.limit);
        if (near < kMinMatch) return;
        const int bits = saving(s, near, s.near_symbol);
        if (bits > 0) {
            m.set(near, s.bpp, s.near_symbol, bits);
        } else {
            // The rest of this run would be turned down too: do not price it again.
            s.next_near = s.i + near - kMinMatch + 1;
        }
    }

    // Candidate: a repeat of the watched period.
    void try_period(Scan& s, Match& m) const {
        if (!s.watch || s.i < s.next_period) return;
        const unsigned rep = common_prefix(s.p + s.i, s.p + s.i - s.period, s.limit);
        if (rep < kMinMatch) return;
        const int bits = saving(s, rep, recent_symbol_[0]);
        if (bits > m.saving)
            m.set(rep, s.period, recent_symbol_[0], bits);
        else if (bits <= 0)
            s.next_period = s.i + rep - kMinMatch + 1;
    }

    // Candidate: the recent far distances, tried before the hash: periodic content repeats
    // them, and a distance used often gets a short code.
    void try_recent_distances(const Scan& s, Match& m, uint64_t reach) const {
        for (int r = 0; r < kRecent && m.len < kNiceMatch; ++r) {
            const unsigned d = recent_[r];
            if (d == 0 || d > reach || s.p[s.i + m.len] != s.p[s.i + m.len - d]) continue;
            const unsigned rep = common_prefix(s.p + s.i, s.p + s.i - d, s.limit);
            if (rep >= kMinMatch && rep > m.len) {
                const int bits = saving(s, rep, recent_symbol_[r]);
                if (bits > m.saving) m.set(rep, d, recent_symbol_[r], bits);
            }
        }
    }

    // Candidate: one hash probe (and the table updated to point here). True when it gave the
    // best match.
    bool try_hash_probe(const Scan& s, Match& m, uint64_t reach) {
        if (m.len >= kNiceMatch) return false;
        uint32_t* slot = table_ + ((load32(s.p + s.i) * 2654435761u) >> shift_);
        const uint32_t here = static_cast<uint32_t>(s.start + s.i);
        // Offsets wrap at 2^32, so a stale slot can name any distance; checking it against the
        // window keeps every read inside the buffer, and the comparison rejects whatever does
        // not actually match.
        const uint32_t d = here - *slot;
        *slot = here;
        if (d == 0 || d > reach || d == s.bpp || s.p[s.i + m.len] != s.p[s.i + m.len - d])
            return false;
        const unsigned far = common_prefix(s.p + s.i, s.p + s.i - d, s.limit);
        if (far < kMinFarMatch || far <= m.len) return false;
        unsigned ds, extra;
        distance_code(d, &ds, &extra);
        const int bits = saving(s, far, ds);
        if (bits <= m.saving) return false;
        m.set(far, d, ds, bits);
        return true;
    }

    // Hash probes are paid for in the bits their matches save: while they save less than they
    // cost (photos, noise) probes thin out, down to one every kMaxSkip bytes. (Counting what the
    // recent distances save too would keep probing dense in photos, for little.)
    void pay_for_probe(Scan& s, bool found, int best) {
        credit_ = std::min(credit_ - kProbeCost + (found ? best : 0), kMaxCredit);
        if (credit_ < 0)
            s.next_probe =
                s.i + 1 + static_cast<size_t>(std::min<int64_t>(-credit_ >> kSkipShift, kMaxSkip));
    }

    // A long match far back, in content that repeats: the repeat may be a short period, much
    // cheaper to code (a pattern's row repeating itself, found first in an earlier row). Scans
    // that find none back off, for that distance.
    static void prefer_short_period(Scan& s, Match& m) {
        if (m.len < kLongRun || m.dist <= kScanBeyond || (m.dist == s.unscanned && s.i < s.next_scan))
            return;
        const unsigned d = nearest_repeat(s.p, s.i, m.len, s.history + s.i);
        if (d) {
            m.dist = d;
            unsigned extra;
            distance_code(d, &m.symbol, &extra);
            s.unscanned = 0;
        } else {
            s.scan_backoff = m.dist == s.unscanned ? std::min(s.scan_backoff + 1, 8u) : 0;
            s.unscanned = m.dist;
            s.next_scan = s.i + (size_t(kScanBackoff) << s.scan_backoff);
        }
    }

    // Takes the match at s.i, or one literal when there is none.
    void take(Scan& s, const Match& m, Sequence* seqs, BlockCounts* counts) {
        if (m.len) {
            if (m.dist != s.bpp) {
                remember(m.dist, m.symbol);
                period_long_ = m.len >= kLongRun;
            }
            seqs[s.nseq++] = {static_cast<uint32_t>(s.i - s.run_start), static_cast<uint16_t>(m.len),
                              static_cast<uint16_t>(m.dist)};
            ++counts->litlen[s.lt.of[m.len].symbol];
            ++counts->dist[m.symbol];
            s.i += m.len;
            s.run_start = s.i;
        } else {
            ++s.lits[0][s.p[s.i]];
            ++s.i;
        }
    }

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
}  // namespace

struct DeflateEncoder::State {
    // Kept per thread (see reused.h).
    Reused<Sequence> seqs, pending_seqs;
    Reused<uint8_t> pending_literals;
    Reused<uint32_t> table;
    // The stream's.
    BitWriter w{nullptr};
    Matcher matcher{10, nullptr};
    Prices prices;
    PendingBlock pending;
    Sequence* slice_seqs = nullptr;
    uint64_t offset = 0;  // of the next slice in the stream

    void trim() {
        pending_literals.trim();
        seqs.trim(), pending_seqs.trim(), table.trim();
    }
};

DeflateEncoder::DeflateEncoder() {
    static thread_local State state;
    s_ = &state;
}

DeflateEncoder::~DeflateEncoder() { s_->trim(); }

bool DeflateEncoder::start(uint8_t* out, uint64_t total_bytes, size_t max_slice) {
    State& s = *s_;
    // Small images get a small hash table: clearing it is a fixed cost per image.
    unsigned hash_bits = 10;
    while (hash_bits < 15 && (uint64_t(1) << (hash_bits + 3)) < total_bytes) ++hash_bits;
    s.slice_seqs = s.seqs.get(max_slice / kMinMatch + 1);
    uint32_t* const table = s.table.get(size_t(1) << hash_bits);
    s.pending = PendingBlock();
    if (!s.slice_seqs || !table ||
        !s.pending.allocate(max_slice, &s.pending_seqs, &s.pending_literals))
        return false;
    std::memset(table, 0, sizeof(uint32_t) << hash_bits);
    s.w = BitWriter(out);
    s.matcher = Matcher(hash_bits, table);
    s.offset = 0;
    return true;
}

void DeflateEncoder::add_slice(const uint8_t* slice, size_t part, size_t history, unsigned unit,
                               bool final) {
    State& s = *s_;
    Sequence* const seqs = s.slice_seqs;
    // Literal prices for the first slice from a sample of its bytes: counting all of a slice of
    // one repeated value is slow (every count waits on the last), and a sample prices literals
    // as well.
    if (s.offset == 0) s.prices.from_histogram(slice, std::min(part, kPriceSample));
    BlockCounts counts = {};
    // The matcher works on a copy on the stack: kept in the thread's state, its fields could
    // alias the counts it writes, and the compiler would reload them at every step.
    Matcher matcher = s.matcher;
    const size_t nseq = matcher.tokenize(slice, part, history, s.offset, unit, s.prices, seqs, &counts);
    s.matcher = matcher;
    BlockPlan plan;
    plan_block(counts, &plan);
    s.prices.from_codes(plan.litlen_lens, plan.dist_lens);
    s.offset += part;
    size_t nlit = 0;
    for (size_t q = 0; q < nseq; ++q) nlit += seqs[q].literals;
    // Under one bit per byte a slice is gathered with its neighbours into one block, unless its
    // symbols differ enough from theirs to pay for a block of its own.
    if (plan.bits <= part) {
        if (!s.pending.empty() &&
            (!s.pending.fits(nseq, nlit) || !s.pending.worth_appending(counts, plan.header_bits)))
            s.pending.write(false, &s.w);
        s.pending.append(slice, seqs, nseq, counts);
        if (final) s.pending.write(true, &s.w);
    } else {
        s.pending.write(false, &s.w);
        if (plan.bits < stored_bits(part))
            write_dynamic_block<false>(plan, slice, seqs, nseq, final, &s.w);
        else
            write_stored(slice, part, final, &s.w);
    }
}

uint8_t* DeflateEncoder::finish() {
    s_->w.align();
    return s_->w.pos();
}

}  // namespace fasttb
