// A raw deflate stream (RFC 1951) written for filtered image rows rather than for data in
// general, run on the worker thread (no GIL, no exceptions). PNG (png.cc) is its one user: it
// filters rows into a window and hands them over in slices; what comes back is the bit stream.
//
// - matches are found greedily among a few candidates: a repeat of the previous pixel
//   (distance = `unit`, bytes per pixel, where filtered images keep most of their redundancy),
//   of the latest far distance when it gave a long match (periods of tiles and patterns), the
//   few recent distances, and one hash probe, looking on until a match is 128 bytes long. A
//   match is taken only if it saves bits over its literals at the previous block's code
//   lengths, and probes thin out while they save less than they cost, so photos and noise stay
//   fast. A long match far back is checked for a short period that repeats it just as far,
//   cheaper to code;
// - each slice gets Huffman codes from its exact symbol counts, or is stored raw when that is
//   smaller, so incompressible data costs little more than a copy; slices that compress well
//   are gathered into one block while their statistics stay alike, as a header would cost about
//   as much as such a slice.
//
// Inside, bytes become tokens (runs of literals, each followed by one match: Matcher) and
// tokens become bits (Huffman-coded or stored blocks); outside, only DeflateEncoder is seen.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fasttb {

namespace deflate {
constexpr size_t kWindow = 32768;               // deflate's largest distance
constexpr size_t kMaxSlice = size_t(1) << 17;   // the most bytes in one slice (one block)
}  // namespace deflate

class DeflateEncoder {
   public:
    DeflateEncoder();
    ~DeflateEncoder();  // lets go of large per-thread arrays (see reused.h)
    DeflateEncoder(const DeflateEncoder&) = delete;
    DeflateEncoder& operator=(const DeflateEncoder&) = delete;

    // Starts a stream at `out` for about `total_bytes` of input (which sizes the hash table)
    // given in slices of at most `max_slice` bytes (<= deflate::kMaxSlice). `out` must have room
    // for what the slices may take, plus 16 bytes of slack: a slice coded on its own is never
    // larger than stored (its bytes and 8 per 64 KiB piece); slices gathered into one block can
    // take 2 bytes a byte and under 1 KiB of header per block, at most two blocks per slice.
    // False when memory runs out. One encoder per thread at a time: they share its arrays.
    bool start(uint8_t* out, uint64_t total_bytes, size_t max_slice);

    // Compresses p[0, n), n <= max_slice. p[-history, 0) holds the stream's preceding bytes
    // (history <= deflate::kWindow) that matches may refer to; p must be readable up to n + 16
    // (the matcher reads whole words). `unit` is the distance tried first (bytes per pixel).
    // `final`: the last slice of the stream.
    void add_slice(const uint8_t* p, size_t n, size_t history, unsigned unit, bool final);

    // After the final slice: pads the stream to a byte and returns its end.
    uint8_t* finish();

    struct State;  // the thread's (deflate.cc)

   private:
    State* s_;
};

}  // namespace fasttb
