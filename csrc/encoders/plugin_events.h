// Events of the plugin kinds the worker encodes: text, PR curves and audio. Each appends one
// serialized Event with the bytes the stock writer's protobuf objects serialize to (SPEC §3.11-3.13).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "encoders/kind_params.h"

namespace fasttb {

// Value{tag: tag + "/text_summary", tensor: DT_STRING [1] {text}, metadata: plugin "text"}.
void encode_text_event(std::string& out, double wall_time, int64_t step, std::string_view tag,
                       std::string_view text);

// The PR curve of `params.count` (prediction, label[, weight]) triples, computed as the stock
// writer computes it (bucketing, reverse cumulative sums, precision and recall in float64), as a
// DT_FLOAT [6, N] tensor with the pr_curves plugin's metadata. `arrays` follows the params.
void encode_pr_curve_event(std::string& out, double wall_time, int64_t step, std::string_view tag,
                           const PrCurveParams& params, const char* arrays);

// Summary.Audio of a mono 16-bit WAV of the samples (clipped to [-1, 1], times 32767, truncated).
void encode_audio_event(std::string& out, double wall_time, int64_t step, std::string_view tag,
                        const AudioParams& params, const char* samples);

}  // namespace fasttb
