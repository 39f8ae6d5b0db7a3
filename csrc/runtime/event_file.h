// One event file on disk. It is opened on the caller's thread (so that a bad path fails at once,
// where the caller can see it); from then on only the worker touches its descriptor and buffer.
//
// Descriptors are bounded: a run with many add_scalars keys has an event file per key, and a
// descriptor each would run into the process's open-file limit (1024 by default). Past a quarter
// of that limit, a file is closed after each write (parked) and opened again, by name, for the
// next; torch's writer opens and closes every file for every write.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <sys/stat.h>

namespace fasttb {

// What the caller's writer and the worker share about one file: counters, and the first error
// the worker met, which the caller raises on its next call.
struct FileState {
    explicit FileState(std::string p) : path(std::move(p)) {}

    const std::string path;
    std::atomic<uint64_t> records_written{0};
    std::atomic<uint64_t> bytes_written{0};
    std::atomic<uint64_t> dropped{0};   // refused by the drop policy while the queue was full
    std::atomic<uint64_t> stalls{0};    // logging calls' pushes that had to wait for room
    std::atomic<uint64_t> lost{0};      // records the file could not take after an error

    // errno of the first failure, 0 while healthy; set once, by the worker.
    std::atomic<int> error{0};
    std::string error_context;  // both written before `error` is published (release/acquire)
    std::string error_path;     // the file that failed when it is not this one (a side file)
    std::atomic<bool> reported{false};  // the error has been raised to the caller at least once

    void fail(int err, const char* context, std::string_view other_path) {
        if (error.load(std::memory_order_relaxed) != 0) return;
        error_context = context;
        error_path = other_path;
        error.store(err, std::memory_order_release);
    }
};

class EventFile {
public:
    // Creates `path` exclusively (it must not exist). Returns nullptr with *err set on failure.
    static EventFile* create(const std::string& path, double flush_secs,
                             std::shared_ptr<FileState>* state, int* err);
    // A file the worker creates (directories included) when it handles the file's open item, so
    // that the caller pays no disk round trips; a failure there fails the file. nullptr only when
    // memory runs out.
    static EventFile* create_later(const std::string& path, double flush_secs,
                                   std::shared_ptr<FileState>* state);
    void open_now(double now);
    ~EventFile();
    EventFile(const EventFile&) = delete;
    EventFile& operator=(const EventFile&) = delete;

    bool in_dirty_list = false;  // the engine's list of files with records to write

    // How many event files may keep their descriptor open: a quarter of RLIMIT_NOFILE, read once.
    static int open_file_budget();
    // Event file descriptors open in this process (every thread's).
    static int open_files();
    // In a forked child (its fork handler): closes the event file descriptors it inherited. The
    // parent's files are the parent's; the child's EventFile copies are never used again.
    static void close_inherited();

    // Closes the descriptor when more files are open than the budget allows (the file is then
    // parked). By the file's owner: the worker, or the caller that created it, before queueing.
    void park_if_over_budget(double now);

    std::string& buffer() { return buffer_; }
    void record_added() { ++pending_records_; }
    bool failed() const { return failed_; }
    FileState& state() { return *state_; }
    double flush_secs() const { return flush_secs_; }
    double last_write() const { return last_write_; }

    // Hands the buffer to the OS, and now and then checks that the file still has a name (a
    // removed file, or directory, would swallow records without an error).
    void write_out(double now);
    // write_out, and the name check whatever the time.
    void flush(double now);
    void close(double now);

    // Segments, for a remote log dir's spool (python/fasttb/_remote.py): rotate() writes out and
    // closes the file on disk, and the next record of the file creates `next_path` and starts it
    // with a first record of its own (file_version), so that every segment is a whole event file
    // and no empty one is made. A later rotate() before any record only renames the next one.
    void rotate(std::string next_path, bool with_source, double now);
    bool awaiting_segment() const { return awaiting_segment_; }
    // Creates the next segment and queues its first record; a failure fails the file.
    void start_segment(double now);

    // The one way a file fails: records buffered before the failure are written when `keep` is
    // set (an encoder or a side file failed) and counted lost otherwise (the file did); every
    // later record is counted lost; the caller sees `err` on its next call, naming `other_path`
    // when a side file failed, this file otherwise.
    void fail(int err, const char* context, bool keep_buffered, double now,
              std::string_view other_path = {});

private:
    EventFile(int fd, double flush_secs, std::shared_ptr<FileState> state);
    void check_name(double now);
    void write_failed(int err, size_t written);
    void opened(int fd);  // counts the descriptor
    bool reopen(double now);  // the parked file by name, if it is still the same file
    bool same_file(const struct stat& st) const;
    const std::string& disk_path() const { return segment_path_.empty() ? state_->path : segment_path_; }

    int fd_;  // -1 until open_now() for a file made by create_later(), and while parked
    bool parked_ = false;  // created, and closed to save a descriptor; reopened for its next write
    uint64_t device_ = 0;  // the parked file's identity, to tell it from one made in its place
    uint64_t inode_ = 0;
    bool failed_ = false;
    double flush_secs_;
    double last_write_ = 0;
    double last_name_check_ = 0;
    uint64_t size_at_name_check_ = 0;  // size_ when the file last had its name
    uint64_t pending_records_ = 0;
    uint64_t size_ = 0;  // bytes of complete records on disk (the file is created empty)
    std::string buffer_;
    std::shared_ptr<FileState> state_;
    bool awaiting_segment_ = false;  // rotated: the next record creates next_path_
    bool next_with_source_ = true;
    std::string next_path_;
    std::string segment_path_;  // the segment on disk once a rotation made one ("": state's path)
};

}  // namespace fasttb
