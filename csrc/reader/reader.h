// Reading event files back: the records of one file checked (length and data CRC32C) and its
// Events decoded into columns, without libprotobuf. Plain simple_value scalars are decoded here;
// every other summary value (histogram, image, audio, tensor) and the first metadata of each tag
// are returned as byte ranges of the input for the caller to decode, so a payload that is not
// wanted is skipped by its length and never copied.
//
// What is kept follows tensorboard's EventAccumulator, which tbparse reads through: of the
// Event's `what` oneof the last field wins and only a summary contributes values; a value's tag
// is its `tag` (a tensor without one uses `node_name`); metadata is kept the first time a tag
// brings any. Its purge rules are reported rather than applied: a SessionLog.START in a file of
// version 2 or later, or (older files) a step that goes back, yields a purge that the caller
// applies to everything collected before that event.
//
// Pure C++, no Python: the bindings call it with the interpreter's lock released. The input is
// only read; nothing in the result points into it except the (offset, length) ranges.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fasttb {

enum class ValueKind : uint8_t { histo = 5, image = 4, audio = 6, tensor = 8 };  // Summary.Value field numbers

struct ScanOptions {
    bool scalars = true;        // decode simple_value scalars
    bool values = true;         // report the other values' byte ranges
    bool skip_corrupt = false;  // skip corrupt records (listed in `skipped`) instead of stopping
};

struct ScanResult {
    // Tags in order of first appearance in the file (values and metadata alike).
    std::vector<std::string> tags;
    // The tags of scalars, and of each kind of value (kind, tag), in order of first appearance.
    std::vector<int32_t> scalar_tag_order;
    std::vector<int32_t> value_tag_order_kind, value_tag_order;

    // simple_value scalars, one entry each.
    std::vector<int64_t> scalar_event, scalar_step;
    std::vector<double> scalar_wall_time;
    std::vector<float> scalar_value;
    std::vector<int32_t> scalar_tag;

    // Other values: the value's field (ValueKind) and its payload's byte range in the input.
    std::vector<int64_t> value_event, value_step;
    std::vector<double> value_wall_time;
    std::vector<int32_t> value_tag;
    std::vector<uint8_t> value_kind;
    std::vector<uint64_t> value_offset, value_length;

    // The first SummaryMetadata of each tag: the tag and the metadata's byte range.
    std::vector<int32_t> metadata_tag;
    std::vector<uint64_t> metadata_offset, metadata_length;

    // Purges, in file order: before event `purge_event`, drop what has step >= purge_step; all
    // tags, or (purge_tags_begin/end, a range of purge_tag_list) only the tags of that event.
    std::vector<int64_t> purge_event, purge_step;
    std::vector<uint8_t> purge_all;
    std::vector<uint32_t> purge_tags_begin, purge_tags_end;
    std::vector<int32_t> purge_tag_list;

    uint64_t events = 0;        // records decoded as Events
    uint64_t graphs = 0;        // graph_def and meta_graph_def events
    uint64_t run_metadata = 0;  // tagged_run_metadata events
    uint64_t bytes = 0;         // bytes of the complete records read

    // Where reading stopped early: a record cut short at the end (what TensorBoard tolerates),
    // or a corrupt record (error names what failed). Offsets are of the record's start.
    bool truncated = false;
    uint64_t truncated_at = 0;
    std::string error;
    uint64_t error_at = 0;
    std::vector<uint64_t> skipped;  // corrupt records skipped (skip_corrupt)
};

// Scans the event file held in data[0, size).
void scan_event_file(const uint8_t* data, size_t size, const ScanOptions& options, ScanResult& out);

}  // namespace fasttb
