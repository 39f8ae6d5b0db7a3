// Event file I/O; see event_file.h.
#include "runtime/event_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <sys/stat.h>
#include <unistd.h>

#include "format/event.h"
#include "format/record.h"

namespace fasttb {
namespace {

// How often a busy file is checked for having been removed: a fstat costs about a microsecond,
// and a removed run directory should be reported to the caller within a few of its calls.
constexpr double kNameCheckSecs = 0.01;

// The end of the last whole record among the first `written` bytes of `buffer`, and how many
// records end there. The buffer holds whole framed records only.
size_t complete_prefix(const std::string& buffer, size_t written, uint64_t* records) {
    size_t pos = 0;
    *records = 0;
    while (pos + kRecordHeader <= buffer.size()) {
        uint64_t len = 0;
        std::memcpy(&len, buffer.data() + pos, sizeof len);  // little-endian, as on every target
        const size_t end = pos + kRecordHeader + static_cast<size_t>(len) + 4;
        if (end > written) break;
        pos = end;
        ++*records;
    }
    return pos;
}

}  // namespace

EventFile* EventFile::create(const std::string& path, double flush_secs,
                             std::shared_ptr<FileState>* state, int* err) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_APPEND, 0666);
    if (fd < 0) {
        *err = errno;
        return nullptr;
    }
    try {
        *state = std::make_shared<FileState>(path);
        return new EventFile(fd, flush_secs, *state);
    } catch (const std::bad_alloc&) {
        ::close(fd);
        ::unlink(path.c_str());
        *err = ENOMEM;
        return nullptr;
    }
}

EventFile* EventFile::create_later(const std::string& path, double flush_secs,
                                   std::shared_ptr<FileState>* state) {
    try {
        *state = std::make_shared<FileState>(path);
        return new EventFile(-1, flush_secs, *state);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}

namespace {

// mkdir -p of the directory `path` is in.
int make_parent_directories(const std::string& path) {
    for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
        const std::string dir = path.substr(0, slash);
        if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST) return errno;
    }
    return 0;
}

}  // namespace

void EventFile::open_now(double now) {
    if (fd_ >= 0 || failed_) return;
    const std::string& path = state_->path;
    int err = make_parent_directories(path);
    if (!err) {
        fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_APPEND, 0666);
        if (fd_ < 0) err = errno;
    }
    if (err) fail(err, "cannot create event file", false, now);
}

EventFile::EventFile(int fd, double flush_secs, std::shared_ptr<FileState> state)
    : fd_(fd), flush_secs_(flush_secs), state_(std::move(state)) {}

EventFile::~EventFile() {
    if (fd_ >= 0) ::close(fd_);
}

void EventFile::fail(int err, const char* context, bool keep_buffered, double now,
                     std::string_view other_path) {
    if (failed_) return;
    if (keep_buffered) {
        write_out(now);
        if (failed_) return;  // the write failed first: that is the error to report
    }
    failed_ = true;
    awaiting_segment_ = false;
    state_->lost.fetch_add(pending_records_, std::memory_order_relaxed);
    pending_records_ = 0;
    std::string().swap(buffer_);
    state_->fail(err, context, other_path.empty() ? std::string_view(segment_path_) : other_path);
}

// A write stopped after `written` bytes of the buffer: keep every whole record that reached the
// file, cut the torn one off, and fail.
void EventFile::write_failed(int err, size_t written) {
    uint64_t records = 0;
    const size_t kept = complete_prefix(buffer_, written, &records);
    if (kept < written && ::ftruncate(fd_, static_cast<off_t>(size_ + kept)) != 0) {
        // Nothing more to do: readers stop at a torn record anyway.
    }
    size_ += kept;
    state_->bytes_written.fetch_add(kept, std::memory_order_relaxed);
    state_->records_written.fetch_add(records, std::memory_order_relaxed);
    pending_records_ -= records;
    fail(err, "cannot write event file", false, 0);
}

void EventFile::write_out(double now) {
    last_write_ = now;
    if (failed_ || fd_ < 0) return;  // not open: its open item failed the file first
    if (!buffer_.empty()) {
        const char* p = buffer_.data();
        size_t left = buffer_.size();
        while (left > 0) {
            const ssize_t n = ::write(fd_, p, left);
            if (n < 0) {
                if (errno == EINTR) continue;
                write_failed(errno, buffer_.size() - left);
                return;
            }
            p += n;
            left -= static_cast<size_t>(n);
        }
        size_ += buffer_.size();
        state_->bytes_written.fetch_add(buffer_.size(), std::memory_order_relaxed);
        state_->records_written.fetch_add(pending_records_, std::memory_order_relaxed);
        pending_records_ = 0;
        buffer_.clear();
        if (buffer_.capacity() > (8u << 20)) std::string().swap(buffer_);  // after a burst of images
    }
    if (now - last_name_check_ >= kNameCheckSecs) check_name(now);
}

void EventFile::check_name(double now) {
    last_name_check_ = now;
    struct stat st;
    if (::fstat(fd_, &st) == 0 && st.st_nlink == 0) fail(ENOENT, "event file was removed", false, now);
}

void EventFile::flush(double now) {
    write_out(now);
    if (!failed_ && fd_ >= 0) check_name(now);
}

void EventFile::rotate(std::string next_path, bool with_source, double now) {
    if (failed_) return;
    if (fd_ >= 0) {
        flush(now);
        if (failed_) return;
        const int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) {
            fail(errno, "cannot close event file", false, now);
            return;
        }
    }
    size_ = 0;
    next_path_ = std::move(next_path);
    next_with_source_ = with_source;
    awaiting_segment_ = true;
}

void EventFile::start_segment(double now) {
    awaiting_segment_ = false;
    fd_ = ::open(next_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_APPEND, 0666);
    if (fd_ < 0) {
        fail(errno, "cannot create event file", false, now, next_path_);
        return;
    }
    segment_path_.swap(next_path_);
    last_name_check_ = now;
    const size_t start = begin_record(buffer_);
    encode_file_version_event(buffer_, now, 0, next_with_source_);
    end_record(buffer_, start);
    record_added();
}

void EventFile::close(double now) {
    flush(now);
    if (fd_ >= 0 && ::close(fd_) != 0 && !failed_) fail(errno, "cannot close event file", false, now);
    fd_ = -1;
}

}  // namespace fasttb
