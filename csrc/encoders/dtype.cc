// See dtype.h.
#include "encoders/dtype.h"

namespace fasttb {

size_t dtype_size(DType t) {
    switch (t) {
        case DType::f16: case DType::i16: case DType::u16: return 2;
        case DType::f32: case DType::i32: case DType::u32: return 4;
        case DType::f64: case DType::i64: case DType::u64: return 8;
        case DType::i8: case DType::u8: case DType::boolean: return 1;
    }
    return 1;
}

double element_as_double(const void* base, size_t i, DType t) {
    switch (t) {
        case DType::f16: return half_to_double(load_element<uint16_t>(base, i));
        case DType::f32: return load_element<float>(base, i);
        case DType::f64: return load_element<double>(base, i);
        case DType::i8: return load_element<int8_t>(base, i);
        case DType::i16: return load_element<int16_t>(base, i);
        case DType::i32: return load_element<int32_t>(base, i);
        case DType::i64: return static_cast<double>(load_element<int64_t>(base, i));
        case DType::u8: return load_element<uint8_t>(base, i);
        case DType::u16: return load_element<uint16_t>(base, i);
        case DType::u32: return load_element<uint32_t>(base, i);
        case DType::u64: return static_cast<double>(load_element<uint64_t>(base, i));
        case DType::boolean: return load_element<uint8_t>(base, i) != 0 ? 1.0 : 0.0;
    }
    return 0;
}

namespace {

template <class T>
void convert_run(const void* base, size_t first, size_t n, double* out) {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<double>(load_element<T>(base, first + i));
}

}  // namespace

void elements_as_doubles(const void* base, size_t first, size_t n, DType t, double* out) {
    switch (t) {
        case DType::f32: return convert_run<float>(base, first, n, out);
        case DType::f64: return convert_run<double>(base, first, n, out);
        case DType::i8: return convert_run<int8_t>(base, first, n, out);
        case DType::i16: return convert_run<int16_t>(base, first, n, out);
        case DType::i32: return convert_run<int32_t>(base, first, n, out);
        case DType::i64: return convert_run<int64_t>(base, first, n, out);
        case DType::u8: return convert_run<uint8_t>(base, first, n, out);
        case DType::u16: return convert_run<uint16_t>(base, first, n, out);
        case DType::u32: return convert_run<uint32_t>(base, first, n, out);
        case DType::u64: return convert_run<uint64_t>(base, first, n, out);
        case DType::f16: case DType::boolean:
            for (size_t i = 0; i < n; ++i) out[i] = element_as_double(base, first + i, t);
            return;
    }
}

}  // namespace fasttb
