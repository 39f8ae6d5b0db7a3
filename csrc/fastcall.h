// The hottest entry point, add_scalar, as raw CPython fast-call functions: pybind11's argument
// conversion, and even a Python-level method frame, would cost more than the work itself.
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

// Creates the scalar fast path of one SummaryWriter `owner` (held weakly) and returns a new
// reference to a tuple of two builtins sharing it:
//   push(tag, value, step, walltime) -> bool
//       queues an old-style scalar and returns True when every argument has a plain type (str
//       tag; int, float or bool value; int or None step; int, float or None walltime) and the
//       target writer is ready; otherwise does nothing and returns False.
//   add_scalar(tag, scalar_value, global_step=None, walltime=None, new_style=False,
//              double_precision=False)
//       the same, with the stock signature; whatever push() would refuse is handed on to
//       owner._add_scalar(...) with the original arguments, which converts, validates, raises.
// The target starts empty (everything falls back) until set_scalar_target() names a writer.
PyObject* make_scalar_fast_path(PyObject* owner);

// Points the fast path that `builtin` (either of the two) belongs to at `writer` (may be null).
// Returns false with a Python error set if `builtin` is not one of them.
bool set_scalar_target(PyObject* builtin, std::shared_ptr<EventWriter> writer);

}  // namespace fasttb
