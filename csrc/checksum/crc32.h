// CRC-32 of PNG chunks (the ISO-HDLC polynomial that zlib and gzip use too). zlib's crc32()
// runs at about 2.5 GB/s here, a tenth of the time of encoding a noisy image; x86-64 CPUs with
// PCLMULQDQ fold the data with carry-less multiplies instead (about 3.5 times faster), chosen
// once at run time like the CRC-32C of crc32c.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fasttb {

// Extends `crc` (a finished CRC-32, 0 for the empty string) with n more bytes: zlib's crc32().
uint32_t crc32_extend(uint32_t crc, const uint8_t* data, size_t n);

// The carry-less multiply path alone, for tests; it needs pclmul_available().
uint32_t crc32_extend_pclmul(uint32_t crc, const uint8_t* data, size_t n);
bool pclmul_available();

}  // namespace fasttb
