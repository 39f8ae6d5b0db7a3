// CRC-32C (Castagnoli) and the masked form used by TFRecord framing.
// One portable implementation and hardware ones (SSE4.2, ARMv8 CRC); the fastest one the CPU
// supports is chosen once, at run time, so a single build runs on every CPU of its architecture.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fasttb {

// Extends `crc` (a finished CRC-32C, 0 for the empty string) with n more bytes.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);

inline uint32_t crc32c(const void* data, size_t n) { return crc32c_extend(0, data, n); }

// The TFRecord mask: rotate right by 15 bits and add a constant, so that a CRC stored next to
// the data it covers does not look like data.
inline uint32_t mask_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u; }

inline uint32_t masked_crc32c(const void* data, size_t n) { return mask_crc(crc32c(data, n)); }

// Individual implementations, exposed so that tests can check each against the others.
uint32_t crc32c_extend_portable(uint32_t crc, const void* data, size_t n);
uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n);  // requires the below
bool crc32c_hardware_available();
const char* crc32c_implementation();  // "sse4.2", "armv8-crc" or "portable"

}  // namespace fasttb
