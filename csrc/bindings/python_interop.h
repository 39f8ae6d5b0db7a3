// What the bindings (module.cc, fastcall.cc) share: the GIL as the core's CallerLock, the
// interpreter-exit handshake that makes letting go of it safe, and a Status as a Python error.
#pragma once

#include <Python.h>

#include "runtime/caller_lock.h"
#include "runtime/status.h"

namespace fasttb {

// The one way fasttb lets go of the GIL and takes it back; construct it with the GIL held.
//
// Taking the GIL back while the interpreter shuts down is what ends daemon threads: CPython
// stops such a thread from inside PyEval_RestoreThread, and that unwinding through C++ frames
// aborts the whole process. fasttb's exit hook (begin_interpreter_exit) runs before the shutdown
// starts; from then on, a thread other than the one shutting down that comes back from a wait
// parks for good instead, after leaving the queue's line and its pins so that nobody waits for
// it. The process ends around it, as it ends around daemon threads still running Python.
class PythonLock final : public CallerLock {
public:
    void release() override;
    void acquire() override;
    bool interrupted() override;

private:
    PyThreadState* state_ = nullptr;
};

// fasttb._core's atexit hook: marks the interpreter as exiting, then lets the threads that are
// already taking the GIL back have it, so that none is caught in the shutdown. GIL held.
// Registered at interpreter start by _fasttb_exit.py (fasttb-patch.pth), so that it runs after
// every other atexit handler; by the module itself where that did not run (python -S).
void begin_interpreter_exit();
// Keeps the exit handshake true across fork(); once, when the module loads.
void install_exit_handshake_fork_handlers();

// Sets the Python error that `status` describes (which must not be ok) and returns nullptr.
// Failure::interrupted leaves the error that a signal handler set.
PyObject* set_python_error(const Status& status);

}  // namespace fasttb
