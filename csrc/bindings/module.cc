// Python bindings of the core (fasttb._core): argument conversion and error translation only.
// Records are checked, copied and queued by producer.h; the GIL is let go only through
// PythonLock (python_interop.h).
#include <Python.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
// stl.h converts std::vector arguments and results; nothing names it, so IWYU cannot see its use.
#include <pybind11/stl.h>  // IWYU pragma: keep

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bindings/fastcall.h"
#include "bindings/python_interop.h"
#include "checksum/crc32.h"
#include "checksum/crc32c.h"
#include "encoders/deflate.h"
#include "encoders/dtype.h"
#include "encoders/gif.h"
#include "encoders/histogram.h"
#include "encoders/kind_params.h"
#include "encoders/pixels.h"
#include "encoders/png.h"
#include "encoders/side_files.h"
#include "format/event.h"
#include "format/record.h"
#include "reader/reader.h"
#include "runtime/caller_lock.h"
#include "runtime/engine.h"
#include "runtime/event_file.h"
#include "runtime/hold.h"
#include "runtime/item.h"
#include "runtime/producer.h"
#include "runtime/status.h"
#include "runtime/termination.h"
#include "runtime/writer.h"

namespace py = pybind11;
using fasttb::EventWriter;
using fasttb::Hold;
using fasttb::ItemKind;
using fasttb::PixelType;
using fasttb::PythonLock;
using fasttb::Status;

namespace {

void raise_if_failed(const Status& status) {
    if (status.ok()) return;
    fasttb::set_python_error(status);
    throw py::error_already_set();
}

// The text of a str, as UTF-8 (lone surrogates raise UnicodeEncodeError).
std::string_view utf8(const py::str& s) {
    Py_ssize_t n = 0;
    const char* p = PyUnicode_AsUTF8AndSize(s.ptr(), &n);
    if (!p) throw py::error_already_set();
    return {p, size_t(n)};
}

void require_contiguous(const py::array& a, const char* name) {
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + ": must be a C-contiguous array");
}

// The element type of a native-endian numeric array; `argument` names it in errors.
fasttb::DType array_dtype(const py::array& a, const char* argument = "values") {
    const py::dtype dt = a.dtype();
    const char kind = dt.kind();
    const auto size = dt.itemsize();
    using fasttb::DType;
    if (!dt.attr("isnative").cast<bool>() && size > 1)
        throw py::type_error(std::string(argument) + ": byte-swapped arrays are not supported");
    if (kind == 'f' && size == 2) return DType::f16;
    if (kind == 'f' && size == 4) return DType::f32;
    if (kind == 'f' && size == 8) return DType::f64;
    if (kind == 'b' && size == 1) return DType::boolean;
    if (kind == 'i' && size == 1) return DType::i8;
    if (kind == 'i' && size == 2) return DType::i16;
    if (kind == 'i' && size == 4) return DType::i32;
    if (kind == 'i' && size == 8) return DType::i64;
    if (kind == 'u' && size == 1) return DType::u8;
    if (kind == 'u' && size == 2) return DType::u16;
    if (kind == 'u' && size == 4) return DType::u32;
    if (kind == 'u' && size == 8) return DType::u64;
    throw py::type_error(std::string(argument) + ": unsupported dtype " + std::string(py::str(dt)));
}

// A C-contiguous numeric array as the core's Array.
fasttb::Array array_of(const py::array& a, const char* argument) {
    require_contiguous(a, argument);
    return {a.data(), size_t(a.size()), array_dtype(a, argument)};
}

// A 1-D C-contiguous array of a supported dtype.
void require_histogram_values(const py::array& values) {
    require_contiguous(values, "values");
    if (values.ndim() != 1) throw py::value_error("values: must be a 1-D array");
}

py::tuple histogram_tuple(const fasttb::Histogram& h) {
    return py::make_tuple(h.min, h.max, h.num, h.sum, h.sum_squares, h.bucket_limit, h.bucket);
}

// Native-endian uint8, float32 and float64 pixels; floats are scaled while they are copied.
bool pixel_type(const py::array& a, PixelType* type) {
    if (py::array_t<uint8_t>::check_(a)) *type = PixelType::u8;
    else if (py::array_t<float>::check_(a)) *type = PixelType::f32;
    else if (py::array_t<double>::check_(a)) *type = PixelType::f64;
    else return false;
    return true;
}

// A 3-D C-contiguous array of pixels, HWC or (planar) CHW; `scaled`: floats accepted too.
fasttb::Pixels image_of(const py::array& pixels, bool planar, bool scaled) {
    require_contiguous(pixels, "pixels");
    PixelType type = PixelType::u8;
    const bool known = pixel_type(pixels, &type);
    if (pixels.ndim() != 3 || !known || (!scaled && type != PixelType::u8))
        throw py::value_error(std::string("pixels: must be a ") +
                              (scaled ? "uint8, float32 or float64" : "uint8") + " array of shape " +
                              (planar ? "(channels, height, width)" : "(height, width, channels)"));
    const auto dim = [&](int i) { return uint64_t(pixels.shape(i)); };
    return planar ? fasttb::Pixels{pixels.data(), type, dim(1), dim(2), dim(0), true}
                  : fasttb::Pixels{pixels.data(), type, dim(0), dim(1), dim(2), false};
}

// The bytes of a C-contiguous buffer. Strided and reversed views are refused: hashing them as
// if they were contiguous would read the wrong bytes, some past the end of the buffer.
class ContiguousBytes {
public:
    explicit ContiguousBytes(const py::object& data) {
        if (PyObject_GetBuffer(data.ptr(), &view_, PyBUF_C_CONTIGUOUS) != 0) throw py::error_already_set();
    }
    ~ContiguousBytes() { PyBuffer_Release(&view_); }
    ContiguousBytes(const ContiguousBytes&) = delete;
    ContiguousBytes& operator=(const ContiguousBytes&) = delete;
    const uint8_t* data() const { return static_cast<const uint8_t*>(view_.buf); }
    size_t size() const { return size_t(view_.len); }

private:
    Py_buffer view_{};
};

void register_checksums(py::module_& m) {
    m.def("crc32c", [](const py::object& data, uint32_t crc) {
        const ContiguousBytes b(data);
        return fasttb::crc32c_extend(crc, b.data(), b.size());
    }, py::arg("data"), py::arg("crc") = 0, "CRC-32C of `data`, extending `crc`.");
    m.def("masked_crc32c", [](const py::object& data) {
        const ContiguousBytes b(data);
        return fasttb::masked_crc32c(b.data(), b.size());
    }, py::arg("data"), "The TFRecord masked CRC-32C of `data`.");
    m.def("crc32c_portable", [](const py::object& data, uint32_t crc) {
        const ContiguousBytes b(data);
        return fasttb::crc32c_extend_portable(crc, b.data(), b.size());
    }, py::arg("data"), py::arg("crc") = 0);
    m.def("crc32c_hardware", [](const py::object& data, uint32_t crc) {
        if (!fasttb::crc32c_hardware_available())
            throw std::runtime_error("this CPU has no CRC-32C instructions");
        const ContiguousBytes b(data);
        return fasttb::crc32c_extend_hardware(crc, b.data(), b.size());
    }, py::arg("data"), py::arg("crc") = 0);
    m.def("crc32c_hardware_available", &fasttb::crc32c_hardware_available);
    m.def("crc32", [](const py::object& data, uint32_t crc) {
        const ContiguousBytes b(data);
        return fasttb::crc32_extend(crc, b.data(), b.size());
    }, py::arg("data"), py::arg("crc") = 0, "CRC-32 of `data` as PNG chunks carry it (zlib.crc32).");
    m.def("crc32_pclmul", [](const py::object& data, uint32_t crc) {
        if (!fasttb::pclmul_available()) throw std::runtime_error("this CPU has no PCLMULQDQ");
        const ContiguousBytes b(data);
        return fasttb::crc32_extend_pclmul(crc, b.data(), b.size());
    }, py::arg("data"), py::arg("crc") = 0);
    m.def("crc32_pclmul_available", &fasttb::pclmul_available);
    m.def("crc32c_implementation", &fasttb::crc32c_implementation);
    m.def("frame_record", [](const py::bytes& payload) {
        std::string out;
        const std::string_view p = payload;
        fasttb::append_record(out, p.data(), p.size());
        return py::bytes(out);
    }, py::arg("payload"), "One TFRecord: length, masked CRCs and `payload`.");
}

void register_encoders(py::module_& m) {
    m.def("encode_scalar_event", [](double wall_time, int64_t step, const std::string& tag,
                                    double value, int kind) {
        if (kind < 0 || kind > 2) throw py::value_error("kind: must be 0, 1 or 2");
        std::string out;
        fasttb::encode_scalar_event(out, wall_time, step, tag, value, fasttb::ScalarKind(kind));
        return py::bytes(out);
    }, py::arg("wall_time"), py::arg("step"), py::arg("tag"), py::arg("value"), py::arg("kind") = 0);
    m.def("encode_file_version_event", [](double wall_time, int64_t step, bool with_source) {
        std::string out;
        fasttb::encode_file_version_event(out, wall_time, step, with_source);
        return py::bytes(out);
    }, py::arg("wall_time"), py::arg("step") = 0, py::arg("with_source") = true);
    m.def("tf_histogram", [](const py::array& values, int64_t max_bins) {
        require_histogram_values(values);
        const auto type = array_dtype(values);
        const size_t n = size_t(values.size());
        if (n == 0) throw py::value_error("The input has no element.");
        if (fasttb::tensorflow_histogram_is_empty(values.data(), n, type, max_bins))
            throw py::value_error("The histogram is empty, please file a bug report.");
        fasttb::Histogram h;
        {
            PythonLock lock;
            fasttb::Unlocked unlocked(lock);  // reads only the array, which the caller holds
            h = fasttb::tensorflow_histogram(values.data(), n, type, max_bins);
        }
        return histogram_tuple(h);
    }, py::arg("values"), py::arg("max_bins") = 0,
       "(min, max, num, sum, sum_squares, bucket_limit, bucket) for the default edges.");
    m.def("scan_events", [](const py::object& data, bool scalars, bool values, bool skip_corrupt) {
        // A contiguous view of the file's bytes (bytes, bytearray, mmap), held for the scan.
        Py_buffer view;
        if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
        std::unique_ptr<Py_buffer, void (*)(Py_buffer*)> held(&view, PyBuffer_Release);
        fasttb::ScanOptions options;
        options.scalars = scalars;
        options.values = values;
        options.skip_corrupt = skip_corrupt;
        fasttb::ScanResult r;
        {
            PythonLock lock;
            fasttb::Unlocked unlocked(lock);  // reads only the buffer, which `held` keeps
            fasttb::scan_event_file(static_cast<const uint8_t*>(view.buf), size_t(view.len), options, r);
        }
        auto column = [](const auto& v) {
            return py::bytes(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(v[0]));
        };
        py::list tags;
        for (const std::string& t : r.tags)
            tags.append(py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(t.data(), Py_ssize_t(t.size()), "replace")));
        py::dict out;
        out["tags"] = tags;
        out["scalar_tag_order"] = column(r.scalar_tag_order);
        out["value_tag_order_kind"] = column(r.value_tag_order_kind);
        out["value_tag_order"] = column(r.value_tag_order);
        out["scalar_event"] = column(r.scalar_event);
        out["scalar_step"] = column(r.scalar_step);
        out["scalar_wall_time"] = column(r.scalar_wall_time);
        out["scalar_value"] = column(r.scalar_value);
        out["scalar_tag"] = column(r.scalar_tag);
        out["value_event"] = column(r.value_event);
        out["value_step"] = column(r.value_step);
        out["value_wall_time"] = column(r.value_wall_time);
        out["value_tag"] = column(r.value_tag);
        out["value_kind"] = column(r.value_kind);
        out["value_offset"] = column(r.value_offset);
        out["value_length"] = column(r.value_length);
        out["metadata_tag"] = column(r.metadata_tag);
        out["metadata_offset"] = column(r.metadata_offset);
        out["metadata_length"] = column(r.metadata_length);
        out["purge_event"] = column(r.purge_event);
        out["purge_step"] = column(r.purge_step);
        out["purge_all"] = column(r.purge_all);
        out["purge_tags_begin"] = column(r.purge_tags_begin);
        out["purge_tags_end"] = column(r.purge_tags_end);
        out["purge_tag_list"] = column(r.purge_tag_list);
        out["events"] = r.events;
        out["graphs"] = r.graphs;
        out["run_metadata"] = r.run_metadata;
        out["bytes"] = r.bytes;
        out["truncated_at"] = r.truncated ? py::object(py::int_(r.truncated_at)) : py::object(py::none());
        out["error"] = r.error.empty() ? py::object(py::none()) : py::object(py::str(r.error));
        out["error_at"] = r.error_at;
        out["skipped"] = r.skipped;
        return out;
    }, py::arg("data"), py::arg("scalars") = true, py::arg("values") = true, py::arg("skip_corrupt") = false,
       "Scan an event file's bytes: records checked, Events decoded into columns (see csrc/reader/reader.h).");
    m.def("default_edges", [] { return fasttb::default_edges(); });
    m.def("encode_png", [](const py::array& array, bool planar) {
        const fasttb::Pixels pixels = image_of(array, planar, false);
        if (pixels.height < 1 || pixels.width < 1 || pixels.height > INT32_MAX || pixels.width > INT32_MAX ||
            pixels.channels < 1 || pixels.channels > 4)
            throw py::value_error("pixels: 1 to 2**31 - 1 rows and columns, 1 to 4 channels");
        const auto* data = static_cast<const uint8_t*>(pixels.data);
        const auto h = uint32_t(pixels.height), w = uint32_t(pixels.width), c = uint32_t(pixels.channels);
        std::string out;
        bool ok;
        {
            PythonLock lock;
            fasttb::Unlocked unlocked(lock);  // reads only the array, which the caller holds
            ok = planar ? fasttb::encode_png_planes(data, c, h, w, &out) : fasttb::encode_png(data, h, w, c, &out);
        }
        if (!ok) throw std::bad_alloc();  // the shape was checked above
        return py::bytes(out);
    }, py::arg("pixels"), py::arg("planar") = false,
       "PNG bytes of an (height, width, channels) uint8 image, or with planar=True of a "
       "(channels, height, width) one, interleaved as it is encoded (one channel is stored as RGB).");
    m.def("_deflate", [](py::bytes data, unsigned unit, size_t max_slice) {
        // For tests: a raw deflate stream of `data`, given to the encoder in slices of
        // `max_slice` bytes as the PNG layer gives it filtered rows, for zlib's inflate to check.
        const std::string in(data);
        if (in.empty()) throw py::value_error("data: at least one byte");
        if (unit < 1 || unit > 8) throw py::value_error("unit: 1 to 8");
        if (max_slice < 1 || max_slice > fasttb::deflate::kMaxSlice)
            throw py::value_error("max_slice: 1 to 131072");
        const size_t n = in.size();
        std::vector<uint8_t> buf(n + 16, 0);  // the matcher reads whole words past the end
        std::memcpy(buf.data(), in.data(), n);
        const size_t slices = (n + max_slice - 1) / max_slice;
        std::vector<uint8_t> out(2 * n + 2048 * (slices + 1) + 16);
        fasttb::DeflateEncoder encoder;
        if (!encoder.start(out.data(), n, max_slice)) throw std::bad_alloc();
        for (size_t at = 0; at < n;) {
            const size_t part = std::min(n - at, max_slice);
            const size_t history = std::min(fasttb::deflate::kWindow, at);
            encoder.add_slice(buf.data() + at, part, history, unit, at + part == n);
            at += part;
        }
        const uint8_t* end = encoder.finish();
        return py::bytes(reinterpret_cast<const char*>(out.data()), size_t(end - out.data()));
    }, py::arg("data"), py::arg("unit") = 3, py::arg("max_slice") = fasttb::deflate::kMaxSlice,
       "For tests: the raw deflate stream (RFC 1951) of `data` that the PNG encoder would write.");
    m.def("tsv_text", [](const py::array& matrix) {
        if (matrix.ndim() != 2) throw py::value_error("matrix: must be a 2-D array");
        const fasttb::Array m = array_of(matrix, "matrix");
        fasttb::TsvParams params{uint64_t(matrix.shape(0)), uint64_t(matrix.shape(1)), m.type};
        std::string out;
        fasttb::append_tsv(out, params, static_cast<const char*>(m.data));
        return py::bytes(out);
    }, py::arg("matrix"), "tensors.tsv of a 2-D array: str() of every element, as Python writes it.");
    m.def("encode_gif", [](const py::array& frames, double fps) {
        require_contiguous(frames, "frames");
        if (!py::array_t<uint8_t>::check_(frames) || frames.ndim() != 4)
            throw py::value_error("frames: must be a uint8 array of shape (frames, height, width, channels)");
        const auto* data = static_cast<const uint8_t*>(frames.data());
        const auto dim = [&](int i) { return uint32_t(frames.shape(i)); };
        std::string out;
        bool ok;
        {
            PythonLock lock;
            fasttb::Unlocked unlocked(lock);
            ok = fasttb::encode_gif(data, dim(0), dim(1), dim(2), dim(3), fps, &out);
        }
        if (!ok) throw py::value_error("frames: 1 or 3 channels, 1 to 65535 pixels high and wide");
        return py::bytes(out);
    }, py::arg("frames"), py::arg("fps"), "An animated GIF of uint8 (T, H, W, C) frames, as add_video makes it.");
    m.def("scale_to_uint8", [](const py::array& values) {
        require_contiguous(values, "values");
        PixelType type = PixelType::u8;
        if (!pixel_type(values, &type) || type == PixelType::u8)
            throw py::value_error("values: must be a float32 or float64 array");
        py::array_t<uint8_t> out(std::vector<py::ssize_t>(values.shape(), values.shape() + values.ndim()));
        const size_t n = size_t(values.size());
        if (type == PixelType::f32) fasttb::scale_float32_to_uint8(values.data(), n, out.mutable_data());
        else fasttb::scale_float64_to_uint8(values.data(), n, out.mutable_data());
        return out;
    }, py::arg("values"), "The pixels add_image makes of float values (the stock uint8 rule).");
}

// The Python side of a Hold (hold.h): one reference, let go (cancelling the hold unless it was
// published) when the Python object goes.
class HoldHandle {
public:
    explicit HoldHandle(Hold* hold) : hold_(hold) {}
    ~HoldHandle() {
        hold_->cancel();
        hold_->release();
    }
    HoldHandle(const HoldHandle&) = delete;
    HoldHandle& operator=(const HoldHandle&) = delete;
    Hold* get() const { return hold_; }

private:
    Hold* hold_;
};

void register_hold(py::module_& m) {
    py::class_<HoldHandle>(m, "Hold",
        "A place kept in the queue (EventWriter.push_hold) for records made later by fill().")
        .def("fill", [](HoldHandle& h, const py::function& make) {
            if (h.get()->resolved()) throw py::value_error("hold: already filled or cancelled");
            if (Hold::filling()) throw py::value_error("hold: fill() cannot be nested");
            struct Publish {  // the records made so far are kept even if make() raises
                Hold* hold;
                ~Publish() { hold->publish(); }
            } publish{h.get()};
            Hold::Filling filling(h.get());
            make();
        }, py::arg("make"),
           "Call make(): every record it queues, on any writer, from this thread, goes into the "
           "hold; then the worker writes them where the hold was queued.")
        .def("cancel", [](HoldHandle& h) { h.get()->cancel(); },
             "Nothing will be filled in: the worker goes past the hold. No-op once filled.")
        .def_property_readonly("resolved", [](HoldHandle& h) { return h.get()->resolved(); },
                               "Filled or cancelled.")
        .def("_keep_locked", [](HoldHandle& h, double seconds) { h.get()->keep_locked_for(seconds); },
             py::arg("seconds"),
             "Tests only: a native thread holds this hold's lock and the holds' registry's lock "
             "for `seconds` (as at a fork in the middle of an append or a release).");
}

void register_writer(py::module_& m) {
    register_hold(m);
    py::class_<EventWriter, std::shared_ptr<EventWriter>>(m, "EventWriter",
        "One event file, written by the background worker.")
        .def(py::init([](const py::bytes& path, double flush_secs, bool drop_when_full,
                         double wall_time, bool later, bool source_metadata) {
                 const std::string p = path;
                 if (p.find('\0') != std::string::npos)
                     throw py::value_error("path: embedded null byte");
                 Status status;
                 auto w = EventWriter::open(p, flush_secs, drop_when_full, wall_time, &status, later,
                                            source_metadata);
                 raise_if_failed(status);
                 return w;
             }),
             py::arg("path"), py::arg("flush_secs") = 120.0, py::arg("drop_when_full") = false,
             py::arg("wall_time") = 0.0, py::arg("later") = false, py::arg("source_metadata") = true,
             "later: the worker creates the file and its directories (failures raise later); "
             "source_metadata: the first record names the writer, as torch's does")
        .def("push_scalar", [](EventWriter& w, const py::str& tag, double value, int64_t step,
                               double wall_time, int kind) {
            if (kind < 0 || kind > 2) throw py::value_error("kind: must be 0, 1 or 2");
            PythonLock lock;
            raise_if_failed(fasttb::push_scalar(w, utf8(tag), value, step, wall_time,
                                                fasttb::ScalarKind(kind), lock));
        }, py::arg("tag"), py::arg("value"), py::arg("step"), py::arg("wall_time"),
           py::arg("kind") = 0)
        .def("push_event", [](EventWriter& w, const py::bytes& event) {
            PythonLock lock;
            raise_if_failed(fasttb::push_bytes(w, ItemKind::event, {}, std::string_view(event), 0, 0, lock));
        }, py::arg("event"), "Queue a serialized Event as it is.")
        .def("push_summary", [](EventWriter& w, const py::bytes& summary, int64_t step,
                                double wall_time) {
            PythonLock lock;
            raise_if_failed(fasttb::push_bytes(w, ItemKind::summary, {}, std::string_view(summary), step,
                                               wall_time, lock));
        }, py::arg("summary"), py::arg("step"), py::arg("wall_time"))
        .def("push_purge_markers", [](EventWriter& w, int64_t step, double first_wall_time,
                                      double second_wall_time) {
            PythonLock lock;
            raise_if_failed(fasttb::push_purge_markers(w, step, first_wall_time, second_wall_time, lock));
        }, py::arg("step"), py::arg("first_wall_time"), py::arg("second_wall_time"),
           "Queue the purge_step pair: file_version with a step, then SessionLog.START.")
        .def("push_histogram", [](EventWriter& w, const py::str& tag, const py::array& values,
                                  int64_t max_bins, int64_t step, double wall_time) {
            require_histogram_values(values);
            const auto type = array_dtype(values);
            PythonLock lock;
            raise_if_failed(fasttb::push_histogram(w, utf8(tag), values.data(), size_t(values.size()),
                                                   type, max_bins, step, wall_time, lock));
        }, py::arg("tag"), py::arg("values"), py::arg("max_bins"), py::arg("step"),
           py::arg("wall_time"))
        .def("push_histogram_raw", [](EventWriter& w, const py::str& tag, double min, double max,
                                      double num, double sum, double sum_squares,
                                      const std::vector<double>& limits,
                                      const std::vector<double>& counts, int64_t step,
                                      double wall_time) {
            if (limits.size() != counts.size())
                throw py::value_error("len(bucket_limits) != len(bucket_counts), see the document.");
            const double stats[5] = {min, max, num, sum, sum_squares};
            PythonLock lock;
            raise_if_failed(fasttb::push_histogram_raw(w, utf8(tag), stats, limits.data(),
                                                       counts.data(), limits.size(), step, wall_time, lock));
        }, py::arg("tag"), py::arg("min"), py::arg("max"), py::arg("num"), py::arg("sum"),
           py::arg("sum_squares"), py::arg("bucket_limits"), py::arg("bucket_counts"),
           py::arg("step"), py::arg("wall_time"))
        .def("push_image", [](EventWriter& w, const py::str& tag, const py::array& pixels,
                              int64_t step, double wall_time, int64_t height, int64_t width) {
            const fasttb::Pixels image = image_of(pixels, false, true);
            if (height < 0 || width < 0) throw py::value_error("height, width: must not be negative");
            PythonLock lock;
            raise_if_failed(fasttb::push_image(w, utf8(tag), image, uint64_t(height),
                                               uint64_t(width), step, wall_time, lock));
        }, py::arg("tag"), py::arg("pixels"), py::arg("step"), py::arg("wall_time"),
           py::arg("height") = 0, py::arg("width") = 0,
           "Queue an image (uint8, or float scaled as the stock writer scales it), PNG-encoded on "
           "the worker. height/width: the size Summary.Image records, when it differs from the "
           "pixels' (0: the pixels' own).")
        .def("push_image_planes", [](EventWriter& w, const py::str& tag, const py::array& planes,
                                     int64_t step, double wall_time) {
            const fasttb::Pixels image = image_of(planes, true, true);
            PythonLock lock;
            raise_if_failed(fasttb::push_image(w, utf8(tag), image, 0, 0, step, wall_time, lock));
        }, py::arg("tag"), py::arg("planes"), py::arg("step"), py::arg("wall_time"),
           "Queue a (channels, height, width) image as it is (uint8, or float scaled as the stock "
           "writer scales it): the worker interleaves the planes (one plane is stored as RGB), so "
           "the caller pays one pass over its array.")
        .def("push_text", [](EventWriter& w, const py::str& tag, const py::str& text, int64_t step,
                             double wall_time) {
            PythonLock lock;
            raise_if_failed(fasttb::push_bytes(w, ItemKind::text, utf8(tag), utf8(text), step, wall_time, lock));
        }, py::arg("tag"), py::arg("text"), py::arg("step"), py::arg("wall_time"),
           "Queue a text summary (tag + '/text_summary', rendered as Markdown by TensorBoard).")
        .def("push_pr_curve", [](EventWriter& w, const py::str& tag, const py::array& predictions,
                                 const py::array& labels, const py::object& weights, double weight,
                                 uint32_t num_thresholds, int64_t step, double wall_time) {
            const fasttb::Array p = array_of(predictions, "predictions"), l = array_of(labels, "labels");
            fasttb::Array wt{nullptr, 0, fasttb::DType::f64};
            py::array weight_array;
            if (!weights.is_none()) {
                weight_array = py::array::ensure(weights);
                if (!weight_array) throw py::type_error("weights: expected an array");
                wt = array_of(weight_array, "weights");
            }
            PythonLock lock;
            raise_if_failed(fasttb::push_pr_curve(w, utf8(tag), p, l, wt, weight, num_thresholds, step,
                                                  wall_time, lock));
        }, py::arg("tag"), py::arg("predictions"), py::arg("labels"), py::arg("weights"),
           py::arg("weight"), py::arg("num_thresholds"), py::arg("step"), py::arg("wall_time"),
           "Queue a PR curve, computed on the worker (predictions float32/float64, or int32 bucket "
           "indices; weights per element, or None and one `weight`).")
        .def("push_audio", [](EventWriter& w, const py::str& tag, const py::array& samples,
                              double sample_rate, int64_t step, double wall_time) {
            const fasttb::Array a = array_of(samples, "snd_tensor");
            PythonLock lock;
            raise_if_failed(fasttb::push_audio(w, utf8(tag), a, sample_rate, step, wall_time, lock));
        }, py::arg("tag"), py::arg("samples"), py::arg("sample_rate"), py::arg("step"),
           py::arg("wall_time"), "Queue a mono clip (float samples), WAV-encoded on the worker.")
        .def("push_video", [](EventWriter& w, const py::str& tag, const py::array& frames, double fps,
                              int64_t step, double wall_time) {
            require_contiguous(frames, "vid_tensor");
            if (!py::array_t<uint8_t>::check_(frames) || frames.ndim() != 4)
                throw py::value_error("vid_tensor: must be a uint8 array of shape (frames, height, width, channels)");
            const auto dim = [&](int i) { return uint64_t(frames.shape(i)); };
            PythonLock lock;
            raise_if_failed(fasttb::push_video(w, utf8(tag), static_cast<const uint8_t*>(frames.data()),
                                               dim(0), dim(1), dim(2), dim(3), fps, step, wall_time, lock));
        }, py::arg("tag"), py::arg("frames"), py::arg("fps"), py::arg("step"), py::arg("wall_time"),
           "Queue a video of uint8 (T, H, W, C) frames, GIF-encoded on the worker.")
        .def("write_file", [](EventWriter& w, const py::bytes& path, const py::bytes& data) {
            PythonLock lock;
            raise_if_failed(fasttb::push_bytes(w, ItemKind::side_bytes, std::string_view(path),
                                               std::string_view(data), 0, 0, lock));
        }, py::arg("path"), py::arg("data"), "Have the worker write `data` to `path` (a side file).")
        .def("write_tsv", [](EventWriter& w, const py::bytes& path, const py::array& matrix) {
            if (matrix.ndim() != 2) throw py::value_error("mat: must be a 2-D array");
            const fasttb::Array m = array_of(matrix, "mat");
            PythonLock lock;
            raise_if_failed(fasttb::push_tsv(w, std::string_view(path), m, uint64_t(matrix.shape(0)),
                                             uint64_t(matrix.shape(1)), lock));
        }, py::arg("path"), py::arg("matrix"), "Have the worker write tensors.tsv of a 2-D array.")
        .def("write_sprite", [](EventWriter& w, const py::bytes& path, const py::array& images,
                                uint64_t columns) {
            if (images.ndim() != 4) throw py::value_error("label_img: must be an (N, C, H, W) array");
            const fasttb::Array a = array_of(images, "label_img");
            const auto dim = [&](int i) { return uint64_t(images.shape(i)); };
            PythonLock lock;
            raise_if_failed(fasttb::push_sprite(w, std::string_view(path), a, dim(0), dim(1), dim(2),
                                                dim(3), columns, lock));
        }, py::arg("path"), py::arg("images"), py::arg("columns"),
           "Have the worker tile (N, C, H, W) images into sprite.png.")
        .def("push_hold", [](EventWriter& w) {
            Hold* hold = nullptr;
            raise_if_failed(w.push_hold(&hold));
            return std::make_unique<HoldHandle>(hold);
        }, "Keep a place for records made later (Hold.fill), in the order of this call.")
        .def("check", [](const EventWriter& w) { raise_if_failed(w.error()); },
             "Raise the worker's error for this file, if any.")
        .def("flush", [](EventWriter& w) {
            PythonLock lock;
            raise_if_failed(w.flush(lock));
        }, "Return once every record queued before the call is written to the OS.")
        .def("rotate", [](EventWriter& w, const py::bytes& next_path, bool source_metadata) {
            const std::string p = next_path;
            if (p.find('\0') != std::string::npos) throw py::value_error("next_path: embedded null byte");
            PythonLock lock;
            raise_if_failed(w.rotate(p, source_metadata, lock));
        }, py::arg("next_path"), py::arg("source_metadata") = true,
           "Flush, then end the file's segment: the next record starts a new event file at "
           "`next_path` (its first record names the writer when source_metadata is true). "
           "Returns once the segment is closed on disk.")
        .def("fail", [](EventWriter& w, int err, const std::string& context, const py::bytes& path) {
            raise_if_failed(w.fail(err, context, std::string_view(path)));
        }, py::arg("errno"), py::arg("context"), py::arg("path"),
           "Fail the file as the worker would: every later call raises "
           "OSError(errno, 'fasttb: ' + context, path). Queued; ignored once closing.")
        .def("close", [](EventWriter& w, bool wait) {
            PythonLock lock;
            raise_if_failed(w.close(lock, wait));
        }, py::arg("wait") = true,
           "Write everything queued, then close the file. Idempotent. wait=False queues the "
           "close and returns; a later close() waits for it and raises what failed.")
        .def_property_readonly("closed", &EventWriter::closed)
        .def_property_readonly("stale", &EventWriter::stale)
        .def_property_readonly("error_unreported", &EventWriter::error_unreported,
                               "The worker failed this file and no call has raised it yet.")
        .def_property_readonly("path", [](const EventWriter& w) { return py::bytes(w.path()); })
        .def("stats", [](const EventWriter& w) {
            const auto& s = w.state();
            py::dict d;
            d["records"] = s.records_written.load();
            d["bytes"] = s.bytes_written.load();
            d["dropped"] = s.dropped.load();
            d["stalls"] = s.stalls.load();
            d["lost"] = s.lost.load();
            return d;
        }, "Counters of this file: records and bytes written, drops, stalls, records lost to an error.");
}

void register_fast_path(py::module_& m) {
    if (!fasttb::add_fast_paths(m.ptr())) throw py::error_already_set();
    m.def("set_scalar_target", [](const py::object& writer, std::shared_ptr<EventWriter> target) {
        if (!fasttb::set_scalar_target(writer.ptr(), std::move(target))) throw py::error_already_set();
    }, py::arg("writer"), py::arg("target").none(true),
       "Send the plain scalars of `writer` (a NativeWriter) to an event writer (None: every "
       "scalar takes the general path).");
}

void register_engine(py::module_& m) {
    m.def("flush_all", [] {
        PythonLock lock;
        raise_if_failed(fasttb::flush_all_files(lock));
    }, "Write every open event file of this process to the OS.");
    m.def("cancel_holds", [] { return Hold::cancel_all(); },
          "Cancel every hold not yet filled (interpreter exit): the worker goes past them. "
          "Returns how many.");
    m.def("engine_stats", [] {
        py::dict d;
        fasttb::Engine* e = fasttb::Engine::current();
        d["queue_bytes"] = e ? e->queued_bytes() : 0;
        d["queue_high_water"] = e ? e->high_water() : 0;
        d["queue_limit"] = e ? e->limit() : 0;
        d["items_processed"] = e ? e->items_processed() : 0;
        d["idle_large_bytes"] = e ? e->pool().idle_large_bytes() : 0;  // kept for reuse
        return d;
    }, "Counters of the process-wide queue and worker.");
    const auto started = [] {
        Status status;
        fasttb::Engine* e = fasttb::Engine::start(&status);
        raise_if_failed(status);
        return e;
    };
    m.def("reset_queue_high_water", [started] { started()->reset_high_water(); },
          "Start the queue's high-water mark again from what is queued now.");
    m.def("_pause_worker", [started](bool paused) {
        fasttb::Engine* engine = started();
        PythonLock lock;
        fasttb::Unlocked unlocked(lock);
        engine->set_paused(paused);
    },
          py::arg("paused"), "Benchmarks and tests only: stop (or restart) the worker taking items.");
    m.def("set_queue_limit", [started](size_t bytes) {
        if (bytes == 0) throw py::value_error("bytes: must be positive");
        started()->set_limit(bytes);
    }, py::arg("bytes"), "Bound the queue to `bytes` (default 256 MiB).");
    m.def("parse_size", [](const std::string& text) -> py::object {
        size_t bytes = 0;
        if (!fasttb::parse_size(text.c_str(), &bytes)) return py::none();
        return py::int_(bytes);
    }, py::arg("text"), "A size such as '256M' in bytes, as FASTTB_QUEUE_BYTES reads it (None if malformed).");
    m.def("termination_pending", &fasttb::termination_pending,
          "True once a SIGTERM is being drained: the process ends soon (termination.h).");
    m.def("expect_termination_uploads", [](double seconds) {
        fasttb::expect_termination_uploads(seconds > 0 ? long(std::min(seconds, 3600.0) * 1000) : 0);
    }, py::arg("seconds"), "On SIGTERM, wait up to `seconds` after the drain for termination_uploads_done() (0: not).");
    m.def("termination_uploads_done", &fasttb::termination_uploads_done,
          "The upload thread has uploaded what it could after a SIGTERM: the process may end.");
    fasttb::install_exit_handshake_fork_handlers();
    m.def("_exit_hook", &fasttb::begin_interpreter_exit,
          "Registered with atexit at interpreter start (_fasttb_exit.py), else when the module "
          "loads: see python_interop.h.");
    if (!py::module_::import("sys").attr("modules").contains("_fasttb_exit"))
        py::module_::import("atexit").attr("register")(m.attr("_exit_hook"));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "fasttb's native core: CRC32C, event encoding and the background writer.";
    register_checksums(m);
    register_encoders(m);
    register_writer(m);
    register_fast_path(m);
    register_engine(m);
}
