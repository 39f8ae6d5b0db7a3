// Element types of the arrays producers copy into items verbatim (numpy's native-endian numeric
// dtypes), and reading one element as a double the way numpy's astype(float64) does.
#pragma once

#include <cstdint>
#include <cstring>

namespace fasttb {

enum class DType : uint8_t { f16, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64, boolean };

size_t dtype_size(DType t);

inline double double_from_bits(uint64_t bits) {
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
}

// IEEE half to double (exact).
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
inline T load_element(const void* base, size_t i) {
    T v;
    std::memcpy(&v, static_cast<const unsigned char*>(base) + i * sizeof(T), sizeof(T));
    return v;
}

// Element i of an array of `t` as a double (bool: any nonzero byte is 1.0, as in numpy).
double element_as_double(const void* base, size_t i, DType t);

// Elements [first, first + n) of an array of `t` as doubles into `out`: element_as_double for a
// run of elements, with the type switch outside the loop.
void elements_as_doubles(const void* base, size_t first, size_t n, DType t, double* out);

}  // namespace fasttb
