// The hottest entry point, add_scalar, as a raw CPython fast-call function: pybind11's argument
// conversion would cost several times the work the call does.
#pragma once

#include <Python.h>

#include <memory>

#include "writer.h"

namespace fasttb {

// Releases the GIL for as long as it exists.
struct GilRelease {
    PyThreadState* state = PyEval_SaveThread();
    GilRelease() = default;
    GilRelease(const GilRelease&) = delete;
    GilRelease& operator=(const GilRelease&) = delete;
    ~GilRelease() { PyEval_RestoreThread(state); }
};

// Returns a new reference to a builtin `push(tag, value, step, walltime) -> bool` bound to
// `writer`. It queues an old-style scalar and returns True when every argument has a plain type
// (str tag; int, float or bool value; int or None step; int, float or None walltime) and the
// writer is ready; otherwise it does nothing and returns False, and the Python caller takes the
// general path, which converts, validates and raises.
PyObject* make_scalar_pusher(std::shared_ptr<EventWriter> writer);

}  // namespace fasttb
