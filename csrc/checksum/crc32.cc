// See crc32.h: the run-time choice, and zlib for CPUs (and tails) the folding does not cover.
#include "checksum/crc32.h"

#include <zlib.h>

#include <algorithm>

namespace fasttb {

namespace {

uint32_t zlib_crc32(uint32_t crc, const uint8_t* data, size_t n) {
    uLong c = crc;
    while (n) {  // zlib counts in uInt
        const uInt piece = static_cast<uInt>(std::min<size_t>(n, size_t(1) << 30));
        c = crc32(c, data, piece);
        data += piece;
        n -= piece;
    }
    return static_cast<uint32_t>(c);
}

}  // namespace

#if defined(FASTTB_HAVE_PCLMUL)
uint32_t crc32_fold(uint32_t state, const uint8_t* data, size_t n);  // crc32_pclmul.cc

bool pclmul_available() {
    static const bool available = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    return available;
}

uint32_t crc32_extend_pclmul(uint32_t crc, const uint8_t* data, size_t n) {
    // The folding takes 64 bytes or more, 16 at a time; zlib finishes the last few. The running
    // state of a CRC-32 is the complement of the finished value.
    const size_t folded = n >= 64 ? n & ~size_t(15) : 0;
    if (folded) crc = ~crc32_fold(~crc, data, folded);
    return zlib_crc32(crc, data + folded, n - folded);
}
#else
bool pclmul_available() { return false; }

uint32_t crc32_extend_pclmul(uint32_t crc, const uint8_t* data, size_t n) {
    return zlib_crc32(crc, data, n);
}
#endif

uint32_t crc32_extend(uint32_t crc, const uint8_t* data, size_t n) {
    return pclmul_available() ? crc32_extend_pclmul(crc, data, n) : zlib_crc32(crc, data, n);
}

}  // namespace fasttb
