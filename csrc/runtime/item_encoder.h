// From a queued item to one framed record: the worker's encoding step, kept apart from the loop
// that schedules it.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/item.h"

namespace fasttb {

// The largest record any reader can parse: protobuf refuses messages of 2 GiB or more.
constexpr uint64_t kMaxRecordPayload = (uint64_t(1) << 31) - 1;

// Appends the record of `item` to `out` (PNG encoding in `png`, kept between calls). Returns 0,
// or an errno when the record could not be made (ENOMEM: memory ran out; EFBIG: over
// kMaxRecordPayload); `out` may then end in a partial record, which the caller cuts off. Throws
// only std::bad_alloc and std::length_error, from appending to `out`.
int append_record(const Item& item, std::string& out, std::string& png);

// The errno's explanation as the worker reports it with the file's path.
const char* encoding_failure(int err);

// Side files (add_embedding's): items that make no record but write a file of their own, named
// by their tag. write_side_file makes it (its text or PNG in `scratch`) and writes it; 0 or an
// errno. Throws only std::bad_alloc.
bool is_side_file(ItemKind kind);
int write_side_file(const Item& item, std::string& scratch);

}  // namespace fasttb
