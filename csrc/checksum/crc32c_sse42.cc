// CRC-32C with the SSE4.2 crc32 instruction. This is the only file compiled with -msse4.2; it
// is reached only after crc32c.cc has checked that the CPU has the instruction.
#include <nmmintrin.h>

#include <array>
#include <cstdint>
#include <cstring>

#include "checksum/crc32c.h"

namespace fasttb {
namespace {

// Large buffers are cut into three adjacent blocks whose CRCs run as independent instruction
// streams (crc32 has a latency of three cycles and a throughput of one), then merged.
constexpr size_t kBlock = 4096;

inline uint64_t load64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

// Raw register update: no pre- or post-inversion.
uint32_t update(uint32_t c, const uint8_t* p, size_t n) {
    uint64_t c64 = c;
    for (; n >= 8; n -= 8, p += 8) c64 = _mm_crc32_u64(c64, load64(p));
    c = static_cast<uint32_t>(c64);
    for (; n > 0; --n, ++p) c = _mm_crc32_u8(c, *p);
    return c;
}

// Advancing a register over kBlock zero bytes is linear over GF(2), so it is a table lookup per
// register byte: shift[k][b] is the advance of the value b << 8k.
struct ShiftTables {
    std::array<std::array<uint32_t, 256>, 4> t;
    ShiftTables() {
        static const uint8_t zeros[kBlock] = {};
        uint32_t basis[32];
        for (int i = 0; i < 32; ++i) basis[i] = update(1u << i, zeros, kBlock);
        for (int k = 0; k < 4; ++k)
            for (uint32_t b = 0; b < 256; ++b) {
                uint32_t v = 0;
                for (int bit = 0; bit < 8; ++bit)
                    if (b & (1u << bit)) v ^= basis[8 * k + bit];
                t[k][b] = v;
            }
    }
    uint32_t shift(uint32_t c) const {
        return t[0][c & 0xFF] ^ t[1][(c >> 8) & 0xFF] ^ t[2][(c >> 16) & 0xFF] ^ t[3][c >> 24];
    }
};

const ShiftTables& shift_tables() {
    static const ShiftTables tables;  // thread-safe one-time initialisation
    return tables;
}

}  // namespace

uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    uint32_t c = ~crc;
    if (n >= 3 * kBlock) {
        const ShiftTables& st = shift_tables();
        while (n >= 3 * kBlock) {
            uint64_t a = c, b = 0, d = 0;
            const uint8_t* pa = p;
            const uint8_t* pb = p + kBlock;
            const uint8_t* pd = p + 2 * kBlock;
            for (size_t i = 0; i < kBlock; i += 8) {
                a = _mm_crc32_u64(a, load64(pa + i));
                b = _mm_crc32_u64(b, load64(pb + i));
                d = _mm_crc32_u64(d, load64(pd + i));
            }
            // update(x, A||B) = shift(update(x, A)) ^ update(0, B) for |B| == kBlock.
            c = st.shift(st.shift(static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b)) ^
                static_cast<uint32_t>(d);
            p += 3 * kBlock;
            n -= 3 * kBlock;
        }
    }
    return ~update(c, p, n);
}

}  // namespace fasttb
