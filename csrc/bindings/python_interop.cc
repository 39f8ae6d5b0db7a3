// The GIL as a CallerLock, the exit handshake, and Status to exception; see python_interop.h.
#include "bindings/python_interop.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <pthread.h>
#include <string>
#include <thread>

#include "runtime/termination.h"
#include "runtime/writer.h"

namespace fasttb {
namespace {

std::mutex g_mutex;
std::condition_variable g_returned;
bool g_exiting = false;           // guarded by g_mutex
std::thread::id g_exiting_thread;  // guarded by g_mutex: the thread that runs the shutdown
int g_returning = 0;               // guarded by g_mutex: threads between the check and the GIL

// fork() copies only the forking thread: a parent thread counted in g_returning, or holding
// g_mutex, is not in the child, and the child's exit hook would wait for it forever.
void before_fork() { g_mutex.lock(); }
void after_fork_in_parent() { g_mutex.unlock(); }
void after_fork_in_child() {
    g_returning = 0;
    g_mutex.unlock();  // the forking thread locked it, and is the child's only thread
}

[[noreturn]] void park_for_good() {
    abandon_calling_thread();
    for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
}

}  // namespace

void PythonLock::release() { state_ = PyEval_SaveThread(); }

void PythonLock::acquire() {
    {
        std::unique_lock<std::mutex> lock(g_mutex);
        if (g_exiting && std::this_thread::get_id() != g_exiting_thread) {
            lock.unlock();
            park_for_good();
        }
        ++g_returning;
    }
    PyEval_RestoreThread(state_);
    std::lock_guard<std::mutex> lock(g_mutex);
    if (--g_returning == 0 && g_exiting) g_returned.notify_all();
}

bool PythonLock::interrupted() { return PyErr_CheckSignals() != 0; }

void install_exit_handshake_fork_handlers() {
    static const int registered = pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
    (void)registered;
}

void begin_interpreter_exit() {
    if (termination_pending()) {
        // The watcher is writing what is queued and then ends the process by SIGTERM; an exit
        // with status 0 first would hide the signal from whoever sent it.
        PyEval_SaveThread();
        for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
    }
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        if (g_exiting) return;
        g_exiting = true;
        g_exiting_thread = std::this_thread::get_id();
    }
    PyThreadState* state = PyEval_SaveThread();
    {
        std::unique_lock<std::mutex> lock(g_mutex);
        g_returned.wait(lock, [] { return g_returning == 0; });
    }
    PyEval_RestoreThread(state);
}

PyObject* set_python_error(const Status& status) {
    switch (status.failure) {
        case Failure::none:
            PyErr_SetString(PyExc_SystemError, "fasttb: an error without a failure");
            break;
        case Failure::value:
            PyErr_SetString(PyExc_ValueError, status.message.c_str());
            break;
        case Failure::type:
            PyErr_SetString(PyExc_TypeError, status.message.c_str());
            break;
        case Failure::closed: {
            const std::string message = status.message + ": " + status.path;
            PyErr_SetString(PyExc_OSError, message.c_str());
            break;
        }
        case Failure::os: {
            // OSError(errno, message, path): Python picks the subclass (FileNotFoundError, ...).
            const std::string message = status.message + ": " + std::strerror(status.err);
            PyObject* args = nullptr;
            if (status.path.empty()) {
                args = Py_BuildValue("(is)", status.err, message.c_str());
            } else if (PyObject* path = PyUnicode_DecodeFSDefaultAndSize(
                           status.path.data(), Py_ssize_t(status.path.size()))) {
                args = Py_BuildValue("(isO)", status.err, message.c_str(), path);
                Py_DECREF(path);
            }
            if (args) {
                // Made here rather than left for Python to normalize, so that the error set has
                // the subclass's type (pybind11 insists that the two agree).
                PyObject* error = PyObject_Call(PyExc_OSError, args, nullptr);
                Py_DECREF(args);
                if (error) {
                    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error)), error);
                    Py_DECREF(error);
                }
            }
            break;
        }
        case Failure::interrupted:
            if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
            break;
        case Failure::no_memory:
            PyErr_NoMemory();
            break;
    }
    return nullptr;
}

}  // namespace fasttb
