// Native add_histogram(bins="tensorflow"): bucket counts, trimming, max_bins merging and the
// min/max/num/sum/sum_squares statistics, equal to what the stock writer computes with numpy
// (SPEC §4). It runs on the worker thread, so it touches no Python object and throws nothing
// (only allocation failure can throw).
#include "histogram.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FASTTB_HISTOGRAM_AVX2 1
#endif

namespace fasttb {

size_t dtype_size(DType t) {
    switch (t) {
        case DType::f16: case DType::i16: case DType::u16: return 2;
        case DType::f32: case DType::i32: case DType::u32: return 4;
        case DType::f64: case DType::i64: case DType::u64: return 8;
        case DType::i8: case DType::u8: case DType::boolean: return 1;
    }
    return 1;
}

namespace {

constexpr size_t kNumPositive = 774;
constexpr size_t kNumEdges = 2 * kNumPositive + 1;
constexpr size_t kNumBins = kNumEdges - 1;

// Bucketing works on "extended" bins so that out-of-range values need no branch: extended bin 0
// takes everything below the first edge (and negative NaNs), extended bins 1..1548 are the real
// bins 0..1547, extended bin 1549 takes everything above the last edge (and positive NaNs). The
// real last bin is closed, so its extended bin ends just after the last edge.
constexpr size_t kNumExtBins = kNumBins + 2;
constexpr size_t kCountStride = 1552;  // kNumExtBins rounded up to a whole number of cache lines
static_assert(kCountStride >= kNumExtBins, "count rows must hold every extended bin");

constexpr uint64_t kSignBit = uint64_t{1} << 63;
constexpr int kCellShift = 48;  // sign, exponent and the top 4 mantissa bits select a cell
constexpr size_t kNumCells = size_t{1} << (64 - kCellShift);

inline uint64_t bits_of(double x) {
    uint64_t b;
    std::memcpy(&b, &x, sizeof b);
    return b;
}

inline double double_from_bits(uint64_t b) {
    double x;
    std::memcpy(&x, &b, sizeof x);
    return x;
}

// Unsigned integers ordered like the doubles they come from (negatives reversed below
// positives), so that a range of keys is an interval of values on either side of zero.
inline uint64_t order_key(uint64_t b) {
    const uint64_t negative = uint64_t{0} - (b >> 63);
    return b ^ (negative | kSignBit);
}

inline uint64_t key_to_bits(uint64_t key) {
    return (key & kSignBit) ? (key ^ kSignBit) : ~key;
}

struct Tables {
    double edges[kNumEdges];
    // ext_lower[k] is the smallest value of extended bin k (k >= 1); ext_lower[kNumExtBins] is a
    // NaN so that "x >= ext_lower[1550]" is never true.
    double ext_lower[kNumExtBins + 1];
    // Extended bin of the smallest value in each cell of 2^48 consecutive keys. A cell spans a
    // magnitude ratio of at most 1 + 1/16 < 1.1, so it holds at most one bin boundary and
    // one comparison with ext_lower finishes the job; no search per value.
    uint16_t cell_first_bin[kNumCells];
};

size_t ext_bin_by_search(const Tables& t, double x) {
    if (std::isnan(x)) return std::signbit(x) ? 0 : kNumExtBins - 1;
    if (x < t.ext_lower[1]) return 0;
    if (x >= t.ext_lower[kNumExtBins - 1]) return kNumExtBins - 1;
    const double* first = t.ext_lower + 1;
    const double* last = t.ext_lower + kNumExtBins - 1;
    return static_cast<size_t>(std::upper_bound(first, last, x) - t.ext_lower) - 1;
}

void fill_tables(Tables& t) {
    // Repeated multiplication, not 1e-12 * 1.1^k: the closed form differs in the last bit for
    // most edges (SPEC §4.1).
    double pos[kNumPositive];
    double v = 1e-12;
    for (size_t k = 0; k < kNumPositive; ++k) {
        pos[k] = v;
        v *= 1.1;
    }
    for (size_t k = 0; k < kNumPositive; ++k) {
        t.edges[k] = -pos[kNumPositive - 1 - k];
        t.edges[kNumPositive + 1 + k] = pos[k];
    }
    t.edges[kNumPositive] = 0.0;

    t.ext_lower[0] = -std::numeric_limits<double>::infinity();
    for (size_t k = 1; k < kNumExtBins - 1; ++k) t.ext_lower[k] = t.edges[k - 1];
    t.ext_lower[kNumExtBins - 1] =
        std::nextafter(t.edges[kNumEdges - 1], std::numeric_limits<double>::infinity());
    t.ext_lower[kNumExtBins] = std::numeric_limits<double>::quiet_NaN();

    for (size_t c = 0; c < kNumCells; ++c) {
        const double first = double_from_bits(key_to_bits(uint64_t{c} << kCellShift));
        t.cell_first_bin[c] = static_cast<uint16_t>(ext_bin_by_search(t, first));
    }
}

const Tables& tables() {
    // Zero-initialised static storage (no copy through the stack), filled once under the
    // thread-safe initialisation of `filled`.
    static Tables t;
    static const bool filled = (fill_tables(t), true);
    (void)filled;
    return t;
}

inline size_t ext_bin(const Tables& t, double x) {
    const size_t c = t.cell_first_bin[order_key(bits_of(x)) >> kCellShift];
    return c + (x >= t.ext_lower[c + 1]);
}

// ---- element conversion (numpy's astype(float64) rules) ----

struct Half {
    uint16_t bits;
};

inline double half_to_double(uint16_t h) {
    const uint64_t sign = static_cast<uint64_t>(h >> 15) << 63;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint64_t mant = h & 0x3ff;
    if (exp == 0) {
        // Subnormal halves are mant * 2^-24, exactly representable.
        const double m = static_cast<double>(mant) * 0x1p-24;
        return sign ? -m : m;
    }
    const uint64_t dexp = exp == 0x1f ? 0x7ff : exp - 15 + 1023;
    return double_from_bits(sign | (dexp << 52) | (mant << 42));
}

// memcpy loads keep unaligned caller buffers defined behaviour; compilers emit plain loads.
template <class T>
inline T load(const unsigned char* p, size_t i) {
    T v;
    std::memcpy(&v, p + i * sizeof(T), sizeof(T));
    return v;
}

template <class T>
inline double to_double(const unsigned char* p, size_t i) {
    return static_cast<double>(load<T>(p, i));
}

template <>
inline double to_double<Half>(const unsigned char* p, size_t i) {
    return half_to_double(load<uint16_t>(p, i));
}

// numpy casts any nonzero bool byte to 1.0.
template <>
inline double to_double<bool>(const unsigned char* p, size_t i) {
    return p[i] != 0 ? 1.0 : 0.0;
}

// ---- numpy's pairwise summation (SPEC §4.4) ----

double pairwise_sum(const double* a, size_t n) {
    if (n < 8) {
        double s = 0.0;
        for (size_t i = 0; i < n; ++i) s += a[i];
        return s;
    }
    if (n <= 128) {
        double r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3];
        double r4 = a[4], r5 = a[5], r6 = a[6], r7 = a[7];
        const size_t whole = n - n % 8;
        size_t i = 8;
        for (; i < whole; i += 8) {
            r0 += a[i + 0];
            r1 += a[i + 1];
            r2 += a[i + 2];
            r3 += a[i + 3];
            r4 += a[i + 4];
            r5 += a[i + 5];
            r6 += a[i + 6];
            r7 += a[i + 7];
        }
        double s = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7));
        for (; i < n; ++i) s += a[i];
        return s;
    }
    size_t m = n / 2;
    m -= m % 8;
    return pairwise_sum(a, m) + pairwise_sum(a + m, n - m);
}

// ---- one pass over the data, chunk by chunk ----

// Chunks small enough to stay in L1 while min/max, sum of squares, counting and the pairwise sum
// each run over them. Must be >= 128 so that chunks are whole subtrees of the pairwise sum.
constexpr size_t kChunk = 2048;
static_assert(kChunk >= 128, "a chunk must hold whole pairwise-sum leaves");

// uint32 counters are flushed into 64-bit totals before any of them could wrap.
constexpr size_t kFlushEvery = size_t{1} << 31;

constexpr int kCountRows = 4;

struct Work {
    const Tables* t = nullptr;
    size_t n16 = 0;  // elements before this go to the 16 FMA lanes, the rest to the serial tail
    double lanes[16] = {};
    double min = std::numeric_limits<double>::infinity();
    double max = -std::numeric_limits<double>::infinity();
    bool nan = false;
    size_t pending = 0;
    // Several rows of counters, so that runs of equal bins (common: most values land in a few
    // bins) do not wait on the previous increment's store.
    uint32_t counts[kCountRows][kCountStride] = {};
    uint64_t totals[kNumExtBins] = {};
    double buf[kChunk];
};

void flush_counts(Work& w) {
    for (size_t b = 0; b < kNumExtBins; ++b) {
        uint64_t s = 0;
        for (int r = 0; r < kCountRows; ++r) {
            s += w.counts[r][b];
            w.counts[r][b] = 0;
        }
        w.totals[b] += s;
    }
    w.pending = 0;
}

void count_bins(const double* x, size_t len, Work& w) {
    const Tables& t = *w.t;
    uint32_t* c0 = w.counts[0];
    uint32_t* c1 = w.counts[1];
    uint32_t* c2 = w.counts[2];
    uint32_t* c3 = w.counts[3];
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        const size_t b0 = ext_bin(t, x[i + 0]);
        const size_t b1 = ext_bin(t, x[i + 1]);
        const size_t b2 = ext_bin(t, x[i + 2]);
        const size_t b3 = ext_bin(t, x[i + 3]);
        ++c0[b0];
        ++c1[b1];
        ++c2[b2];
        ++c3[b3];
    }
    for (; i < len; ++i) ++c0[ext_bin(t, x[i])];
    w.pending += len;
    if (w.pending >= kFlushEvery) flush_counts(w);
}

// Elements [off, off + len) of the whole input; `x` points at element off.
inline size_t lane_count(size_t off, size_t len, size_t n16) {
    return off >= n16 ? 0 : std::min(len, n16 - off);
}

void stats_portable(const double* x, size_t off, size_t len, Work& w) {
    double lo = w.min, hi = w.max;
    bool nan = false;
    for (size_t i = 0; i < len; ++i) {
        const double v = x[i];
        nan |= v != v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    w.min = lo;
    w.max = hi;
    w.nan |= nan;
    const size_t k = lane_count(off, len, w.n16);
    for (size_t i = 0; i < k; ++i) {
        double& lane = w.lanes[(off + i) & 15];
        lane = std::fma(x[i], x[i], lane);
    }
}

#ifdef FASTTB_HISTOGRAM_AVX2
// Compiled for AVX2+FMA by attribute (the rest of the module stays baseline x86-64) and used only
// when the CPU has both. The FMA lanes are the same as OpenBLAS's Haswell ddot kernel.
__attribute__((target("avx2,fma"))) void stats_avx2(const double* x, size_t off, size_t len,
                                                    Work& w) {
    __m256d lo0 = _mm256_set1_pd(w.min), lo1 = lo0;
    __m256d hi0 = _mm256_set1_pd(w.max), hi1 = hi0;
    __m256d nan0 = _mm256_setzero_pd(), nan1 = nan0;
    size_t i = 0;
    // min_pd/max_pd return their second operand when the first is NaN: NaNs are skipped here and
    // tracked separately.
    for (; i + 8 <= len; i += 8) {
        const __m256d a = _mm256_loadu_pd(x + i);
        const __m256d b = _mm256_loadu_pd(x + i + 4);
        lo0 = _mm256_min_pd(a, lo0);
        lo1 = _mm256_min_pd(b, lo1);
        hi0 = _mm256_max_pd(a, hi0);
        hi1 = _mm256_max_pd(b, hi1);
        nan0 = _mm256_or_pd(nan0, _mm256_cmp_pd(a, a, _CMP_UNORD_Q));
        nan1 = _mm256_or_pd(nan1, _mm256_cmp_pd(b, b, _CMP_UNORD_Q));
    }
    alignas(32) double l[8], h[8];
    _mm256_store_pd(l, lo0);
    _mm256_store_pd(l + 4, lo1);
    _mm256_store_pd(h, hi0);
    _mm256_store_pd(h + 4, hi1);
    double lo = w.min, hi = w.max;
    for (int k = 0; k < 8; ++k) {
        lo = l[k] < lo ? l[k] : lo;
        hi = h[k] > hi ? h[k] : hi;
    }
    bool nan = _mm256_movemask_pd(_mm256_or_pd(nan0, nan1)) != 0;
    for (; i < len; ++i) {
        const double v = x[i];
        nan |= v != v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    w.min = lo;
    w.max = hi;
    w.nan |= nan;

    const size_t k = lane_count(off, len, w.n16);
    __m256d s0 = _mm256_loadu_pd(w.lanes), s1 = _mm256_loadu_pd(w.lanes + 4);
    __m256d s2 = _mm256_loadu_pd(w.lanes + 8), s3 = _mm256_loadu_pd(w.lanes + 12);
    size_t j = 0;
    // Chunks start on a multiple of 8, so a chunk may begin half way through a 16-lane block.
    if ((off & 15) == 8 && k >= 8) {
        const __m256d a = _mm256_loadu_pd(x), b = _mm256_loadu_pd(x + 4);
        s2 = _mm256_fmadd_pd(a, a, s2);
        s3 = _mm256_fmadd_pd(b, b, s3);
        j = 8;
    }
    for (; j + 16 <= k; j += 16) {
        const __m256d a = _mm256_loadu_pd(x + j), b = _mm256_loadu_pd(x + j + 4);
        const __m256d c = _mm256_loadu_pd(x + j + 8), d = _mm256_loadu_pd(x + j + 12);
        s0 = _mm256_fmadd_pd(a, a, s0);
        s1 = _mm256_fmadd_pd(b, b, s1);
        s2 = _mm256_fmadd_pd(c, c, s2);
        s3 = _mm256_fmadd_pd(d, d, s3);
    }
    if (j + 8 <= k) {
        const __m256d a = _mm256_loadu_pd(x + j), b = _mm256_loadu_pd(x + j + 4);
        s0 = _mm256_fmadd_pd(a, a, s0);
        s1 = _mm256_fmadd_pd(b, b, s1);
    }
    _mm256_storeu_pd(w.lanes, s0);
    _mm256_storeu_pd(w.lanes + 4, s1);
    _mm256_storeu_pd(w.lanes + 8, s2);
    _mm256_storeu_pd(w.lanes + 12, s3);
}

bool cpu_has_avx2_fma() {
    // libgcc/compiler-rt also check that the OS saves the YMM registers.
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

using StatsFn = void (*)(const double*, size_t, size_t, Work&);

StatsFn pick_stats() {
#ifdef FASTTB_HISTOGRAM_AVX2
    if (cpu_has_avx2_fma()) return stats_avx2;
#endif
    return stats_portable;
}

template <class T>
double process_chunk(const unsigned char* data, size_t off, size_t len, Work& w, StatsFn stats) {
    const double* x;
    if (std::is_same<T, double>::value &&
        reinterpret_cast<uintptr_t>(data) % alignof(double) == 0) {
        x = reinterpret_cast<const double*>(data) + off;
    } else {
        for (size_t i = 0; i < len; ++i) w.buf[i] = to_double<T>(data, off + i);
        x = w.buf;
    }
    stats(x, off, len, w);
    count_bins(x, len, w);
    return pairwise_sum(x, len);
}

// Walks the pairwise-summation tree down to chunks; the left-to-right order of the chunks keeps
// every FMA lane's additions in index order.
template <class T>
double visit(const unsigned char* data, size_t off, size_t n, Work& w, StatsFn stats) {
    if (n <= kChunk) return process_chunk<T>(data, off, n, w, stats);
    size_t m = n / 2;
    m -= m % 8;
    const double left = visit<T>(data, off, m, w, stats);
    return left + visit<T>(data, off + m, n - m, w, stats);
}

// The tail after the 16 lanes is added as a separately rounded product and sum; volatile keeps
// the compiler from contracting the two into an FMA on targets where that is the default.
template <class T>
double sum_squares_tail(const unsigned char* data, size_t from, size_t n, double dot) {
    for (size_t i = from; i < n; ++i) {
        const double v = to_double<T>(data, i);
        volatile double sq = v * v;
        dot = dot + sq;
    }
    return dot;
}

double reduce_lanes(const double* l) {
    // OpenBLAS folds each 4-lane vector's upper half onto its lower half, adds the four halves
    // as (f0 + f1) + (f2 + f3), then adds the two remaining lanes.
    double f[4][2];
    for (int v = 0; v < 4; ++v) {
        f[v][0] = l[4 * v + 0] + l[4 * v + 2];
        f[v][1] = l[4 * v + 1] + l[4 * v + 3];
    }
    const double g0 = (f[0][0] + f[1][0]) + (f[2][0] + f[3][0]);
    const double g1 = (f[0][1] + f[1][1]) + (f[2][1] + f[3][1]);
    return g0 + g1;
}

void trim(const Tables& t, const uint64_t* ext_counts, int64_t max_bins, Histogram& h) {
    std::vector<uint64_t> counts(ext_counts + 1, ext_counts + 1 + kNumBins);
    std::vector<double> limits(t.edges, t.edges + kNumEdges);
    const size_t bins = kNumBins;
    if (max_bins > 0 && static_cast<uint64_t>(max_bins) < bins) {
        // The stock rule, including its quirk: the remainder is taken modulo the group size, so
        // the result can have more than max_bins bins.
        const size_t group = bins / static_cast<size_t>(max_bins);
        const size_t groups = (bins + group - 1) / group;
        std::vector<uint64_t> merged(groups, 0);
        std::vector<double> merged_limits(groups + 1);
        for (size_t b = 0; b < bins; ++b) merged[b / group] += counts[b];
        for (size_t g = 0; g < groups; ++g) merged_limits[g] = limits[g * group];
        merged_limits[groups] = limits[bins];
        counts.swap(merged);
        limits.swap(merged_limits);
    }
    size_t first = 0;
    while (first < counts.size() && counts[first] == 0) ++first;
    if (first == counts.size()) return;  // nothing countable: the caller checks this beforehand
    size_t last = counts.size() - 1;
    while (counts[last] == 0) --last;

    h.bucket_limit.assign(limits.begin() + static_cast<std::ptrdiff_t>(first),
                          limits.begin() + static_cast<std::ptrdiff_t>(last) + 2);
    h.bucket.reserve(last - first + 2);
    h.bucket.push_back(0.0);
    for (size_t b = first; b <= last; ++b) h.bucket.push_back(static_cast<double>(counts[b]));
}

template <class T>
Histogram histogram_of(const unsigned char* data, size_t n, int64_t max_bins) {
    static const StatsFn stats = pick_stats();
    const Tables& t = tables();
    std::unique_ptr<Work> w(new Work);
    w->t = &t;
    w->n16 = n - n % 16;

    Histogram h;
    // numpy starts its add-reduction from +0.0, so an all -0.0 input sums to +0.0.
    h.sum = 0.0 + visit<T>(data, 0, n, *w, stats);
    flush_counts(*w);

    const double dot = w->n16 > 0 ? reduce_lanes(w->lanes) : 0.0;
    h.sum_squares = sum_squares_tail<T>(data, w->n16, n, dot);
    if (w->nan) {
        h.min = h.max = std::numeric_limits<double>::quiet_NaN();
    } else {
        h.min = w->min;
        h.max = w->max;
    }
    h.num = static_cast<double>(n);
    trim(t, w->totals, max_bins, h);
    return h;
}

template <class T>
bool any_in_range(const unsigned char* data, size_t n) {
    const Tables& t = tables();
    const double lo = t.edges[0], hi = t.edges[kNumEdges - 1];
    for (size_t i = 0; i < n; ++i) {
        const double v = to_double<T>(data, i);
        if (v >= lo && v <= hi) return true;
    }
    return false;
}

}  // namespace

const std::vector<double>& default_edges() {
    static const std::vector<double> edges(tables().edges, tables().edges + kNumEdges);
    return edges;
}

bool has_countable_value(const void* data, size_t n, DType type) {
    const auto* p = static_cast<const unsigned char*>(data);
    switch (type) {
        case DType::f16: {
            // Every finite half lies inside the edges (|x| <= 65504).
            for (size_t i = 0; i < n; ++i) {
                if ((load<uint16_t>(p, i) & 0x7c00) != 0x7c00) return true;
            }
            return false;
        }
        case DType::f32: return any_in_range<float>(p, n);
        case DType::f64: return any_in_range<double>(p, n);
        // |int64| and uint64 are at most 1.9e19, inside the last edge 9.92e19.
        default: return n > 0;
    }
}

Histogram tensorflow_histogram(const void* data, size_t n, DType type, int64_t max_bins) {
    const auto* p = static_cast<const unsigned char*>(data);
    switch (type) {
        case DType::f16: return histogram_of<Half>(p, n, max_bins);
        case DType::f32: return histogram_of<float>(p, n, max_bins);
        case DType::f64: return histogram_of<double>(p, n, max_bins);
        case DType::i8: return histogram_of<int8_t>(p, n, max_bins);
        case DType::i16: return histogram_of<int16_t>(p, n, max_bins);
        case DType::i32: return histogram_of<int32_t>(p, n, max_bins);
        case DType::i64: return histogram_of<int64_t>(p, n, max_bins);
        case DType::u8: return histogram_of<uint8_t>(p, n, max_bins);
        case DType::u16: return histogram_of<uint16_t>(p, n, max_bins);
        case DType::u32: return histogram_of<uint32_t>(p, n, max_bins);
        case DType::u64: return histogram_of<uint64_t>(p, n, max_bins);
        case DType::boolean: return histogram_of<bool>(p, n, max_bins);
    }
    return Histogram{};
}

}  // namespace fasttb
