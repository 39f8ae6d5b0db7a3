// Text, PR curve and audio events; see plugin_events.h.
#include "encoders/plugin_events.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <vector>

#include "encoders/dtype.h"
#include "format/event_wire.h"
#include "format/wire.h"

namespace fasttb {
namespace {

using namespace event_wire;

constexpr std::string_view kTextSuffix = "/text_summary";
constexpr uint32_t kDtString = 7, kDtFloat = 1;
// TensorProto fields.
constexpr uint32_t kDtype = 1, kTensorShape = 2, kFloatVal = 5, kStringVal = 8;
// Summary.Audio fields.
constexpr uint32_t kSampleRate = 1, kNumChannels = 2, kLengthFrames = 3, kEncodedAudio = 4,
                   kContentType = 5;
constexpr std::string_view kWav = "audio/wav";
// numpy.histogram adds weights up block by block (bincount over 65536 values at a time): the PR
// curve's sums follow the same order, so its doubles are the same.
constexpr size_t kHistogramBlock = 65536;

// TensorShapeProto{dim: [sizes...]} body; every size here fits one varint byte.
size_t small_shape_body(size_t dims) { return dims * 4; }

void put_small_shape(std::string& out, std::initializer_list<uint32_t> sizes) {
    put_delimited_header(out, kTensorShape, small_shape_body(sizes.size()));
    for (uint32_t size : sizes) {
        put_delimited_header(out, 2, 2);  // dim
        put_varint(out, key(1, kVarint));
        put_varint(out, size);
    }
}

// Bucket k of prediction p for N thresholds: int32(floor(p * (N - 1))) computed in the
// prediction's own precision; -1 when k falls outside [0, N - 1] (NaN included).
template <class T>
int32_t bucket_of(T p, uint32_t n) {
    // Below 0 the bucket is out of range anyway, and from 0 on truncation is floor: no call to
    // floor (which baseline x86-64 cannot inline).
    const T v = p * static_cast<T>(n - 1);
    return v >= 0 && v < static_cast<T>(n) ? static_cast<int32_t>(v) : -1;
}

// Buckets of predictions [first, first + count) into `out`.
void buckets(const char* predictions, size_t first, size_t count, DType type, uint32_t n, int32_t* out) {
    switch (type) {
        case DType::f32:
            for (size_t i = 0; i < count; ++i) out[i] = bucket_of(load_element<float>(predictions, first + i), n);
            return;
        case DType::f64:
            for (size_t i = 0; i < count; ++i) out[i] = bucket_of(load_element<double>(predictions, first + i), n);
            return;
        default:  // bucket indices computed by the caller (other dtypes)
            for (size_t i = 0; i < count; ++i) {
                const int32_t index = load_element<int32_t>(predictions, first + i);
                out[i] = index >= 0 && index <= static_cast<int32_t>(n) - 1 ? index : -1;
            }
    }
}

// Elements are converted a run at a time, small enough to stay in the L1 cache.
constexpr size_t kRun = 1024;

// numpy.maximum(1e-7, x): NaN stays NaN.
double at_least_minimum_count(double x) { return std::isnan(x) ? x : std::max(1e-7, x); }

}  // namespace

void encode_text_event(std::string& out, double wall_time, int64_t step, std::string_view tag,
                       std::string_view text) {
    const size_t full_tag = tag.size() + kTextSuffix.size();
    const size_t tensor_body = 2 + delimited_size(small_shape_body(1)) + delimited_size(text.size());
    const size_t metadata_body = plugin_metadata_body("text", 0);
    put_summary_prefix(out, wall_time, step,
                       delimited_size(full_tag) + delimited_size(tensor_body) + delimited_size(metadata_body));
    put_delimited_header(out, kTag, full_tag);
    out.append(tag.data(), tag.size());
    out.append(kTextSuffix.data(), kTextSuffix.size());
    put_delimited_header(out, kTensor, tensor_body);
    put_int32_field(out, kDtype, kDtString);
    put_small_shape(out, {1});
    put_bytes_field(out, kStringVal, text.data(), text.size());
    put_plugin_metadata(out, "text", {});
}

void encode_pr_curve_event(std::string& out, double wall_time, int64_t step, std::string_view tag,
                           const PrCurveParams& params, const char* arrays) {
    const uint32_t n = params.num_thresholds;
    const size_t count = params.count;
    const char* predictions = arrays;
    const size_t labels_at = array_end(0, count * dtype_size(params.predictions));
    const char* labels = arrays + labels_at;
    const char* weights = arrays + array_end(labels_at, count * dtype_size(params.labels));
    std::vector<double> tp_total(n, 0.0), fp_total(n, 0.0), tp_block(n), fp_block(n);
    int32_t bucket[kRun];
    double label[kRun], weight[kRun];
    for (size_t start = 0; start < count; start += kHistogramBlock) {
        std::fill(tp_block.begin(), tp_block.end(), 0.0);
        std::fill(fp_block.begin(), fp_block.end(), 0.0);
        const size_t end = std::min(count, start + kHistogramBlock);
        for (size_t run = start; run < end; run += kRun) {
            const size_t len = std::min(kRun, end - run);
            buckets(predictions, run, len, params.predictions, n, bucket);
            elements_as_doubles(labels, run, len, params.labels, label);
            if (params.weight_per_element) elements_as_doubles(weights, run, len, params.weights, weight);
            for (size_t i = 0; i < len; ++i) {
                const int32_t k = bucket[i];
                if (k < 0) continue;
                const double w = params.weight_per_element ? weight[i] : params.weight;
                tp_block[size_t(k)] += label[i] * w;
                fp_block[size_t(k)] += (1.0 - label[i]) * w;
            }
        }
        for (uint32_t k = 0; k < n; ++k) {
            tp_total[k] += tp_block[k];
            fp_total[k] += fp_block[k];
        }
    }
    // Reverse cumulative sums, then the rows tp, fp, tn, fn, precision, recall.
    std::vector<double> rows(6 * size_t(n));
    double* tp = rows.data();
    double* fp = tp + n;
    double *tn = fp + n, *fn = tn + n, *precision = fn + n, *recall = precision + n;
    double tp_sum = 0, fp_sum = 0;
    for (uint32_t i = n; i-- > 0;) {
        tp_sum += tp_total[i];
        fp_sum += fp_total[i];
        tp[i] = tp_sum;
        fp[i] = fp_sum;
    }
    for (uint32_t i = 0; i < n; ++i) {
        tn[i] = fp[0] - fp[i];
        fn[i] = tp[0] - tp[i];
        precision[i] = tp[i] / at_least_minimum_count(tp[i] + fp[i]);
        recall[i] = tp[i] / at_least_minimum_count(tp[i] + fn[i]);
    }
    const char content[2] = {char(key(2, kVarint)), char(n)};  // PrCurvePluginData.num_thresholds
    const size_t floats = 4 * rows.size();
    const size_t tensor_body = 2 + delimited_size(small_shape_body(2)) + delimited_size(floats);
    const size_t metadata_body = plugin_metadata_body("pr_curves", sizeof content);
    put_summary_prefix(out, wall_time, step,
                       tag_size(tag) + delimited_size(tensor_body) + delimited_size(metadata_body));
    put_tag(out, tag);
    put_delimited_header(out, kTensor, tensor_body);
    put_int32_field(out, kDtype, kDtFloat);
    put_small_shape(out, {6, n});
    put_delimited_header(out, kFloatVal, floats);
    for (double v : rows) put_fixed32(out, float_bits(static_cast<float>(v)));
    put_plugin_metadata(out, "pr_curves", {content, sizeof content});
}

void encode_audio_event(std::string& out, double wall_time, int64_t step, std::string_view tag,
                        const AudioParams& params, const char* samples) {
    const uint64_t count = params.count;
    // Python's wave module rounds the rate half to even; the header says 2 bytes per frame.
    const uint32_t rate = static_cast<uint32_t>(std::nearbyint(params.sample_rate));
    const size_t data_bytes = 2 * count;
    const size_t wav_bytes = 44 + data_bytes;
    const float rate_field = static_cast<float>(params.sample_rate);
    const size_t audio_body = (float_bits(rate_field) ? 5 : 0) + 2 +
                              (count ? 1 + varint_size(count) : 0) + delimited_size(wav_bytes) +
                              delimited_size(kWav.size());
    out.reserve(out.size() + audio_body + tag.size() + 64);
    put_summary_prefix(out, wall_time, step, tag_size(tag) + delimited_size(audio_body));
    put_tag(out, tag);
    put_delimited_header(out, kAudio, audio_body);
    if (float_bits(rate_field)) {
        put_varint(out, key(kSampleRate, kFixed32));
        put_fixed32(out, float_bits(rate_field));
    }
    put_int64_field(out, kNumChannels, 1);
    put_int64_field(out, kLengthFrames, static_cast<int64_t>(count));
    put_delimited_header(out, kEncodedAudio, wav_bytes);
    out += "RIFF";
    put_fixed32(out, static_cast<uint32_t>(36 + data_bytes));
    out += "WAVEfmt ";
    put_fixed32(out, 16);
    const char format[4] = {1, 0, 1, 0};  // PCM, one channel
    out.append(format, 4);
    put_fixed32(out, rate);
    put_fixed32(out, rate * 2);
    const char layout[4] = {2, 0, 16, 0};  // 2 bytes per frame, 16 bits per sample
    out.append(layout, 4);
    out += "data";
    put_fixed32(out, static_cast<uint32_t>(data_bytes));
    const size_t at = out.size();
    out.resize(at + data_bytes);
    char* pcm = &out[at];
    for (uint64_t i = 0; i < count; ++i) {
        // Clipping changes nothing within [-1, 1], so it is always applied; the product is taken
        // in the samples' own precision and truncated, as numpy's astype("<i2") truncates. NaN,
        // which numpy's cast turns into 0 on x86-64 and arm64, is 0 here everywhere.
        int32_t s = 0;
        if (params.samples == DType::i16) {
            s = load_element<int16_t>(samples, i);  // made by the caller (other dtypes)
        } else if (params.samples == DType::f32) {
            const float x = std::clamp(load_element<float>(samples, i), -1.0f, 1.0f);
            if (!std::isnan(x)) s = static_cast<int32_t>(x * 32767.0f);
        } else {
            const double x = std::clamp(load_element<double>(samples, i), -1.0, 1.0);
            if (!std::isnan(x)) s = static_cast<int32_t>(x * 32767.0);
        }
        pcm[2 * i] = static_cast<char>(s & 0xff);
        pcm[2 * i + 1] = static_cast<char>((s >> 8) & 0xff);
    }
    put_bytes_field(out, kContentType, kWav.data(), kWav.size());
}

}  // namespace fasttb
