// Encoders of the Event messages fasttb writes from C++ (the hot kinds and the file header).
// Each appends one serialized tensorboard.Event to `out`; the bytes equal what the protobuf
// runtime serializes for the same message. A step of 0 is the same as no step (proto3 omits it).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "encoders/histogram.h"

namespace fasttb {

enum class ScalarKind : uint8_t { simple_value, tensor_float, tensor_double };

// The first record of every event file, as tensorboard's EventFileWriter writes it; with
// `with_source` false, the form of the purge_step marker (file_version and step only).
void encode_file_version_event(std::string& out, double wall_time, int64_t step, bool with_source);

// Event{session_log: {status: START}}: tells readers to drop what they have at or after `step`.
void encode_session_start_event(std::string& out, double wall_time, int64_t step);

void encode_scalar_event(std::string& out, double wall_time, int64_t step, std::string_view tag,
                         double value, ScalarKind kind);

// Wraps an already serialized Summary message in an Event.
void encode_summary_event(std::string& out, double wall_time, int64_t step,
                          std::string_view summary);

void encode_histogram_event(std::string& out, double wall_time, int64_t step,
                            std::string_view tag, const Histogram& h);

void encode_image_event(std::string& out, double wall_time, int64_t step, std::string_view tag,
                        uint32_t height, uint32_t width, uint32_t channels, std::string_view png);

}  // namespace fasttb
