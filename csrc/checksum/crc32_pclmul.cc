// CRC-32 by folding with carry-less multiplies (PCLMULQDQ). The only file compiled with
// -mpclmul -msse4.1; crc32.cc calls it only after checking that the CPU has both.
//
// The data is read in 128-bit lanes, bit-reflected as CRC-32 is. Four lanes advance together
// 512 bits at a time: each lane's two halves are multiplied by the powers of x (mod P) that move
// them that far ahead, and the next data is added. The four are then folded into one, 128 bits
// per step; the last 128 bits are reduced to 64 and then to 32 by two more multiplies, and the
// remainder mod P is found by Barrett reduction (with floor(x^64 / P) and P = 0x104C11DB7).
// All constants are in the bit-reflected form the products come out in, as published by Intel
// ("Fast CRC Computation for Generic Polynomials Using PCLMULQDQ") and used by Linux and zlib-ng.
#include <emmintrin.h>
#include <smmintrin.h>
#include <wmmintrin.h>

#include <cstddef>
#include <cstdint>

namespace fasttb {
namespace {

inline __m128i load(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// x's two halves multiplied by k's, summed, plus the next data: x moved forward over k's span.
inline __m128i fold(__m128i x, __m128i k, __m128i data) {
    return _mm_xor_si128(
        _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), data);
}

}  // namespace

// The CRC-32 register (not complemented) after n bytes, from `state`. n >= 64, a multiple of 16.
uint32_t crc32_fold(uint32_t state, const uint8_t* p, size_t n) {
    const __m128i by512 = _mm_set_epi64x(0x1c6e41596, 0x154442bd4);
    const __m128i by128 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);
    const __m128i by64 = _mm_set_epi64x(0, 0x163cd6124);
    const __m128i barrett = _mm_set_epi64x(0x1f7011641, 0x1db710641);  // quotient, P
    const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);

    __m128i x0 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(state)));
    __m128i x1 = load(p + 16), x2 = load(p + 32), x3 = load(p + 48);
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
        x0 = fold(x0, by512, load(p));
        x1 = fold(x1, by512, load(p + 16));
        x2 = fold(x2, by512, load(p + 32));
        x3 = fold(x3, by512, load(p + 48));
    }
    x0 = fold(x0, by128, x1);
    x0 = fold(x0, by128, x2);
    x0 = fold(x0, by128, x3);
    for (; n >= 16; p += 16, n -= 16) x0 = fold(x0, by128, load(p));

    // 128 bits to 64: the low half times x^128 mod P, added to the high half.
    x0 = _mm_xor_si128(_mm_srli_si128(x0, 8), _mm_clmulepi64_si128(x0, by128, 0x10));
    // 64 to 32 (the multiply also appends the 32 zero bits a CRC's definition adds).
    x0 = _mm_xor_si128(_mm_srli_si128(x0, 4),
                       _mm_clmulepi64_si128(_mm_and_si128(x0, low32), by64, 0x00));
    // Barrett: q = (low 32 bits * floor(x^64 / P)), then subtract q * P.
    __m128i q = _mm_clmulepi64_si128(_mm_and_si128(x0, low32), barrett, 0x10);
    q = _mm_clmulepi64_si128(_mm_and_si128(q, low32), barrett, 0x00);
    return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(x0, q), 1));
}

}  // namespace fasttb
