// TFRecord framing: u64 length, masked CRC of the length, payload, masked CRC of the payload.
// A record is framed in place: begin_record reserves the header, the caller appends the payload,
// end_record fills the header in and appends the payload's CRC, so nothing is copied.
#pragma once

#include <cstddef>
#include <string>

namespace fasttb {

constexpr size_t kRecordHeader = 12;

inline size_t begin_record(std::string& out) {
    const size_t start = out.size();
    out.append(kRecordHeader, '\0');
    return start;
}

void end_record(std::string& out, size_t start);

// Frames one whole payload; used by tests and for payloads that arrive already serialized.
void append_record(std::string& out, const char* payload, size_t n);

}  // namespace fasttb
