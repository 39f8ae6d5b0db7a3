// Event encoders; see event.h. Sizes of nested messages are computed before they are written,
// because protobuf prefixes every sub-message with its length.
#include "format/event.h"

#include <cstddef>
#include <vector>

#include "format/event_wire.h"
#include "format/wire.h"

namespace fasttb {
namespace {

using namespace event_wire;

constexpr std::string_view kFileVersion = "brain.Event:2";
constexpr std::string_view kWriterName = "tensorboard.summary.writer.event_file_writer";
constexpr std::string_view kScalarsPlugin = "scalars";

size_t packed_doubles_size(size_t count) { return count ? delimited_size(8 * count) : 0; }

void put_packed_doubles(std::string& out, uint32_t field, const std::vector<double>& v) {
    if (v.empty()) return;
    put_delimited_header(out, field, 8 * v.size());
    for (double d : v) put_fixed64(out, double_bits(d));
}

}  // namespace

void encode_file_version_event(std::string& out, double wall_time, int64_t step,
                               bool with_source) {
    put_envelope(out, wall_time, step);
    put_bytes_field(out, kFileVersionField, kFileVersion.data(), kFileVersion.size());
    if (with_source) {
        put_delimited_header(out, kSourceMetadata, delimited_size(kWriterName.size()));
        put_bytes_field(out, 1, kWriterName.data(), kWriterName.size());
    }
}

void encode_session_start_event(std::string& out, double wall_time, int64_t step) {
    put_envelope(out, wall_time, step);
    put_delimited_header(out, kSessionLog, 2);
    put_int32_field(out, 1, 1);  // SessionLog.status = START
}

void encode_scalar_event(std::string& out, double wall_time, int64_t step, std::string_view tag,
                         double value, ScalarKind kind) {
    if (kind == ScalarKind::simple_value) {
        put_summary_prefix(out, wall_time, step, tag_size(tag) + 5);
        put_tag(out, tag);
        put_varint(out, key(kSimpleValue, kFixed32));
        put_fixed32(out, float_bits(static_cast<float>(value)));
        return;
    }
    // New-style scalar: a rank-0 TensorProto plus metadata naming the scalars plugin.
    const bool dbl = kind == ScalarKind::tensor_double;
    const size_t tensor_body = 2 + (dbl ? delimited_size(8) : delimited_size(4));
    const size_t metadata_body = plugin_metadata_body(kScalarsPlugin, 0);
    put_summary_prefix(out, wall_time, step,
                       tag_size(tag) + delimited_size(tensor_body) + delimited_size(metadata_body));
    put_tag(out, tag);
    put_delimited_header(out, kTensor, tensor_body);
    put_int32_field(out, 1, dbl ? 2 : 1);  // dtype: DT_DOUBLE or DT_FLOAT
    if (dbl) {
        put_delimited_header(out, 6, 8);  // double_val, packed
        put_fixed64(out, double_bits(value));
    } else {
        put_delimited_header(out, 5, 4);  // float_val, packed
        put_fixed32(out, float_bits(static_cast<float>(value)));
    }
    put_plugin_metadata(out, kScalarsPlugin, {});
}

void encode_summary_event(std::string& out, double wall_time, int64_t step,
                          std::string_view summary) {
    put_envelope(out, wall_time, step);
    put_bytes_field(out, kSummary, summary.data(), summary.size());
}

void encode_histogram_event(std::string& out, double wall_time, int64_t step,
                            std::string_view tag, const Histogram& h) {
    const size_t histo_body = double_field_size(h.min) + double_field_size(h.max) +
                              double_field_size(h.num) + double_field_size(h.sum) +
                              double_field_size(h.sum_squares) +
                              packed_doubles_size(h.bucket_limit.size()) +
                              packed_doubles_size(h.bucket.size());
    out.reserve(out.size() + histo_body + tag.size() + 64);
    put_summary_prefix(out, wall_time, step, tag_size(tag) + delimited_size(histo_body));
    put_tag(out, tag);
    put_delimited_header(out, kHisto, histo_body);
    put_double_field(out, 1, h.min);
    put_double_field(out, 2, h.max);
    put_double_field(out, 3, h.num);
    put_double_field(out, 4, h.sum);
    put_double_field(out, 5, h.sum_squares);
    put_packed_doubles(out, 6, h.bucket_limit);
    put_packed_doubles(out, 7, h.bucket);
}

void encode_image_event(std::string& out, double wall_time, int64_t step, std::string_view tag,
                        uint32_t height, uint32_t width, uint32_t channels, std::string_view png) {
    const size_t image_body = int32_field_size(height) + int32_field_size(width) +
                              int32_field_size(channels) + delimited_size(png.size());
    out.reserve(out.size() + image_body + tag.size() + 64);
    put_summary_prefix(out, wall_time, step, tag_size(tag) + delimited_size(image_body));
    put_tag(out, tag);
    put_delimited_header(out, kImage, image_body);
    put_int32_field(out, 1, height);
    put_int32_field(out, 2, width);
    put_int32_field(out, 3, channels);
    put_bytes_field(out, 4, png.data(), png.size());
}

}  // namespace fasttb
