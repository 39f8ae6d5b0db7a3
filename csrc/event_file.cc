// Event file I/O; see event_file.h.
#include "event_file.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fasttb {

EventFile* EventFile::create(const std::string& path, double flush_secs,
                             std::shared_ptr<FileState>* state, int* err) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_APPEND, 0666);
    if (fd < 0) {
        *err = errno;
        return nullptr;
    }
    *state = std::make_shared<FileState>(path);
    return new EventFile(fd, flush_secs, *state);
}

EventFile::EventFile(int fd, double flush_secs, std::shared_ptr<FileState> state)
    : fd_(fd), flush_secs_(flush_secs), state_(std::move(state)) {}

EventFile::~EventFile() {
    if (fd_ >= 0) ::close(fd_);
}

void EventFile::fail(int err, const char* context) {
    failed_ = true;
    state_->lost.fetch_add(pending_records_, std::memory_order_relaxed);
    pending_records_ = 0;
    buffer_.clear();
    state_->fail(err, context);
}

void EventFile::write_out(double now) {
    last_write_ = now;
    if (buffer_.empty() || failed_) return;
    const char* p = buffer_.data();
    size_t left = buffer_.size();
    while (left > 0) {
        const ssize_t n = ::write(fd_, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            // Part of the buffer may be on disk, ending in a torn record: cut the file back to
            // the last complete buffer so that it stays a clean prefix of the log (the records
            // of this buffer are counted as lost).
            if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
                // Nothing more to do: readers stop at a torn record anyway.
            }
            fail(err, "cannot write event file");
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
    if (buffer_.capacity() > (8u << 20)) buffer_.shrink_to_fit();  // after a burst of images
}

void EventFile::flush(double now) {
    write_out(now);
    if (failed_) return;
    struct stat st;
    if (::fstat(fd_, &st) == 0 && st.st_nlink == 0) fail(ENOENT, "event file was removed");
}

void EventFile::close(double now) {
    flush(now);
    if (fd_ >= 0 && ::close(fd_) != 0 && !failed_) fail(errno, "cannot close event file");
    fd_ = -1;
}

}  // namespace fasttb
