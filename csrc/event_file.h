// One event file on disk. It is opened on the caller's thread (so that a bad path fails at once,
// where the caller can see it); from then on only the worker touches its descriptor and buffer.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace fasttb {

// What the Python-facing writer and the worker share about one file: counters, and the first
// error the worker met, which the caller raises on its next call.
struct FileState {
    explicit FileState(std::string p) : path(std::move(p)) {}

    const std::string path;
    std::atomic<uint64_t> records_written{0};
    std::atomic<uint64_t> bytes_written{0};
    std::atomic<uint64_t> dropped{0};   // refused by the drop policy while the queue was full
    std::atomic<uint64_t> stalls{0};    // pushes that had to wait for room
    std::atomic<uint64_t> lost{0};      // discarded because the file had failed

    // errno of the first failure, 0 while healthy; set once by the worker.
    std::atomic<int> error{0};
    std::string error_context;  // written before `error` is published (release/acquire)

    void fail(int err, const char* context) {
        int expected = 0;
        if (error.load(std::memory_order_relaxed) != 0) return;
        error_context = context;
        error.compare_exchange_strong(expected, err, std::memory_order_release);
    }
};

class EventFile {
public:
    // Creates `path` exclusively (it must not exist). Returns nullptr with *err set on failure.
    static EventFile* create(const std::string& path, double flush_secs,
                             std::shared_ptr<FileState>* state, int* err);
    ~EventFile();

    bool in_dirty_list = false;  // the engine's list of files with records to write

    std::string& buffer() { return buffer_; }
    void record_added() { ++pending_records_; }
    bool failed() const { return failed_; }
    FileState& state() { return *state_; }
    double flush_secs() const { return flush_secs_; }
    double last_write() const { return last_write_; }

    // Hands the buffer to the OS; on failure remembers the errno in FileState and drops
    // whatever this file receives afterwards.
    void write_out(double now);
    // write_out, then a check that the file still has a name: a removed file (or directory)
    // would otherwise swallow records without an error.
    void flush(double now);
    void close(double now);

private:
    EventFile(int fd, double flush_secs, std::shared_ptr<FileState> state);
    void fail(int err, const char* context);

    int fd_;
    bool failed_ = false;
    double flush_secs_;
    double last_write_ = 0;
    uint64_t pending_records_ = 0;
    uint64_t size_ = 0;  // bytes of complete buffers on disk (the file is created empty)
    std::string buffer_;
    std::shared_ptr<FileState> state_;
};

}  // namespace fasttb
