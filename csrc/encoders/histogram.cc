// Native add_histogram(bins="tensorflow"): bucket counts, trimming, max_bins merging and the
// min/max/num/sum/sum_squares statistics, equal to what the stock writer computes with numpy
// (SPEC §4). It runs on the worker thread, so it touches no Python object and throws nothing
// (only allocation failure can throw).
#include "encoders/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>
#include <type_traits>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FASTTB_HISTOGRAM_AVX2 1
#endif

namespace fasttb {

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

inline uint64_t bits_of(double x) {
    uint64_t b;
    std::memcpy(&b, &x, sizeof b);
    return b;
}

inline float float_from_bits(uint32_t b) {
    float x;
    std::memcpy(&x, &b, sizeof x);
    return x;
}

struct EdgeTable {
    double v[kNumEdges];
};

EdgeTable make_edges() {
    // Repeated multiplication, not 1e-12 * 1.1^k: the closed form differs in the last bit for
    // most edges (SPEC §4.1).
    double pos[kNumPositive];
    double v = 1e-12;
    for (size_t k = 0; k < kNumPositive; ++k) {
        pos[k] = v;
        v *= 1.1;
    }
    EdgeTable e;
    for (size_t k = 0; k < kNumPositive; ++k) {
        e.v[k] = -pos[kNumPositive - 1 - k];
        e.v[kNumPositive + 1 + k] = pos[k];
    }
    e.v[kNumPositive] = 0.0;
    return e;
}

const double* edges() {
    static const EdgeTable e = make_edges();
    return e.v;
}

// Each value's bin comes from one table load and one comparison, never a search. The table is
// indexed by the top 16 bits of the value (sign, exponent and the leading mantissa bits), which
// splits the line into cells whose ends differ by a ratio of at most 1 + 1/16 (doubles: 4
// mantissa bits) or 1 + 1/128 (floats: 7 mantissa bits). Bin edges are 1.1 apart, so a cell
// holds at most one of them: the table gives the extended bin of the cell's smallest value, and
// "x >= lower bound of the next extended bin" adds the 1 that is missing above that edge.
struct CellTables {
    // lower64[k] is the smallest value of extended bin k (k >= 1); lower64[kNumExtBins] is a NaN
    // so that the comparison is never true past the last extended bin.
    double lower64[kNumExtBins + 1];
    // The same bounds rounded up to floats: for a float x, x >= b exactly when x >= the smallest
    // float not below b, so float data is compared without widening.
    float lower32[kNumExtBins + 1];
    uint16_t cell64[1 << 16];  // by the top 16 bits of a double
    uint16_t cell32[1 << 16];  // by the top 16 bits of a float
};

size_t ext_bin_by_search(const double* lower, double x) {
    if (std::isnan(x)) return std::signbit(x) ? 0 : kNumExtBins - 1;
    if (x < lower[1]) return 0;
    if (x >= lower[kNumExtBins - 1]) return kNumExtBins - 1;
    return static_cast<size_t>(std::upper_bound(lower + 1, lower + kNumExtBins - 1, x) - lower) - 1;
}

void fill_cell_tables(CellTables& t) {
    constexpr double inf = std::numeric_limits<double>::infinity();
    const double* e = edges();
    t.lower64[0] = -inf;
    for (size_t k = 1; k < kNumExtBins - 1; ++k) t.lower64[k] = e[k - 1];
    t.lower64[kNumExtBins - 1] = std::nextafter(e[kNumEdges - 1], inf);
    t.lower64[kNumExtBins] = std::numeric_limits<double>::quiet_NaN();

    t.lower32[0] = -std::numeric_limits<float>::infinity();
    for (size_t k = 1; k < kNumExtBins; ++k) {
        // Every bound is below FLT_MAX in magnitude, so rounding up stays finite.
        float f = static_cast<float>(t.lower64[k]);
        if (static_cast<double>(f) < t.lower64[k]) f = std::nextafter(f, std::numeric_limits<float>::infinity());
        t.lower32[k] = f;
    }
    t.lower32[kNumExtBins] = std::numeric_limits<float>::quiet_NaN();

    // A cell's smallest value: the smallest magnitude for positive cells, the largest for
    // negative ones (all low bits set). Cells of NaNs map to the trash bins.
    for (uint32_t c = 0; c < (1u << 16); ++c) {
        uint64_t b64 = uint64_t{c} << 48;
        if (c & 0x8000) b64 |= (uint64_t{1} << 48) - 1;
        t.cell64[c] = static_cast<uint16_t>(ext_bin_by_search(t.lower64, double_from_bits(b64)));
        uint32_t b32 = c << 16;
        if (c & 0x8000) b32 |= 0xffff;
        const double first32 = static_cast<double>(float_from_bits(b32));
        t.cell32[c] = static_cast<uint16_t>(ext_bin_by_search(t.lower64, first32));
    }
}

const CellTables& cell_tables() {
    // Zero-initialised static storage (not built on the stack), filled once under the
    // thread-safe initialisation of `filled`.
    static CellTables t;
    static const bool filled = (fill_cell_tables(t), true);
    (void)filled;
    return t;
}

inline size_t bin_of(const CellTables& t, double x) {
    const size_t c = t.cell64[bits_of(x) >> 48];
    return c + (x >= t.lower64[c + 1]);
}

inline size_t bin_of(const CellTables& t, float x) {
    uint32_t b;
    std::memcpy(&b, &x, sizeof b);
    const size_t c = t.cell32[b >> 16];
    return c + (x >= t.lower32[c + 1]);
}

// ---- element conversion (numpy's astype(float64) rules) ----

struct Half {
    uint16_t bits;
};

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

// ---- one pass over the data, chunk by chunk ----

// numpy's pairwise summation (SPEC §4.4) adds leaves of at most 128 values with 8 partial sums.
constexpr size_t kPairwiseLeaf = 128;

// Chunks small enough to stay in L1 while they are counted and summed. Must be >= 128 so that
// chunks are whole subtrees of the pairwise sum.
constexpr size_t kChunk = 2048;
static_assert(kChunk >= kPairwiseLeaf, "a chunk must hold whole pairwise-sum leaves");

// uint32 counters are flushed into 64-bit totals before any of them could wrap.
constexpr size_t kFlushEvery = size_t{1} << 31;

constexpr int kCountRows = 4;

// Per-thread scratch space, reused from call to call (see work_for_this_thread).
struct Work {
    const CellTables* t = nullptr;
    const std::atomic<size_t>* filled = nullptr;  // see tensorflow_histogram
    size_t n16 = 0;  // values before this index go to the 16 FMA lanes, the rest to the tail
    // Running minima/maxima in 8 slots and the 16 sum-of-squares lanes, laid out as the AVX2
    // kernel keeps them in vectors. NaNs are skipped here (see histogram_of).
    double mins[8];
    double maxs[8];
    double lanes[16];
    size_t pending = 0;   // values counted into `counts` since the last flush
    bool flushed = false;  // whether `totals` holds anything
    // Several rows of counters, so that runs of equal bins (most values land in a few bins) do
    // not wait on the previous increment's store to the same counter. All zero between calls.
    uint32_t counts[kCountRows][kCountStride] = {};
    uint64_t totals[kNumExtBins];
    uint64_t real[kNumBins];  // final counts of the real bins, valid in the range being trimmed
    double buf[kChunk];
    uint16_t bins[kChunk];

    void start(size_t n, const std::atomic<size_t>* progress) {
        t = &cell_tables();
        filled = progress;
        n16 = n - n % 16;
        for (int k = 0; k < 8; ++k) {
            mins[k] = std::numeric_limits<double>::infinity();
            maxs[k] = -std::numeric_limits<double>::infinity();
        }
        std::fill(lanes, lanes + 16, 0.0);
        pending = 0;
        flushed = false;
    }
};

// 70 KB allocated once per thread rather than allocated and zeroed per histogram, which cost
// more than bucketing a thousand values.
Work& work_for_this_thread() {
    thread_local std::unique_ptr<Work> w(new Work);
    return *w;
}

void flush_counts(Work& w) {
    if (!w.flushed) std::fill(w.totals, w.totals + kNumExtBins, uint64_t{0});
    w.flushed = true;
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

// Moves the counts of real bins [lo, end) into w.real and leaves every counter at zero for the
// next call. Bins outside [lo, end) must have no counts, apart from the two out-of-range ones.
void collect_counts(Work& w, size_t lo, size_t end) {
    for (size_t r = 0; r < kCountRows; ++r) {
        w.counts[r][0] = 0;
        w.counts[r][kNumExtBins - 1] = 0;
    }
    if (lo >= end) return;
    // Real bin b is extended bin b + 1.
    const uint32_t* c0 = w.counts[0] + 1;
    const uint32_t* c1 = w.counts[1] + 1;
    const uint32_t* c2 = w.counts[2] + 1;
    const uint32_t* c3 = w.counts[3] + 1;
    uint64_t* real = w.real;
    for (size_t b = lo; b < end; ++b) real[b] = uint64_t{c0[b]} + c1[b] + c2[b] + c3[b];
    if (w.flushed) {
        for (size_t b = lo; b < end; ++b) real[b] += w.totals[b + 1];
    }
    for (size_t r = 0; r < kCountRows; ++r) std::fill(w.counts[r] + lo + 1, w.counts[r] + end + 1, 0u);
}

// V is double (values already widened) or float (compared as floats, see CellTables). Bins are
// computed first and counted in a second loop: interleaving the table loads with the counter
// stores made the loads wait on stores whose addresses matched modulo 4 KiB, at a cost that
// varied with the heap layout from run to run.
template <class V>
void count_bins(const unsigned char* p, size_t len, Work& w) {
    const CellTables& t = *w.t;
    uint16_t* bins = w.bins;
    size_t j = 0;
    for (; j + 4 <= len; j += 4) {
        bins[j + 0] = static_cast<uint16_t>(bin_of(t, load<V>(p, j + 0)));
        bins[j + 1] = static_cast<uint16_t>(bin_of(t, load<V>(p, j + 1)));
        bins[j + 2] = static_cast<uint16_t>(bin_of(t, load<V>(p, j + 2)));
        bins[j + 3] = static_cast<uint16_t>(bin_of(t, load<V>(p, j + 3)));
    }
    for (; j < len; ++j) bins[j] = static_cast<uint16_t>(bin_of(t, load<V>(p, j)));
    uint32_t* c0 = w.counts[0];
    uint32_t* c1 = w.counts[1];
    uint32_t* c2 = w.counts[2];
    uint32_t* c3 = w.counts[3];
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        ++c0[bins[i + 0]];
        ++c1[bins[i + 1]];
        ++c2[bins[i + 2]];
        ++c3[bins[i + 3]];
    }
    for (; i < len; ++i) ++c0[bins[i]];
    w.pending += len;
    if (w.pending >= kFlushEvery) flush_counts(w);
}

inline void min_max(double v, double& lo, double& hi) {
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
}

// Values that do not fill a group of 8: a whole input of fewer than 8 values, or the last
// n % 8 values of the input. Both lie past n16, so they never reach the FMA lanes.
template <class V>
double add_loose(const unsigned char* p, size_t from, size_t n, double s, Work& w) {
    for (size_t i = from; i < n; ++i) {
        const double v = to_double<V>(p, i);
        s += v;
        min_max(v, w.mins[0], w.maxs[0]);
    }
    return s;
}

// One leaf of the pairwise sum: values [0, n) at p, the first of which has index `at` in the
// whole input. Updates min/max and the FMA lanes and returns numpy's sum of the leaf. Groups of
// 8 start at multiples of 8, so each group feeds either lanes 0-7 or lanes 8-15.
template <class V>
double leaf_portable(const unsigned char* p, size_t n, size_t at, Work& w) {
    if (n < 8) return add_loose<V>(p, 0, n, 0.0, w);
    const size_t groups = n / 8;
    const size_t lane_groups = at >= w.n16 ? 0 : std::min(groups, (w.n16 - at) / 8);
    double r[8];
    for (size_t g = 0; g < groups; ++g) {
        double* lanes = w.lanes + ((at + 8 * g) & 8);
        for (int k = 0; k < 8; ++k) {
            const double v = to_double<V>(p, 8 * g + k);
            r[k] = g == 0 ? v : r[k] + v;
            min_max(v, w.mins[k], w.maxs[k]);
            if (g < lane_groups) lanes[k] = std::fma(v, v, lanes[k]);
        }
    }
    const double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    return add_loose<V>(p, 8 * groups, n, s, w);
}

#ifdef FASTTB_HISTOGRAM_AVX2
// Compiled for AVX2+FMA by attribute (the rest of the module stays baseline x86-64) and only
// called when the CPU has both. The same IEEE operations in the same order as leaf_portable, so
// the results are identical.

template <class V>
__attribute__((target("avx2,fma"))) inline __m256d load4(const unsigned char* p, size_t i) {
    if constexpr (std::is_same<V, float>::value) {
        return _mm256_cvtps_pd(_mm_loadu_ps(reinterpret_cast<const float*>(p + i * 4)));
    } else {
        return _mm256_loadu_pd(reinterpret_cast<const double*>(p + i * 8));
    }
}

template <class V>
__attribute__((target("avx2,fma"))) double leaf_avx2(const unsigned char* p, size_t n, size_t at,
                                                     Work& w) {
    if (n < 8) return add_loose<V>(p, 0, n, 0.0, w);
    const size_t groups = n / 8;
    const size_t lane_groups = at >= w.n16 ? 0 : std::min(groups, (w.n16 - at) / 8);
    __m256d lo0 = _mm256_loadu_pd(w.mins), lo1 = _mm256_loadu_pd(w.mins + 4);
    __m256d hi0 = _mm256_loadu_pd(w.maxs), hi1 = _mm256_loadu_pd(w.maxs + 4);
    __m256d s0 = _mm256_loadu_pd(w.lanes), s1 = _mm256_loadu_pd(w.lanes + 4);
    __m256d s2 = _mm256_loadu_pd(w.lanes + 8), s3 = _mm256_loadu_pd(w.lanes + 12);
    __m256d r0 = _mm256_setzero_pd(), r1 = r0;
    for (size_t g = 0; g < groups; ++g) {
        const __m256d a = load4<V>(p, 8 * g), b = load4<V>(p, 8 * g + 4);
        if (g == 0) {
            r0 = a;
            r1 = b;
        } else {
            r0 = _mm256_add_pd(r0, a);
            r1 = _mm256_add_pd(r1, b);
        }
        // min_pd/max_pd return their second operand when the first is NaN: NaNs are skipped.
        lo0 = _mm256_min_pd(a, lo0);
        lo1 = _mm256_min_pd(b, lo1);
        hi0 = _mm256_max_pd(a, hi0);
        hi1 = _mm256_max_pd(b, hi1);
        if (g < lane_groups) {
            if (((at + 8 * g) & 8) == 0) {
                s0 = _mm256_fmadd_pd(a, a, s0);
                s1 = _mm256_fmadd_pd(b, b, s1);
            } else {
                s2 = _mm256_fmadd_pd(a, a, s2);
                s3 = _mm256_fmadd_pd(b, b, s3);
            }
        }
    }
    _mm256_storeu_pd(w.mins, lo0);
    _mm256_storeu_pd(w.mins + 4, lo1);
    _mm256_storeu_pd(w.maxs, hi0);
    _mm256_storeu_pd(w.maxs + 4, hi1);
    _mm256_storeu_pd(w.lanes, s0);
    _mm256_storeu_pd(w.lanes + 4, s1);
    _mm256_storeu_pd(w.lanes + 8, s2);
    _mm256_storeu_pd(w.lanes + 12, s3);
    alignas(32) double r[8];
    _mm256_store_pd(r, r0);
    _mm256_store_pd(r + 4, r1);
    const double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    return add_loose<V>(p, 8 * groups, n, s, w);
}

bool cpu_has_avx2_fma() {
    // libgcc/compiler-rt also check that the OS saves the YMM registers.
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

using LeafFn = double (*)(const unsigned char*, size_t, size_t, Work&);

// numpy's split: the left part is half the values rounded down to a multiple of 8. The two
// halves are sequenced explicitly because the lanes must see the values in index order.
template <class V>
double pairwise(const unsigned char* p, size_t n, size_t at, Work& w, LeafFn leaf) {
    if (n <= kPairwiseLeaf) return leaf(p, n, at, w);
    size_t m = n / 2;
    m -= m % 8;
    const double left = pairwise<V>(p, m, at, w, leaf);
    const double right = pairwise<V>(p + m * sizeof(V), n - m, at + m, w, leaf);
    return left + right;
}

struct Kernels {
    LeafFn leaf_f64;
    LeafFn leaf_f32;
};

Kernels pick_kernels() {
#ifdef FASTTB_HISTOGRAM_AVX2
    if (cpu_has_avx2_fma()) return {leaf_avx2<double>, leaf_avx2<float>};
#endif
    return {leaf_portable<double>, leaf_portable<float>};
}

const Kernels& kernels() {
    static const Kernels k = pick_kernels();
    return k;
}

// Waits for a producer that is still copying the input in. It copies several times faster than
// values are bucketed, so after the first chunk this rarely loops; yielding keeps a producer
// that shares this core (or was preempted) moving.
void wait_until_filled(const std::atomic<size_t>& filled, size_t bytes) {
    for (unsigned spins = 0; filled.load(std::memory_order_acquire) < bytes; ++spins) {
        if (spins < 256) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            asm volatile("yield");
#endif
        } else {
            std::this_thread::yield();
        }
    }
}

template <class T>
double process_chunk(const unsigned char* data, size_t off, size_t len, Work& w,
                     const Kernels& k) {
    if (w.filled) wait_until_filled(*w.filled, (off + len) * sizeof(T));
    const unsigned char* p = data + off * sizeof(T);
    if (std::is_same<T, float>::value) {
        count_bins<float>(p, len, w);
        return pairwise<float>(p, len, off, w, k.leaf_f32);
    }
    if (!std::is_same<T, double>::value) {
        for (size_t i = 0; i < len; ++i) w.buf[i] = to_double<T>(p, i);
        p = reinterpret_cast<const unsigned char*>(w.buf);
    }
    count_bins<double>(p, len, w);
    return pairwise<double>(p, len, off, w, k.leaf_f64);
}

// Walks the pairwise-summation tree down to chunks, left to right.
template <class T>
double visit(const unsigned char* data, size_t off, size_t n, Work& w, const Kernels& k) {
    if (n <= kChunk) return process_chunk<T>(data, off, n, w, k);
    size_t m = n / 2;
    m -= m % 8;
    const double left = visit<T>(data, off, m, w, k);
    const double right = visit<T>(data, off + m, n - m, w, k);
    return left + right;
}

// The tail after the 16 lanes is added as a separately rounded product and sum; volatile keeps
// the compiler from contracting the two into an FMA where that is its default.
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

// Merges (max_bins) and trims the counts into h's two arrays, as the stock writer does
// (SPEC §4.3, §4.5). Only real bins [lo, end) can be non-zero, and only they are looked at.
void trim(Work& w, size_t lo, size_t end, int64_t max_bins, Histogram& h) {
    const double* e = edges();
    size_t bins = kNumBins;
    size_t group = 1;
    const uint64_t* counts = w.real;
    if (max_bins > 0 && static_cast<uint64_t>(max_bins) < bins && lo < end) {
        // The stock rule, quirk included: the padding is taken modulo the group size, so the
        // result can have more than max_bins bins.
        group = kNumBins / static_cast<size_t>(max_bins);
        bins = (kNumBins + group - 1) / group;
        // Merged bin k sums real bins [k * group, (k + 1) * group); w.real is summed in place
        // (k * group >= k), keeping to the groups that meet [lo, end).
        const size_t first_group = lo / group, end_group = (end - 1) / group + 1;
        for (size_t k = first_group; k < end_group; ++k) {
            uint64_t sum = 0;
            for (size_t b = std::max(k * group, lo); b < std::min((k + 1) * group, end); ++b) {
                sum += w.real[b];
            }
            w.real[k] = sum;
        }
        lo = first_group;
        end = end_group;
    } else if (max_bins > 0 && static_cast<uint64_t>(max_bins) < bins) {
        group = kNumBins / static_cast<size_t>(max_bins);
        bins = (kNumBins + group - 1) / group;
    }
    // Merged bin k starts at edge k * group; the last one ends at the last edge.
    auto limit = [&](size_t k) { return k < bins ? e[k * group] : e[kNumBins]; };

    size_t first = lo;
    while (first < end && counts[first] == 0) ++first;
    if (first >= end) {
        // Nothing counted. The stock trimming raises "histogram is empty" (the caller checks for
        // that beforehand with tensorflow_histogram_is_empty) unless max_bins == 1 merged
        // everything into one bin, which it keeps with its right edge and a zero count.
        if (bins == 1) {
            h.bucket_limit.assign(1, limit(1));
            h.bucket.assign(1, 0.0);
        }
        return;
    }
    size_t last = end - 1;
    while (counts[last] == 0) --last;
    h.bucket_limit.resize(last - first + 2);
    h.bucket.resize(last - first + 2);
    h.bucket[0] = 0.0;
    for (size_t k = first; k <= last + 1; ++k) h.bucket_limit[k - first] = limit(k);
    for (size_t k = first; k <= last; ++k) h.bucket[k - first + 1] = static_cast<double>(counts[k]);
}

template <class T>
bool any_nan(const unsigned char* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (std::isnan(to_double<T>(data, i))) return true;
    }
    return false;
}

template <class T>
Histogram histogram_of(const unsigned char* data, size_t n, int64_t max_bins,
                       const std::atomic<size_t>* filled) {
    const Kernels& k = kernels();
    Work& w = work_for_this_thread();
    w.start(n, filled);

    Histogram h;
    // numpy starts its add-reduction from +0.0, so an all -0.0 input sums to +0.0.
    h.sum = 0.0 + visit<T>(data, 0, n, w, k);

    const double dot = w.n16 > 0 ? reduce_lanes(w.lanes) : 0.0;
    h.sum_squares = sum_squares_tail<T>(data, w.n16, n, dot);

    // Min and max without NaNs: bins grow with values, so every counted value lies between
    // their bins (NaNs only reach the out-of-range counters).
    const double lo_value = *std::min_element(w.mins, w.mins + 8);
    const double hi_value = *std::max_element(w.maxs, w.maxs + 8);
    // Real bin b is extended bin b + 1; [lo, end) may be empty (all NaN or out of range).
    const size_t lo = std::max<size_t>(bin_of(*w.t, lo_value), 1) - 1;
    const size_t end = std::min<size_t>(bin_of(*w.t, hi_value), kNumBins);
    collect_counts(w, lo, end);
    trim(w, lo, end, max_bins, h);

    // Every value goes through the sum, so a NaN value makes it NaN; only then (a NaN sum can
    // also come from inf - inf) is the data searched for one.
    if (std::isnan(h.sum) && any_nan<T>(data, n)) {
        h.min = h.max = std::numeric_limits<double>::quiet_NaN();
    } else {
        h.min = lo_value;
        h.max = hi_value;
    }
    h.num = static_cast<double>(n);
    return h;
}

// Stops at the first countable value; for data with none (all NaN, say) it reads everything.
// The edges are symmetric, so a value is countable when its magnitude's bits, compared as an
// integer (NaNs compare above infinity), are at most those of the last edge rounded down to the
// value's type. Magnitudes are below the sign bit, so m - (limit + 1) wraps around into the sign
// bit exactly when m <= limit: 8 values are tested with one branch and no dependency chain.
template <class U, class F>
bool any_magnitude_within(const unsigned char* data, size_t n, F last_edge) {
    const U sign = U{1} << (8 * sizeof(U) - 1);
    U limit;
    std::memcpy(&limit, &last_edge, sizeof limit);
    const U above = limit + 1;
    auto below = [&](size_t i) -> U { return (load<U>(data, i) & ~sign) - above; };
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const U a = below(i + 0) | below(i + 1), b = below(i + 2) | below(i + 3);
        const U c = below(i + 4) | below(i + 5), d = below(i + 6) | below(i + 7);
        if (((a | b) | (c | d)) & sign) return true;
    }
    for (; i < n; ++i) {
        if (below(i) & sign) return true;
    }
    return false;
}

}  // namespace

const std::vector<double>& default_edges() {
    static const std::vector<double> e(edges(), edges() + kNumEdges);
    return e;
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
        case DType::f32: {
            // The largest float not above the last edge.
            float last = static_cast<float>(edges()[kNumEdges - 1]);
            if (static_cast<double>(last) > edges()[kNumEdges - 1]) last = std::nextafter(last, 0.0f);
            return any_magnitude_within<uint32_t>(p, n, last);
        }
        case DType::f64: return any_magnitude_within<uint64_t>(p, n, edges()[kNumEdges - 1]);
        // |int64| and uint64 are at most 1.9e19, inside the last edge 9.92e19.
        default: return n > 0;
    }
}

bool tensorflow_histogram_is_empty(const void* data, size_t n, DType type, int64_t max_bins) {
    return max_bins != 1 && !has_countable_value(data, n, type);
}

Histogram tensorflow_histogram(const void* data, size_t n, DType type, int64_t max_bins,
                               const std::atomic<size_t>* filled) {
    const auto* p = static_cast<const unsigned char*>(data);
    switch (type) {
        case DType::f16: return histogram_of<Half>(p, n, max_bins, filled);
        case DType::f32: return histogram_of<float>(p, n, max_bins, filled);
        case DType::f64: return histogram_of<double>(p, n, max_bins, filled);
        case DType::i8: return histogram_of<int8_t>(p, n, max_bins, filled);
        case DType::i16: return histogram_of<int16_t>(p, n, max_bins, filled);
        case DType::i32: return histogram_of<int32_t>(p, n, max_bins, filled);
        case DType::i64: return histogram_of<int64_t>(p, n, max_bins, filled);
        case DType::u8: return histogram_of<uint8_t>(p, n, max_bins, filled);
        case DType::u16: return histogram_of<uint16_t>(p, n, max_bins, filled);
        case DType::u32: return histogram_of<uint32_t>(p, n, max_bins, filled);
        case DType::u64: return histogram_of<uint64_t>(p, n, max_bins, filled);
        case DType::boolean: return histogram_of<bool>(p, n, max_bins, filled);
    }
    return Histogram{};
}

}  // namespace fasttb
