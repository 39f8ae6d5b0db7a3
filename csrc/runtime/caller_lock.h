// The lock a producer holds while it is not waiting: the interpreter's GIL, as the bindings
// implement it (python_interop.h). The core only needs to let go of it around long copies and waits, and to
// ask between slices of a long wait whether the caller wants to stop (Ctrl-C).
#pragma once

#include <chrono>

namespace fasttb {

class CallerLock {
public:
    virtual void release() = 0;
    // Takes the lock back. May never return: a thread coming back while the interpreter shuts
    // down is parked rather than let into a finalizing interpreter (see python_interop.cc).
    virtual void acquire() = 0;
    // With the lock held: true when a signal handler has raised (the error is left set).
    virtual bool interrupted() = 0;

protected:
    ~CallerLock() = default;
};

// Releases `lock` for the scope: copies of large inputs, which touch nothing shared.
class Unlocked {
public:
    explicit Unlocked(CallerLock& lock) : lock_(lock) { lock_.release(); }
    ~Unlocked() { lock_.acquire(); }
    Unlocked(const Unlocked&) = delete;
    Unlocked& operator=(const Unlocked&) = delete;

private:
    CallerLock& lock_;
};

// How long a wait runs without the lock before it looks at signals: Ctrl-C answers within this.
constexpr std::chrono::milliseconds kWaitSlice{50};

// Waits until `finished(slice)` returns true, calling it without the lock, one slice at a time,
// and between slices taking the lock back to look for signals. Returns false when interrupted
// (the lock is held and the error set either way). `finished` waits at most the slice it is given.
template <class Finished>
bool wait_released(CallerLock& lock, Finished&& finished) {
    for (;;) {
        bool done;
        {
            Unlocked unlocked(lock);
            done = finished(kWaitSlice);
        }
        if (done) return true;
        if (lock.interrupted()) return false;
    }
}

}  // namespace fasttb
