// Event files read back into columns; see reader.h.
#include "reader/reader.h"

#include <cstdlib>
#include <cstring>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "checksum/crc32c.h"

namespace fasttb {

namespace {

uint64_t load64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;  // little-endian hosts only, as the writer
}

uint32_t load32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// One field of a message: its number, wire type and value (a varint, or the bytes of a fixed or
// length-delimited value).
struct Field {
    uint32_t number = 0;
    uint32_t type = 0;
    uint64_t varint = 0;
    const uint8_t* data = nullptr;
    size_t size = 0;
};

bool read_varint(const uint8_t*& p, const uint8_t* end, uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 70 && p < end; shift += 7) {
        const uint8_t b = *p++;
        v |= uint64_t(b & 0x7F) << (shift < 64 ? shift : 63);
        if (!(b & 0x80)) return true;
    }
    return false;  // ran off the end, or more than ten bytes
}

// Reads the next field of the message in [p, end). False at a malformed field (groups included:
// no message read here has one).
bool next_field(const uint8_t*& p, const uint8_t* end, Field& f) {
    uint64_t key;
    if (!read_varint(p, end, key) || key > 0xFFFFFFFFu) return false;
    f.number = static_cast<uint32_t>(key >> 3);
    f.type = static_cast<uint32_t>(key & 7);
    if (f.number == 0) return false;
    switch (f.type) {
        case 0:
            return read_varint(p, end, f.varint);
        case 1:
            if (end - p < 8) return false;
            f.data = p;
            f.size = 8;
            p += 8;
            return true;
        case 2: {
            uint64_t n;
            if (!read_varint(p, end, n) || n > uint64_t(end - p)) return false;
            f.data = p;
            f.size = static_cast<size_t>(n);
            p += n;
            return true;
        }
        case 5:
            if (end - p < 4) return false;
            f.data = p;
            f.size = 4;
            p += 4;
            return true;
        default:
            return false;
    }
}

// EventAccumulator's reading of file_version: the number after the last "brain.Event:", or -1.
double parse_file_version(std::string_view s) {
    constexpr std::string_view marker = "brain.Event:";
    const size_t at = s.rfind(marker);
    if (at != std::string_view::npos) s.remove_prefix(at + marker.size());
    std::string text;
    for (char c : s)
        if (c != '_') text.push_back(c);
    const size_t first = text.find_first_not_of(" \t\n\r\f\v");
    if (first == std::string::npos) return -1;
    const size_t last = text.find_last_not_of(" \t\n\r\f\v");
    text = text.substr(first, last - first + 1);
    char* stop = nullptr;
    const double v = std::strtod(text.c_str(), &stop);
    return stop == text.c_str() + text.size() ? v : -1;
}

// One summary value as EventAccumulator sees it.
struct Value {
    std::string_view tag, node_name;
    uint32_t kind = 0;  // the last field of the value oneof seen (2 simple_value, 3..8 others)
    float simple_value = 0;
    const uint8_t* payload = nullptr;
    size_t payload_size = 0;
    const uint8_t* metadata = nullptr;  // the last metadata field (only a whole one is kept)
    size_t metadata_size = 0;
};

// Whether p[0, n) is UTF-8 as protobuf checks a proto3 string: no overlong forms, surrogates or
// code points past U+10FFFF. Tags are strings; one that is not UTF-8 makes the record not an
// Event (protobuf's parser, and so tbparse and TensorBoard, refuse it), where decoding it with
// replacement characters would merge different tags into one.
bool valid_utf8(const uint8_t* p, size_t n) {
    const uint8_t* end = p + n;
    while (p < end) {
        const uint8_t c = *p;
        if (c < 0x80) {
            ++p;
            continue;
        }
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF;  // the range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;  // overlong
            if (c == 0xED) hi = 0x9F;  // surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;  // overlong
            if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
        } else {
            return false;
        }
        if (size_t(end - p) < len || p[1] < lo || p[1] > hi) return false;
        for (size_t i = 2; i < len; ++i)
            if ((p[i] & 0xC0) != 0x80) return false;
        p += len;
    }
    return true;
}

bool parse_value(const uint8_t* p, const uint8_t* end, Value& v) {
    Field f;
    while (p < end) {
        if (!next_field(p, end, f)) return false;
        const bool bytes = f.type == 2;
        switch (f.number) {
            case 1:
                if (bytes) {
                    if (!valid_utf8(f.data, f.size)) return false;
                    v.tag = {reinterpret_cast<const char*>(f.data), f.size};
                }
                break;
            case 7:
                if (bytes) {
                    if (!valid_utf8(f.data, f.size)) return false;
                    v.node_name = {reinterpret_cast<const char*>(f.data), f.size};
                }
                break;
            case 2:
                if (f.type == 5) {
                    std::memcpy(&v.simple_value, f.data, 4);
                    v.kind = 2;
                }
                break;
            case 3: case 4: case 5: case 6: case 8:
                if (bytes) {
                    v.kind = f.number;
                    v.payload = f.data;
                    v.payload_size = f.size;
                }
                break;
            case 9:
                if (bytes) {
                    v.metadata = f.data;
                    v.metadata_size = f.size;
                }
                break;
            default:
                break;
        }
    }
    return true;
}

class Scanner {
public:
    Scanner(const uint8_t* base, const ScanOptions& options, ScanResult& out)
        : base_(base), options_(options), out_(out) {}

    // Decodes one record's Event. False if it is not a well-formed Event.
    bool event(const uint8_t* p, const uint8_t* end) {
        double wall_time = 0;
        int64_t step = 0;
        uint32_t what = 0;  // the last field of Event's `what` oneof seen
        std::string_view file_version;
        int64_t session_status = 0;
        summary_.clear();
        Field f;
        while (p < end) {
            if (!next_field(p, end, f)) return false;
            if (f.number == 1 && f.type == 1) {
                std::memcpy(&wall_time, f.data, 8);
            } else if (f.number == 2 && f.type == 0) {
                step = static_cast<int64_t>(f.varint);
            } else if (f.number >= 3 && f.number <= 9 && f.type == 2) {
                if (f.number != what) {
                    summary_.clear();
                    session_status = 0;
                }
                what = f.number;
                if (what == 3) {
                    file_version = {reinterpret_cast<const char*>(f.data), f.size};
                } else if (what == 5) {
                    summary_.push_back({f.data, f.size});  // repeated occurrences merge
                } else if (what == 7) {
                    const uint8_t* q = f.data;
                    const uint8_t* qend = f.data + f.size;
                    Field g;
                    while (q < qend) {
                        if (!next_field(q, qend, g)) return false;
                        if (g.number == 1 && g.type == 0) session_status = static_cast<int64_t>(g.varint);
                    }
                }
            }
        }
        // Parse every value before anything is kept: a malformed one rejects the whole record.
        values_.clear();
        for (const auto& part : summary_) {
            const uint8_t* q = part.first;
            const uint8_t* qend = part.first + part.second;
            while (q < qend) {
                if (!next_field(q, qend, f)) return false;
                if (f.number == 1 && f.type == 2) {
                    Value v;
                    if (!parse_value(f.data, f.data + f.size, v)) return false;
                    values_.push_back(v);
                }
            }
        }

        const int64_t index = static_cast<int64_t>(out_.events++);
        if (what == 3) {
            has_version_ = true;
            version_ = parse_file_version(file_version);
        }
        // EventAccumulator's purge rules, checked before the event's own values are kept.
        if (has_version_ && version_ >= 2) {
            if (what == 7 && session_status == 1) add_purge(index, step, true);
        } else if (step < most_recent_step_ && what == 5) {
            add_purge(index, step, false);
        } else {
            most_recent_step_ = step;
        }
        if (what == 4 || what == 9) ++out_.graphs;
        if (what == 8) ++out_.run_metadata;
        if (what != 5) return true;

        for (const Value& v : values_) {
            if (v.metadata && seen_metadata_.insert(v.tag).second) {
                out_.metadata_tag.push_back(intern(v.tag));
                out_.metadata_offset.push_back(static_cast<uint64_t>(v.metadata - base_));
                out_.metadata_length.push_back(v.metadata_size);
            }
            if (v.kind == 2) {
                if (!options_.scalars) continue;
                out_.scalar_event.push_back(index);
                out_.scalar_step.push_back(step);
                out_.scalar_wall_time.push_back(wall_time);
                out_.scalar_value.push_back(v.simple_value);
                const int32_t tag = intern(v.tag);
                out_.scalar_tag.push_back(tag);
                if (first_use(tag, 0)) out_.scalar_tag_order.push_back(tag);
            } else if (v.kind >= 4 && v.kind != 7) {
                if (!options_.values) continue;
                const std::string_view tag = v.kind == 8 && v.tag.empty() ? v.node_name : v.tag;
                out_.value_event.push_back(index);
                out_.value_step.push_back(step);
                out_.value_wall_time.push_back(wall_time);
                const int32_t id = intern(tag);
                out_.value_tag.push_back(id);
                if (first_use(id, v.kind)) {
                    out_.value_tag_order_kind.push_back(int32_t(v.kind));
                    out_.value_tag_order.push_back(id);
                }
                out_.value_kind.push_back(static_cast<uint8_t>(v.kind));
                out_.value_offset.push_back(static_cast<uint64_t>(v.payload - base_));
                out_.value_length.push_back(v.payload_size);
            }
        }
        return true;
    }

private:
    // `tag` points into the input, which outlives the scan: the map keys are views of it.
    int32_t intern(std::string_view tag) {
        if (tag == last_tag_ && last_id_ >= 0) return last_id_;
        auto it = tag_ids_.find(tag);
        int32_t id;
        if (it != tag_ids_.end()) {
            id = it->second;
        } else {
            id = static_cast<int32_t>(out_.tags.size());
            out_.tags.emplace_back(tag);
            tag_ids_.emplace(tag, id);
        }
        last_tag_ = tag;
        last_id_ = id;
        return id;
    }

    // Whether `tag` is new among the values of `kind` (0: scalars, else the value's field).
    bool first_use(int32_t tag, uint32_t kind) {
        std::vector<uint8_t>& seen = seen_by_kind_[kind & 15];
        if (size_t(tag) >= seen.size()) seen.resize(size_t(tag) + 1, 0);
        if (seen[size_t(tag)]) return false;
        seen[size_t(tag)] = 1;
        return true;
    }

    void add_purge(int64_t index, int64_t step, bool all) {
        out_.purge_event.push_back(index);
        out_.purge_step.push_back(step);
        out_.purge_tags_begin.push_back(static_cast<uint32_t>(out_.purge_tag_list.size()));
        if (!all) {
            for (const Value& v : values_) {
                // EventAccumulator filters every tag when a value's tag is empty.
                if (v.tag.empty()) all = true;
                out_.purge_tag_list.push_back(intern(v.tag));
            }
        }
        out_.purge_tags_end.push_back(static_cast<uint32_t>(out_.purge_tag_list.size()));
        out_.purge_all.push_back(all ? 1 : 0);
    }

    const uint8_t* base_;
    const ScanOptions& options_;
    ScanResult& out_;
    std::unordered_map<std::string_view, int32_t> tag_ids_;
    std::unordered_set<std::string_view> seen_metadata_;  // tags whose metadata is kept
    std::vector<uint8_t> seen_by_kind_[16];
    std::string_view last_tag_;
    int32_t last_id_ = -1;
    std::vector<std::pair<const uint8_t*, size_t>> summary_;
    std::vector<Value> values_;
    bool has_version_ = false;
    double version_ = 0;
    int64_t most_recent_step_ = -1;
};

// Whether a complete record with a valid header and data CRC starts at `pos`.
bool valid_record_at(const uint8_t* data, size_t size, size_t pos) {
    if (size - pos < 16) return false;
    if (masked_crc32c(data + pos, 8) != load32(data + pos + 8)) return false;
    const uint64_t len = load64(data + pos);
    if (len > size - pos - 16) return false;
    return masked_crc32c(data + pos + 12, len) == load32(data + pos + 12 + len);
}

}  // namespace

void scan_event_file(const uint8_t* data, size_t size, const ScanOptions& options, ScanResult& out) {
    Scanner scanner(data, options, out);
    size_t pos = 0;
    auto corrupt = [&](const char* what, size_t next) -> bool {  // true: go on at `next`
        if (!options.skip_corrupt) {
            out.error = what;
            out.error_at = pos;
            return false;
        }
        out.skipped.push_back(pos);
        pos = next;
        return true;
    };
    while (pos < size) {
        const size_t left = size - pos;
        if (left < 12) {
            out.truncated = true;
            out.truncated_at = pos;
            break;
        }
        if (masked_crc32c(data + pos, 8) != load32(data + pos + 8)) {
            // The length cannot be trusted: look for the next intact record.
            size_t next = pos + 1;
            while (next < size && !valid_record_at(data, size, next)) ++next;
            if (!corrupt("the record's length fails its CRC32C check", next)) break;
            continue;
        }
        const uint64_t len = load64(data + pos);
        if (left < 16 || len > left - 16) {
            out.truncated = true;  // TensorBoard waits for the rest of such a record
            out.truncated_at = pos;
            break;
        }
        const uint8_t* body = data + pos + 12;
        const size_t next = pos + 16 + static_cast<size_t>(len);
        if (masked_crc32c(body, len) != load32(body + len)) {
            if (!corrupt("the record's data fails its CRC32C check", next)) break;
            continue;
        }
        if (!scanner.event(body, body + len)) {
            if (!corrupt("the record is not a valid Event", next)) break;
            continue;
        }
        out.bytes += 16 + len;
        pos = next;
    }
}

}  // namespace fasttb
