// TFRecord framing; see record.h.
#include "format/record.h"

#include <cstdint>

#include "checksum/crc32c.h"
#include "format/wire.h"

namespace fasttb {

void end_record(std::string& out, size_t start) {
    const uint64_t len = out.size() - start - kRecordHeader;
    char* header = &out[start];
    for (int i = 0; i < 8; ++i) header[i] = static_cast<char>(len >> (8 * i));
    const uint32_t header_crc = masked_crc32c(header, 8);
    for (int i = 0; i < 4; ++i) header[8 + i] = static_cast<char>(header_crc >> (8 * i));
    const uint32_t data_crc = masked_crc32c(out.data() + start + kRecordHeader, len);
    wire::put_fixed32(out, data_crc);
}

void append_record(std::string& out, const char* payload, size_t n) {
    const size_t start = begin_record(out);
    out.append(payload, n);
    end_record(out, start);
}

}  // namespace fasttb
