// CRC-32C with the ARMv8 CRC32 extension. Only this file is compiled with +crc; crc32c.cc calls
// it only after checking the CPU feature.
#include <arm_acle.h>

#include <cstring>

#include "checksum/crc32c.h"

namespace fasttb {

uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    uint32_t c = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        c = __crc32cd(c, v);
    }
    for (; n > 0; --n, ++p) c = __crc32cb(c, *p);
    return ~c;
}

}  // namespace fasttb
