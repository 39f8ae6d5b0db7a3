// Event file I/O; see event_file.h.
#include "runtime/event_file.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/event.h"
#include "format/record.h"

namespace fasttb {
namespace {

// How often a busy file is checked for having been removed: a fstat costs about a microsecond,
// and a removed run directory should be reported to the caller within a few of its calls.
constexpr double kNameCheckSecs = 0.01;
constexpr size_t kKeptBuffer = size_t(1) << 20;  // what a file keeps of its buffer between writes

// Event file descriptors open in this process. Changed by the worker, and by a caller creating
// its writer's file; read by the worker to decide whether a file gives its descriptor back.
std::atomic<int> g_open_files{0};

// Which descriptors (below 65536) are event files, so that a forked child can close those it
// inherited. A bit is set after its open() and cleared before its close(), so a set bit always
// names an open event file, at fork() too; a fork in between leaves one descriptor to the child,
// as before. Any thread.
constexpr int kTrackedFds = 1 << 16;
std::atomic<uint64_t> g_event_fds[kTrackedFds / 64];

void count_open(int fd) {
    g_open_files.fetch_add(1, std::memory_order_relaxed);
    if (fd < kTrackedFds) g_event_fds[fd / 64].fetch_or(uint64_t(1) << (fd % 64), std::memory_order_seq_cst);
}

// Before the descriptor's close().
void count_closing(int fd) {
    if (fd < kTrackedFds) g_event_fds[fd / 64].fetch_and(~(uint64_t(1) << (fd % 64)), std::memory_order_seq_cst);
    g_open_files.fetch_sub(1, std::memory_order_relaxed);
}

constexpr int kOpenFlags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_APPEND;

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
    const int fd = ::open(path.c_str(), kOpenFlags, 0666);
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
    if (fd_ >= 0 || parked_ || failed_) return;
    const std::string& path = state_->path;
    int err = make_parent_directories(path);
    if (!err) {
        const int fd = ::open(path.c_str(), kOpenFlags, 0666);
        if (fd < 0) err = errno;
        else opened(fd);
    }
    if (err) fail(err, "cannot create event file", false, now);
    else park_if_over_budget(now);
}

int EventFile::open_file_budget() {
    static const int budget = [] {
        struct rlimit limit;
        if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 1024;
        return static_cast<int>(std::clamp<rlim_t>(limit.rlim_cur / 4, 8, 1 << 16));
    }();
    return budget;
}

int EventFile::open_files() { return g_open_files.load(std::memory_order_relaxed); }

void EventFile::close_inherited() {
    for (int word = 0; word < kTrackedFds / 64; ++word) {
        uint64_t bits = g_event_fds[word].exchange(0, std::memory_order_relaxed);
        for (int bit = 0; bits; ++bit, bits >>= 1)
            if (bits & 1) ::close(word * 64 + bit);
    }
    g_open_files.store(0, std::memory_order_relaxed);
}

EventFile::EventFile(int fd, double flush_secs, std::shared_ptr<FileState> state)
    : fd_(fd), flush_secs_(flush_secs), state_(std::move(state)) {
    if (fd_ >= 0) count_open(fd_);
}

EventFile::~EventFile() {
    if (fd_ >= 0) {
        count_closing(fd_);
        ::close(fd_);
    }
}

void EventFile::opened(int fd) {
    fd_ = fd;
    count_open(fd);
}

void EventFile::park_if_over_budget(double now) {
    if (fd_ < 0 || failed_ || open_files() <= open_file_budget()) return;
    struct stat st;
    if (::fstat(fd_, &st) != 0) {
        fail(errno, "cannot stat event file", false, now);
        return;
    }
    device_ = static_cast<uint64_t>(st.st_dev);
    inode_ = static_cast<uint64_t>(st.st_ino);
    const int fd = fd_;
    fd_ = -1;
    count_closing(fd);
    parked_ = true;
    if (::close(fd) != 0) fail(errno, "cannot close event file", false, now);
}

// Inode numbers are reused at once, so a file made in the parked one's place is told apart by
// its size as well: only this file's writes change it.
bool EventFile::same_file(const struct stat& st) const {
    return static_cast<uint64_t>(st.st_dev) == device_ && static_cast<uint64_t>(st.st_ino) == inode_ &&
           static_cast<uint64_t>(st.st_size) == size_;
}

// A parked file removed, or replaced by another of the same name, has lost its records' place:
// that fails it as a removed open file does.
bool EventFile::reopen(double now) {
    const int fd = ::open(disk_path().c_str(), O_WRONLY | O_CLOEXEC | O_APPEND);
    if (fd < 0) {
        const int err = errno;
        fail(err, err == ENOENT ? "event file was removed" : "cannot open event file", false, now);
        return false;
    }
    struct stat st;
    if (::fstat(fd, &st) != 0 || !same_file(st)) {
        ::close(fd);
        fail(ENOENT, "event file was removed", false, now);
        return false;
    }
    parked_ = false;
    opened(fd);
    last_name_check_ = now;  // just found by its name
    return true;
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
    if (failed_) return;
    if (fd_ < 0) {  // parked, or never opened: its open item failed the file first
        if (!parked_ || buffer_.empty() || !reopen(now)) return;
    }
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
        // A buffer grown past 1 MiB (an image, a flood of scalars) is given back: kept, it would
        // hold memory outside the queue's bound for as long as the file stays open.
        if (buffer_.capacity() > kKeptBuffer) std::string().swap(buffer_);
    }
    if (now - last_name_check_ >= kNameCheckSecs) check_name(now);
    park_if_over_budget(now);
}

namespace {

// An unlinked file whose last change (ctime: the unlink) came after its last write (mtime): the
// records were in it when it went, with its directory (a TemporaryDirectory around the run),
// even if its name was last looked at before they were written (at most every 10 ms). A write
// after the unlink stamps both times alike, and the file fails. Timestamps within one tick of
// the kernel's clock compare equal: a removal that close to the last write still fails the file.
bool removed_after_last_write(const struct stat& st) {
    return st.st_ctim.tv_sec > st.st_mtim.tv_sec ||
           (st.st_ctim.tv_sec == st.st_mtim.tv_sec && st.st_ctim.tv_nsec > st.st_mtim.tv_nsec);
}

}  // namespace

void EventFile::check_name(double now) {
    last_name_check_ = now;
    struct stat st;
    bool named = true;
    if (fd_ >= 0) {
        named = ::fstat(fd_, &st) != 0 || st.st_nlink != 0 || removed_after_last_write(st);
    } else if (parked_) {
        named = ::stat(disk_path().c_str(), &st) == 0 && same_file(st);
    }
    if (named) {
        size_at_name_check_ = size_;
    } else if (size_ > size_at_name_check_) {
        // Records written since the file last had its name may have gone to no file at all.
        // None since: what it holds went with its name, the remover's doing, and the next
        // record written makes it fail.
        fail(ENOENT, "event file was removed", false, now);
    }
}

void EventFile::flush(double now) {
    write_out(now);
    if (!failed_) check_name(now);
}

void EventFile::rotate(std::string next_path, bool with_source, double now) {
    if (failed_) return;
    if (fd_ >= 0 || parked_) {
        flush(now);
        if (failed_) return;
        parked_ = false;
    }
    if (fd_ >= 0) {
        const int fd = fd_;
        fd_ = -1;
        count_closing(fd);
        if (::close(fd) != 0) {
            fail(errno, "cannot close event file", false, now);
            return;
        }
    }
    size_ = size_at_name_check_ = 0;
    next_path_ = std::move(next_path);
    next_with_source_ = with_source;
    awaiting_segment_ = true;
}

void EventFile::start_segment(double now) {
    awaiting_segment_ = false;
    const int fd = ::open(next_path_.c_str(), kOpenFlags, 0666);
    if (fd < 0) {
        fail(errno, "cannot create event file", false, now, next_path_);
        return;
    }
    opened(fd);
    segment_path_.swap(next_path_);
    last_name_check_ = now;
    const size_t start = begin_record(buffer_);
    encode_file_version_event(buffer_, now, 0, next_with_source_);
    end_record(buffer_, start);
    record_added();
    park_if_over_budget(now);
}

void EventFile::close(double now) {
    flush(now);
    parked_ = false;
    if (fd_ < 0) return;
    const int fd = fd_;
    fd_ = -1;
    count_closing(fd);
    if (::close(fd) != 0 && !failed_) fail(errno, "cannot close event file", false, now);
}

}  // namespace fasttb
