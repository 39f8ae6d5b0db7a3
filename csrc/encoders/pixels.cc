// See pixels.h. SSE2 is part of x86-64, so its vector loops need no run-time dispatch; the
// three-channel interleave uses SSSE3's byte shuffle where the CPU has it. Other CPUs take the
// scalar loops, which compute the same bytes.
#include "encoders/pixels.h"

#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif
#if defined(__SSE2__) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTTB_HAVE_SSSE3_TARGET 1
#include <tmmintrin.h>
#endif

namespace fasttb {
namespace {

// Clipping first keeps every product finite and the conversions defined: any x >= 1 gives 255
// and any x <= 0 gives 0 either way, and `x > 0` is false for NaN.
inline uint8_t pixel(float x) {
    x = x > 0.0f ? x : 0.0f;
    x = x < 1.0f ? x : 1.0f;
    const float y = x * 255.0f;  // in [0, 255]
    return static_cast<uint8_t>(static_cast<int>(y));
}

inline float to_float(double x) {
    x = x > 0.0 ? x : 0.0;
    x = x < 2.0 ? x : 2.0;  // float(x) for x >= 2 would give 255 anyway
    return static_cast<float>(x);
}

#if defined(__SSE2__)
// max(NaN, 0) is 0: MAXPS returns its second operand when either is NaN.
inline __m128i pixels4(__m128 x) {
    const __m128 y = _mm_mul_ps(x, _mm_set1_ps(255.0f));
    return _mm_cvttps_epi32(_mm_min_ps(_mm_max_ps(y, _mm_setzero_ps()), _mm_set1_ps(255.0f)));
}

// The loads take byte pointers: the values may sit at any address.
inline __m128 load4(const float*, const unsigned char* p) {
    return _mm_loadu_ps(reinterpret_cast<const float*>(p));
}

inline __m128 load4(const double*, const unsigned char* p) {
    const auto at = [p](size_t offset) { return _mm_loadu_pd(reinterpret_cast<const double*>(p + offset)); };
    // CVTPD2PS rounds to nearest, as numpy's astype(float32) does; clipping to [0, 2] first (as
    // to_float does) keeps huge values from overflowing, and NaN still becomes 0 below.
    const __m128d lo = _mm_min_pd(_mm_max_pd(at(0), _mm_setzero_pd()), _mm_set1_pd(2.0));
    const __m128d hi = _mm_min_pd(_mm_max_pd(at(16), _mm_setzero_pd()), _mm_set1_pd(2.0));
    return _mm_movelh_ps(_mm_cvtpd_ps(lo), _mm_cvtpd_ps(hi));
}

template <class T>
size_t scale_vector(const unsigned char* src, size_t n, uint8_t* dst) {
    const T* type = nullptr;  // picks load4's overload
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        // A kilobyte ahead: the hardware prefetcher alone left this loop waiting on memory
        // (12 MB of float32 pixels: 1.65 ms -> 1.40 ms). Prefetches never fault, and the
        // address is formed as an integer, so running past the end is harmless.
        const unsigned char* p = src + i * sizeof(T);
        _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + 1024), _MM_HINT_T0);
        const __m128i a = pixels4(load4(type, p)), b = pixels4(load4(type, p + 4 * sizeof(T)));
        const __m128i c = pixels4(load4(type, p + 8 * sizeof(T)));
        const __m128i d = pixels4(load4(type, p + 12 * sizeof(T)));
        const __m128i packed = _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_packs_epi32(c, d));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), packed);
    }
    return i;
}
#else
template <class T>
size_t scale_vector(const unsigned char*, size_t, uint8_t*) {
    return 0;
}
#endif

// Interleaves pixels [x0, width) of `count` rows (one per plane) into dst; one row is spread
// over three channels.
void interleave_scalar(const uint8_t* const* rows, uint32_t count, uint32_t x0, uint32_t width,
                       uint8_t* dst) {
    if (count == 1) {
        for (uint32_t x = x0; x < width; ++x) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = rows[0][x];
        return;
    }
    for (uint32_t x = x0; x < width; ++x)
        for (uint32_t k = 0; k < count; ++k) dst[size_t(x) * count + k] = rows[k][x];
}

#if defined(__SSE2__)
inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline void store16(uint8_t* p, __m128i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }

// Two and four planes interleave with byte and word unpacks, 16 pixels a step.
uint32_t interleave_unpack(const uint8_t* const* rows, uint32_t count, uint32_t width, uint8_t* dst) {
    uint32_t x = 0;
    if (count == 2) {
        for (; x + 16 <= width; x += 16) {
            const __m128i a = load16(rows[0] + x), b = load16(rows[1] + x);
            store16(dst + 2 * x, _mm_unpacklo_epi8(a, b));
            store16(dst + 2 * x + 16, _mm_unpackhi_epi8(a, b));
        }
    } else if (count == 4) {
        for (; x + 16 <= width; x += 16) {
            const __m128i r = load16(rows[0] + x), g = load16(rows[1] + x);
            const __m128i b = load16(rows[2] + x), a = load16(rows[3] + x);
            const __m128i rg_lo = _mm_unpacklo_epi8(r, g), rg_hi = _mm_unpackhi_epi8(r, g);
            const __m128i ba_lo = _mm_unpacklo_epi8(b, a), ba_hi = _mm_unpackhi_epi8(b, a);
            store16(dst + 4 * x, _mm_unpacklo_epi16(rg_lo, ba_lo));
            store16(dst + 4 * x + 16, _mm_unpackhi_epi16(rg_lo, ba_lo));
            store16(dst + 4 * x + 32, _mm_unpacklo_epi16(rg_hi, ba_hi));
            store16(dst + 4 * x + 48, _mm_unpackhi_epi16(rg_hi, ba_hi));
        }
    }
    return x;
}
#endif

#if defined(FASTTB_HAVE_SSSE3_TARGET)
// Byte k of the 48 that 16 three-channel pixels take comes from channel k % 3 of pixel k / 3:
// each 16-byte piece of the output is three shuffles (one per source row) ORed together. A mask
// byte with the top bit set gives zero. One row spread over three channels is one shuffle per
// piece.
struct ShuffleMasks {
    alignas(16) int8_t from_plane[3][3][16];  // [piece][plane][byte]
    alignas(16) int8_t spread[3][16];         // [piece][byte]
};

constexpr ShuffleMasks make_shuffle_masks() {
    ShuffleMasks m{};
    for (int piece = 0; piece < 3; ++piece)
        for (int i = 0; i < 16; ++i) {
            const int k = 16 * piece + i;
            for (int plane = 0; plane < 3; ++plane)
                m.from_plane[piece][plane][i] = static_cast<int8_t>(k % 3 == plane ? k / 3 : -128);
            m.spread[piece][i] = static_cast<int8_t>(k / 3);
        }
    return m;
}
constexpr ShuffleMasks kShuffle = make_shuffle_masks();

__attribute__((target("ssse3"))) uint32_t interleave_shuffle(const uint8_t* const* rows,
                                                            uint32_t count, uint32_t width,
                                                            uint8_t* dst) {
    auto mask = [](const int8_t* m) { return _mm_load_si128(reinterpret_cast<const __m128i*>(m)); };
    uint32_t x = 0;
    if (count == 1) {
        for (; x + 16 <= width; x += 16) {
            const __m128i v = load16(rows[0] + x);
            for (int piece = 0; piece < 3; ++piece)
                store16(dst + 3 * x + 16 * piece, _mm_shuffle_epi8(v, mask(kShuffle.spread[piece])));
        }
    } else if (count == 3) {
        for (; x + 16 <= width; x += 16) {
            const __m128i v[3] = {load16(rows[0] + x), load16(rows[1] + x), load16(rows[2] + x)};
            for (int piece = 0; piece < 3; ++piece) {
                const auto& m = kShuffle.from_plane[piece];
                store16(dst + 3 * x + 16 * piece,
                        _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(v[0], mask(m[0])),
                                                  _mm_shuffle_epi8(v[1], mask(m[1]))),
                                     _mm_shuffle_epi8(v[2], mask(m[2]))));
            }
        }
    }
    return x;
}
#endif

template <class T>
T load(const unsigned char* src, size_t i) {
    T v;
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));
    return v;
}

}  // namespace

void interleave_row(const uint8_t* planes, size_t plane_bytes, uint32_t count, uint64_t y,
                    uint32_t width, uint8_t* dst) {
    const uint8_t* rows[4];
    for (uint32_t k = 0; k < count && k < 4; ++k) rows[k] = planes + k * plane_bytes + y * width;
    uint32_t x = 0;
#if defined(FASTTB_HAVE_SSSE3_TARGET)
    static const bool have_ssse3 = __builtin_cpu_supports("ssse3");
    if ((count == 1 || count == 3) && have_ssse3) x = interleave_shuffle(rows, count, width, dst);
#endif
#if defined(__SSE2__)
    if (count == 2 || count == 4) x = interleave_unpack(rows, count, width, dst);
#endif
    interleave_scalar(rows, count, x, width, dst);
}

void scale_float32_to_uint8(const void* src, size_t n, uint8_t* dst) {
    const auto* bytes = static_cast<const unsigned char*>(src);
    for (size_t i = scale_vector<float>(bytes, n, dst); i < n; ++i) dst[i] = pixel(load<float>(bytes, i));
}

void scale_float64_to_uint8(const void* src, size_t n, uint8_t* dst) {
    const auto* bytes = static_cast<const unsigned char*>(src);
    for (size_t i = scale_vector<double>(bytes, n, dst); i < n; ++i)
        dst[i] = pixel(to_float(load<double>(bytes, i)));
}

}  // namespace fasttb
