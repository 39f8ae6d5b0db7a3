// Python bindings of the core (fasttb._core): argument conversion and error translation only;
// the logic lives in the other files. Every wait happens without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "crc32.h"
#include "crc32c.h"
#include "event.h"
#include "fastcall.h"
#include "histogram.h"
#include "pixels.h"
#include "png.h"
#include "record.h"
#include "writer.h"

namespace py = pybind11;
using fasttb::EventWriter;
using fasttb::Item;
using fasttb::ItemKind;

namespace {

// Raises OSError(errno, message, path); Python picks the subclass (FileNotFoundError, ...).
[[noreturn]] void raise_os_error(int err, const std::string& context, const std::string& path) {
    const std::string message = context + ": " + std::strerror(err);
    PyObject* filename = PyUnicode_DecodeFSDefaultAndSize(path.data(), Py_ssize_t(path.size()));
    if (filename) {
        PyObject* args = Py_BuildValue("(isO)", err, message.c_str(), filename);
        Py_DECREF(filename);
        if (args) {
            PyErr_SetObject(PyExc_OSError, args);
            Py_DECREF(args);
        }
    }
    throw py::error_already_set();
}

// The checks every push makes before it builds an item, so that the caller sees the worker's
// error (or its own misuse) on its own thread.
void require_ready(const EventWriter& w) {
    if (w.stale())
        throw py::value_error("fasttb: this event file belongs to the process that created it "
                              "(the writer was inherited through fork)");
    if (const int err = w.error()) raise_os_error(err, "fasttb: " + w.error_context(), w.path());
    if (w.closed()) throw py::value_error("fasttb: the event file is closed: " + w.path());
}

Item* new_item(EventWriter& w, ItemKind kind, const py::str& tag, size_t payload,
               int64_t step, double wall_time) {
    require_ready(w);
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(tag.ptr(), &n);
    if (!s) throw py::error_already_set();
    if (uint64_t(n) > UINT32_MAX) throw py::value_error("tag: longer than 4 GiB");
    Item* item = w.make_item(kind, {s, size_t(n)}, payload);
    if (!item) throw std::bad_alloc();
    item->step = step;
    item->wall_time = wall_time;
    return item;
}

void push(EventWriter& w, Item* item) { w.push<py::gil_scoped_release>(item); }

// Copies an array's bytes into an item; large copies run without the GIL (the array is kept
// alive by the caller's reference).
void copy_payload(Item* item, const py::array& a) {
    const size_t n = size_t(a.nbytes());
    if (n >= (size_t(1) << 20)) {
        py::gil_scoped_release release;
        std::memcpy(item->payload(), a.data(), n);
    } else if (n) {
        std::memcpy(item->payload(), a.data(), n);
    }
}

// Histograms this large are queued first and copied in afterwards, slice by slice, so that the
// worker buckets the first values while the caller is still copying the last ones.
constexpr size_t kStreamBytes = size_t(1) << 20;
constexpr size_t kStreamSlice = size_t(256) << 10;

void push_streamed(EventWriter& w, Item* item, const py::array& a) {
    item->streamed = true;
    if (w.push<py::gil_scoped_release>(item) == EventWriter::Result::dropped) return;
    // From here on the item is the worker's, except for the payload bytes not yet published:
    // after the last store below this thread must not touch it again.
    py::gil_scoped_release release;
    const auto* src = static_cast<const char*>(a.data());
    char* dst = item->payload();
    const size_t n = item->payload_len;
    for (size_t off = 0; off < n;) {
        const size_t len = std::min(kStreamSlice, n - off);
        std::memcpy(dst + off, src + off, len);
        off += len;
        item->filled.store(off, std::memory_order_release);
    }
}

fasttb::DType histogram_dtype(const py::array& a) {
    const py::dtype dt = a.dtype();
    const char kind = dt.kind();
    const auto size = dt.itemsize();
    using fasttb::DType;
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
    throw py::type_error("values: unsupported dtype " + std::string(py::str(dt)));
}

void require_contiguous(const py::array& a, const char* name) {
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + ": must be a C-contiguous array");
}

py::tuple histogram_tuple(const fasttb::Histogram& h) {
    return py::make_tuple(h.min, h.max, h.num, h.sum, h.sum_squares, h.bucket_limit, h.bucket);
}

// The stock writer's errors, raised here on the caller's thread so the worker never meets them.
void require_histogram_input(const py::array& values, int64_t max_bins) {
    require_contiguous(values, "values");
    if (values.ndim() != 1) throw py::value_error("values: must be a 1-D array");
    if (values.size() == 0) throw py::value_error("The input has no element.");
    if (fasttb::tensorflow_histogram_is_empty(values.data(), size_t(values.size()),
                                              histogram_dtype(values), max_bins))
        throw py::value_error("The histogram is empty, please file a bug report.");
}

enum class PixelType { u8, f32, f64, other };

// Native-endian float32 and float64 pixels are scaled on the way into the item (see pixels.h).
PixelType pixel_type(const py::array& a) {
    if (py::array_t<uint8_t>::check_(a)) return PixelType::u8;
    if (py::array_t<float>::check_(a)) return PixelType::f32;
    if (py::array_t<double>::check_(a)) return PixelType::f64;
    return PixelType::other;
}

// `scaled`: float32 and float64 pixels are accepted too (see copy_pixels).
void require_image(const py::array& pixels, bool planar, bool scaled) {
    require_contiguous(pixels, "pixels");
    const PixelType type = pixel_type(pixels);
    const bool accepted = type == PixelType::u8 || (scaled && type != PixelType::other);
    if (pixels.ndim() != 3 || !accepted)
        throw py::value_error(std::string("pixels: must be a ") +
                              (scaled ? "uint8, float32 or float64" : "uint8") + " array of shape " +
                              (planar ? "(channels, height, width)" : "(height, width, channels)"));
    const auto h = pixels.shape(planar ? 1 : 0), w = pixels.shape(planar ? 2 : 1),
               c = pixels.shape(planar ? 0 : 2);
    if (h < 1 || w < 1 || h > INT32_MAX || w > INT32_MAX)
        throw py::value_error("pixels: height and width must be between 1 and 2**31 - 1");
    if (c < 1 || c > 4) throw py::value_error("pixels: must have 1 to 4 channels");
}

// Scales a float32 or float64 array (`type`) into dst, one byte per value, the stock way.
// Large inputs are read without the GIL; the caller's reference keeps the array alive.
void scale_pixels(const py::array& a, PixelType type, uint8_t* dst) {
    const size_t n = size_t(a.size());
    auto scale = [&] {
        if (type == PixelType::f32) fasttb::scale_to_uint8(static_cast<const float*>(a.data()), n, dst);
        else fasttb::scale_to_uint8(static_cast<const double*>(a.data()), n, dst);
    };
    if (size_t(a.nbytes()) >= (size_t(1) << 20)) {
        py::gil_scoped_release release;
        scale();
    } else {
        scale();
    }
}

// Fills an image item's payload (one byte per value) from uint8 pixels, or from float pixels
// scaled the stock way.
void copy_pixels(Item* item, const py::array& a) {
    const PixelType type = pixel_type(a);
    if (type == PixelType::u8) return copy_payload(item, a);
    scale_pixels(a, type, reinterpret_cast<uint8_t*>(item->payload()));
}

void register_crc32c(py::module_& m) {
    const auto bytes_of = [](const py::buffer& b) {
        py::buffer_info info = b.request();
        return std::string_view(static_cast<const char*>(info.ptr), size_t(info.size * info.itemsize));
    };
    m.def("crc32c", [bytes_of](const py::buffer& data, uint32_t crc) {
        const auto s = bytes_of(data);
        return fasttb::crc32c_extend(crc, s.data(), s.size());
    }, py::arg("data"), py::arg("crc") = 0, "CRC-32C of `data`, extending `crc`.");
    m.def("masked_crc32c", [bytes_of](const py::buffer& data) {
        const auto s = bytes_of(data);
        return fasttb::masked_crc32c(s.data(), s.size());
    }, py::arg("data"), "The TFRecord masked CRC-32C of `data`.");
    m.def("crc32c_portable", [bytes_of](const py::buffer& data, uint32_t crc) {
        const auto s = bytes_of(data);
        return fasttb::crc32c_extend_portable(crc, s.data(), s.size());
    }, py::arg("data"), py::arg("crc") = 0);
    m.def("crc32c_hardware", [bytes_of](const py::buffer& data, uint32_t crc) {
        if (!fasttb::crc32c_hardware_available())
            throw std::runtime_error("this CPU has no CRC-32C instructions");
        const auto s = bytes_of(data);
        return fasttb::crc32c_extend_hardware(crc, s.data(), s.size());
    }, py::arg("data"), py::arg("crc") = 0);
    m.def("crc32c_hardware_available", &fasttb::crc32c_hardware_available);
    m.def("crc32", [bytes_of](const py::buffer& data, uint32_t crc) {
        const auto s = bytes_of(data);
        return fasttb::crc32_extend(crc, reinterpret_cast<const uint8_t*>(s.data()), s.size());
    }, py::arg("data"), py::arg("crc") = 0, "CRC-32 of `data` as PNG chunks carry it (zlib.crc32).");
    m.def("crc32_pclmul", [bytes_of](const py::buffer& data, uint32_t crc) {
        if (!fasttb::pclmul_available()) throw std::runtime_error("this CPU has no PCLMULQDQ");
        const auto s = bytes_of(data);
        return fasttb::crc32_extend_pclmul(crc, reinterpret_cast<const uint8_t*>(s.data()), s.size());
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
        require_histogram_input(values, max_bins);
        const auto type = histogram_dtype(values);
        fasttb::Histogram h;
        {
            py::gil_scoped_release release;  // reads only the array, which the caller holds
            h = fasttb::tensorflow_histogram(values.data(), size_t(values.size()), type, max_bins);
        }
        return histogram_tuple(h);
    }, py::arg("values"), py::arg("max_bins") = 0,
       "(min, max, num, sum, sum_squares, bucket_limit, bucket) for the default edges.");
    m.def("default_edges", [] { return fasttb::default_edges(); });
    m.def("encode_png", [](const py::array& pixels, bool planar) {
        require_image(pixels, planar, false);
        const auto* data = static_cast<const uint8_t*>(pixels.data());
        std::string out;
        bool ok;
        {
            py::gil_scoped_release release;
            ok = planar ? fasttb::encode_png_planes(data, uint32_t(pixels.shape(0)), uint32_t(pixels.shape(1)),
                                                    uint32_t(pixels.shape(2)), &out)
                        : fasttb::encode_png(data, uint32_t(pixels.shape(0)), uint32_t(pixels.shape(1)),
                                             uint32_t(pixels.shape(2)), &out);
        }
        if (!ok) throw py::value_error("pixels: image too large for PNG");
        return py::bytes(out);
    }, py::arg("pixels"), py::arg("planar") = false,
       "PNG bytes of an (height, width, channels) uint8 image, or with planar=True of a "
       "(channels, height, width) one, interleaved as it is encoded (one channel is stored as RGB).");
    m.def("scale_to_uint8", [](const py::array& values) {
        require_contiguous(values, "values");
        const PixelType type = pixel_type(values);
        if (type != PixelType::f32 && type != PixelType::f64)
            throw py::value_error("values: must be a float32 or float64 array");
        py::array_t<uint8_t> out(std::vector<py::ssize_t>(values.shape(), values.shape() + values.ndim()));
        scale_pixels(values, type, out.mutable_data());
        return out;
    }, py::arg("values"), "The pixels add_image makes of float values (the stock uint8 rule).");
}

void register_writer(py::module_& m) {
    py::class_<EventWriter, std::shared_ptr<EventWriter>>(m, "EventWriter",
        "One event file, written by the background worker.")
        .def(py::init([](const py::bytes& path, double flush_secs, bool drop_when_full,
                         double wall_time) {
                 int err = 0;
                 const std::string p = path;
                 auto w = EventWriter::open(p, flush_secs, drop_when_full, wall_time, &err);
                 if (!w) raise_os_error(err, "fasttb: cannot create event file", p);
                 return w;
             }),
             py::arg("path"), py::arg("flush_secs") = 120.0, py::arg("drop_when_full") = false,
             py::arg("wall_time") = 0.0)
        .def("push_scalar", [](EventWriter& w, const py::str& tag, double value, int64_t step,
                               double wall_time, int kind) {
            if (kind < 0 || kind > 2) throw py::value_error("kind: must be 0, 1 or 2");
            Item* item = new_item(w, ItemKind::scalar, tag, 0, step, wall_time);
            item->value = value;
            item->scalar_kind = fasttb::ScalarKind(kind);
            push(w, item);
        }, py::arg("tag"), py::arg("value"), py::arg("step"), py::arg("wall_time"),
           py::arg("kind") = 0)
        .def("push_event", [](EventWriter& w, const py::bytes& event) {
            const std::string_view e = event;
            Item* item = new_item(w, ItemKind::event, py::str(), e.size(), 0, 0);
            std::memcpy(item->payload(), e.data(), e.size());
            push(w, item);
        }, py::arg("event"), "Queue a serialized Event as it is.")
        .def("push_summary", [](EventWriter& w, const py::bytes& summary, int64_t step,
                                double wall_time) {
            const std::string_view s = summary;
            Item* item = new_item(w, ItemKind::summary, py::str(), s.size(), step, wall_time);
            std::memcpy(item->payload(), s.data(), s.size());
            push(w, item);
        }, py::arg("summary"), py::arg("step"), py::arg("wall_time"))
        .def("push_purge_markers", [](EventWriter& w, int64_t step, double first_wall_time,
                                      double second_wall_time) {
            Item* version = new_item(w, ItemKind::file_version, py::str(), 0, step, first_wall_time);
            push(w, version);
            push(w, new_item(w, ItemKind::session_start, py::str(), 0, step, second_wall_time));
        }, py::arg("step"), py::arg("first_wall_time"), py::arg("second_wall_time"),
           "Queue the purge_step pair: file_version with a step, then SessionLog.START.")
        .def("push_histogram", [](EventWriter& w, const py::str& tag, const py::array& values,
                                  int64_t max_bins, int64_t step, double wall_time) {
            require_histogram_input(values, max_bins);
            Item* item = new_item(w, ItemKind::histogram, tag, size_t(values.nbytes()), step,
                                  wall_time);
            item->dtype = histogram_dtype(values);
            item->count = size_t(values.size());
            item->max_bins = max_bins;
            if (item->payload_len < kStreamBytes) {
                copy_payload(item, values);
                push(w, item);
            } else {
                push_streamed(w, item, values);
            }
        }, py::arg("tag"), py::arg("values"), py::arg("max_bins"), py::arg("step"),
           py::arg("wall_time"))
        .def("push_histogram_raw", [](EventWriter& w, const py::str& tag, double min, double max,
                                      double num, double sum, double sum_squares,
                                      const std::vector<double>& limits,
                                      const std::vector<double>& counts, int64_t step,
                                      double wall_time) {
            if (limits.size() != counts.size())
                throw py::value_error("len(bucket_limits) != len(bucket_counts), see the document.");
            Item* item = new_item(w, ItemKind::histogram_raw, tag,
                                  2 * limits.size() * sizeof(double), step, wall_time);
            const double stats[5] = {min, max, num, sum, sum_squares};
            std::memcpy(item->stats, stats, sizeof stats);
            item->count = limits.size();
            double* out = reinterpret_cast<double*>(item->payload());
            std::copy(limits.begin(), limits.end(), out);
            std::copy(counts.begin(), counts.end(), out + limits.size());
            push(w, item);
        }, py::arg("tag"), py::arg("min"), py::arg("max"), py::arg("num"), py::arg("sum"),
           py::arg("sum_squares"), py::arg("bucket_limits"), py::arg("bucket_counts"),
           py::arg("step"), py::arg("wall_time"))
        .def("push_image", [](EventWriter& w, const py::str& tag, const py::array& pixels,
                              int64_t step, double wall_time, int64_t height, int64_t width) {
            require_image(pixels, false, true);
            if (height < 0 || width < 0 || height > INT32_MAX || width > INT32_MAX)
                throw py::value_error("height, width: must be between 0 and 2**31 - 1");
            Item* item = new_item(w, ItemKind::image, tag, size_t(pixels.size()), step, wall_time);
            item->height = uint32_t(pixels.shape(0));
            item->width = uint32_t(pixels.shape(1));
            item->channels = uint32_t(pixels.shape(2));
            item->shown_height = height ? uint32_t(height) : item->height;
            item->shown_width = width ? uint32_t(width) : item->width;
            copy_pixels(item, pixels);
            push(w, item);
        }, py::arg("tag"), py::arg("pixels"), py::arg("step"), py::arg("wall_time"),
           py::arg("height") = 0, py::arg("width") = 0,
           "Queue an image (uint8, or float scaled as the stock writer scales it), PNG-encoded on "
           "the worker. height/width: the size Summary.Image "
           "records, when it differs from the pixels' (0: the pixels' own).")
        .def("push_image_planes", [](EventWriter& w, const py::str& tag, const py::array& planes,
                                     int64_t step, double wall_time) {
            require_image(planes, true, true);
            Item* item = new_item(w, ItemKind::image, tag, size_t(planes.size()), step, wall_time);
            item->planes = uint32_t(planes.shape(0));
            item->height = item->shown_height = uint32_t(planes.shape(1));
            item->width = item->shown_width = uint32_t(planes.shape(2));
            item->channels = item->planes == 1 ? 3 : item->planes;
            copy_pixels(item, planes);
            push(w, item);
        }, py::arg("tag"), py::arg("planes"), py::arg("step"), py::arg("wall_time"),
           "Queue a (channels, height, width) image as it is (uint8, or float scaled as the stock "
           "writer scales it): the worker interleaves the planes (one plane is stored as RGB), so "
           "the caller pays one pass over its array.")
        .def("check", [](const EventWriter& w) {
            if (const int err = w.error()) raise_os_error(err, "fasttb: " + w.error_context(), w.path());
        }, "Raise the worker's error for this file, if any.")
        .def("flush", [](EventWriter& w) {
            {
                py::gil_scoped_release release;
                w.flush();
            }
            if (const int err = w.error()) raise_os_error(err, "fasttb: " + w.error_context(), w.path());
        }, "Return once every record queued before the call is written to the OS.")
        .def("close", [](EventWriter& w) {
            {
                py::gil_scoped_release release;
                w.close();
            }
            if (const int err = w.error()) raise_os_error(err, "fasttb: " + w.error_context(), w.path());
        }, "Write everything queued, then close the file. Idempotent.")
        .def_property_readonly("closed", &EventWriter::closed)
        .def_property_readonly("stale", &EventWriter::stale)
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
    m.def("scalar_fast_path", [](const py::object& owner) {
        PyObject* pair = fasttb::make_scalar_fast_path(owner.ptr());
        if (!pair) throw py::error_already_set();
        return py::reinterpret_steal<py::tuple>(pair);
    }, py::arg("owner"), "(push, add_scalar) builtins of a SummaryWriter's scalar fast path.");
    m.def("set_scalar_target", [](const py::object& builtin, std::shared_ptr<EventWriter> writer) {
        if (!fasttb::set_scalar_target(builtin.ptr(), std::move(writer))) throw py::error_already_set();
    }, py::arg("builtin"), py::arg("writer").none(true),
       "Point a scalar fast path at an event writer (None: everything takes the general path).");
}

void register_engine(py::module_& m) {
    m.def("flush_all", [] {
        py::gil_scoped_release release;
        fasttb::flush_all_files();
    }, "Write every open event file of this process to the OS.");
    m.def("engine_stats", [] {
        py::dict d;
        fasttb::Engine* e = fasttb::Engine::current();
        d["queue_bytes"] = e ? e->queued_bytes() : 0;
        d["queue_high_water"] = e ? e->high_water() : 0;
        d["queue_limit"] = e ? e->limit() : 0;
        d["items_processed"] = e ? e->items_processed() : 0;
        return d;
    }, "Counters of the process-wide queue and worker.");
    m.def("reset_queue_high_water", [] { fasttb::Engine::instance().reset_high_water(); },
          "Start the queue's high-water mark again from what is queued now.");
    m.def("_pause_worker", [](bool paused) { fasttb::Engine::instance().set_paused(paused); },
          py::arg("paused"), "Benchmarks only: stop (or restart) the worker taking items.");
    m.def("set_queue_limit", [](size_t bytes) {
        if (bytes == 0) throw py::value_error("bytes: must be positive");
        fasttb::Engine::instance().set_limit(bytes);
    }, py::arg("bytes"), "Bound the queue to `bytes` (default 256 MiB).");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "fasttb's native core: CRC32C, event encoding and the background writer.";
    register_crc32c(m);
    register_encoders(m);
    register_writer(m);
    register_fast_path(m);
    register_engine(m);
}
