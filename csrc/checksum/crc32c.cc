// Run-time choice of the CRC-32C implementation.
#include "checksum/crc32c.h"

#if defined(FASTTB_HAVE_ARM64_CRC) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace fasttb {

#if !defined(FASTTB_HAVE_SSE42) && !defined(FASTTB_HAVE_ARM64_CRC)
uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n) {
    return crc32c_extend_portable(crc, data, n);
}
#endif

bool crc32c_hardware_available() {
#if defined(FASTTB_HAVE_SSE42)
    static const bool available = __builtin_cpu_supports("sse4.2");
    return available;
#elif defined(FASTTB_HAVE_ARM64_CRC) && defined(__APPLE__)
    return true;  // every Apple arm64 CPU has the CRC extension
#elif defined(FASTTB_HAVE_ARM64_CRC) && defined(__linux__)
    static const bool available = (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
    return available;
#else
    return false;
#endif
}

const char* crc32c_implementation() {
    if (!crc32c_hardware_available()) return "portable";
#if defined(FASTTB_HAVE_SSE42)
    return "sse4.2";
#else
    return "armv8-crc";
#endif
}

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n) {
    using Fn = uint32_t (*)(uint32_t, const void*, size_t);
    static const Fn impl =
        crc32c_hardware_available() ? crc32c_extend_hardware : crc32c_extend_portable;
    return impl(crc, data, n);
}

}  // namespace fasttb
