// The parts of an Event every encoder writes: the envelope (wall_time, step), the Summary.Value
// prefix, tags and small integer fields. Shared by event.cc and plugin_events.cc.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "format/wire.h"

namespace fasttb::event_wire {

using namespace wire;

// Event fields.
constexpr uint32_t kWallTime = 1, kStep = 2, kFileVersionField = 3, kSummary = 5, kSessionLog = 7,
                   kSourceMetadata = 10;
// Summary and Summary.Value fields.
constexpr uint32_t kValue = 1, kTag = 1, kSimpleValue = 2, kImage = 4, kHisto = 5, kAudio = 6,
                   kTensor = 8, kMetadata = 9;

inline size_t tag_size(std::string_view tag) { return tag.empty() ? 0 : delimited_size(tag.size()); }

inline void put_tag(std::string& out, std::string_view tag) {
    if (!tag.empty()) put_bytes_field(out, kTag, tag.data(), tag.size());
}

inline void put_envelope(std::string& out, double wall_time, int64_t step) {
    put_double_field(out, kWallTime, wall_time);
    put_int64_field(out, kStep, step);
}

// Event{wall_time, step, summary{value{<value_body>}}}: writes everything up to the value body.
inline void put_summary_prefix(std::string& out, double wall_time, int64_t step, size_t value_body) {
    const size_t summary_body = delimited_size(value_body);
    put_envelope(out, wall_time, step);
    put_delimited_header(out, kSummary, summary_body);
    put_delimited_header(out, kValue, value_body);
}

inline size_t int32_field_size(uint32_t v) { return v ? 1 + varint_size(v) : 0; }

inline void put_int32_field(std::string& out, uint32_t field, uint32_t v) {
    if (!v) return;
    put_varint(out, key(field, kVarint));
    put_varint(out, v);
}

// SummaryMetadata{plugin_data{plugin_name, content}} as the body of Value.metadata.
inline size_t plugin_metadata_body(std::string_view plugin, size_t content) {
    const size_t plugin_data = delimited_size(plugin.size()) + (content ? delimited_size(content) : 0);
    return delimited_size(plugin_data);
}

inline void put_plugin_metadata(std::string& out, std::string_view plugin, std::string_view content) {
    put_delimited_header(out, kMetadata, plugin_metadata_body(plugin, content.size()));
    put_delimited_header(out, 1, delimited_size(plugin.size()) + (content.empty() ? 0 : delimited_size(content.size())));
    put_bytes_field(out, 1, plugin.data(), plugin.size());
    if (!content.empty()) put_bytes_field(out, 2, content.data(), content.size());
}

}  // namespace fasttb::event_wire
