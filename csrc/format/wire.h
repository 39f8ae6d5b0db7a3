// Protobuf wire-format primitives (varints, fixed-width little-endian numbers, keys), written
// straight into a byte string. No libprotobuf: the few messages fasttb encodes in C++ are spelt
// out field by field in event.cc, in ascending field order as the protobuf runtimes emit them.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace fasttb::wire {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

constexpr uint32_t key(uint32_t field, WireType type) { return (field << 3) | type; }

inline size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        ++n;
    }
    return n;
}

inline void put_varint(std::string& out, uint64_t v) {
    char buf[10];
    size_t n = 0;
    while (v >= 0x80) {
        buf[n++] = static_cast<char>((v & 0x7F) | 0x80);
        v >>= 7;
    }
    buf[n++] = static_cast<char>(v);
    out.append(buf, n);
}

inline void put_fixed32(std::string& out, uint32_t v) {
    const char b[4] = {char(v), char(v >> 8), char(v >> 16), char(v >> 24)};
    out.append(b, 4);
}

inline void put_fixed64(std::string& out, uint64_t v) {
    put_fixed32(out, static_cast<uint32_t>(v));
    put_fixed32(out, static_cast<uint32_t>(v >> 32));
}

inline uint64_t double_bits(double d) {
    uint64_t b;
    std::memcpy(&b, &d, 8);
    return b;
}

inline uint32_t float_bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

// proto3 implicit presence: a double is omitted when its bits are all zero (+0.0 only; -0.0 and
// NaN are written).
inline size_t double_field_size(double d) { return double_bits(d) ? 9 : 0; }

inline void put_double_field(std::string& out, uint32_t field, double d) {
    const uint64_t bits = double_bits(d);
    if (!bits) return;
    put_varint(out, key(field, kFixed64));
    put_fixed64(out, bits);
}

// Size of a length-delimited field (key + length + body) whose key fits one byte.
inline size_t delimited_size(size_t body) { return 1 + varint_size(body) + body; }

inline void put_delimited_header(std::string& out, uint32_t field, size_t body) {
    put_varint(out, key(field, kLengthDelimited));
    put_varint(out, body);
}

inline void put_bytes_field(std::string& out, uint32_t field, const char* data, size_t n) {
    put_delimited_header(out, field, n);
    out.append(data, n);
}

inline void put_int64_field(std::string& out, uint32_t field, int64_t v) {
    if (!v) return;
    put_varint(out, key(field, kVarint));
    put_varint(out, static_cast<uint64_t>(v));
}

}  // namespace fasttb::wire
