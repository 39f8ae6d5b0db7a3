// See float_repr.h.
#include "encoders/float_repr.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>

namespace fasttb {

void append_python_float(std::string& out, double x) {
    if (std::isnan(x)) {
        out += "nan";
        return;
    }
    if (std::isinf(x)) {
        out += x < 0 ? "-inf" : "inf";
        return;
    }
    // Shortest round-trip digits in scientific form: d[.ddd]e[+-]XX.
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
    const char* p = buf;
    const char* end = res.ptr;
    if (*p == '-') {
        out += '-';
        ++p;
    }
    char digits[32];
    size_t n = 0;
    const char* e = p;
    for (; e < end && *e != 'e'; ++e)
        if (*e != '.') digits[n++] = *e;
    // to_chars always writes an exponent, signed (e+05, e-07); its text is not NUL-terminated.
    int exponent = 0;
    const bool negative = e + 1 < end && e[1] == '-';
    std::from_chars(e + 2, end, exponent);
    if (negative) exponent = -exponent;
    const int point = exponent + 1;  // digits before the decimal point
    // Python's rule (repr, 'r' mode): positional while -4 < point <= 16.
    if (point > -4 && point <= 16) {
        if (point <= 0) {
            out += "0.";
            out.append(static_cast<size_t>(-point), '0');
            out.append(digits, n);
        } else if (static_cast<size_t>(point) >= n) {
            out.append(digits, n);
            out.append(static_cast<size_t>(point) - n, '0');
            out += ".0";
        } else {
            out.append(digits, static_cast<size_t>(point));
            out += '.';
            out.append(digits + point, n - static_cast<size_t>(point));
        }
        return;
    }
    out += digits[0];
    if (n > 1) {
        out += '.';
        out.append(digits + 1, n - 1);
    }
    char exp[8];
    const int magnitude = std::abs(exponent);
    const auto er = std::to_chars(exp, exp + sizeof exp, magnitude);
    out += exponent < 0 ? "e-" : "e+";
    if (er.ptr - exp < 2) out += '0';
    out.append(exp, er.ptr);
}

void append_python_element(std::string& out, const void* base, size_t i, DType t) {
    char buf[24];
    const auto append_int = [&](auto v) {
        const auto r = std::to_chars(buf, buf + sizeof buf, v);
        out.append(buf, r.ptr);
    };
    switch (t) {
        case DType::f16: case DType::f32: case DType::f64:
            return append_python_float(out, element_as_double(base, i, t));
        case DType::boolean:
            out += load_element<uint8_t>(base, i) ? "True" : "False";
            return;
        case DType::i8: return append_int(load_element<int8_t>(base, i));
        case DType::i16: return append_int(load_element<int16_t>(base, i));
        case DType::i32: return append_int(load_element<int32_t>(base, i));
        case DType::i64: return append_int(load_element<int64_t>(base, i));
        case DType::u8: return append_int(load_element<uint8_t>(base, i));
        case DType::u16: return append_int(load_element<uint16_t>(base, i));
        case DType::u32: return append_int(load_element<uint32_t>(base, i));
        case DType::u64: return append_int(load_element<uint64_t>(base, i));
    }
}

}  // namespace fasttb
