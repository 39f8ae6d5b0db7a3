// The hottest entry points, add_scalar and add_text, in raw CPython: pybind11's argument
// conversion, and even a Python-level method frame, would cost more than the work itself.
//
// fasttb._core.NativeWriter is the C base class of fasttb.SummaryWriter and holds the event
// writer that plain scalars go to (the scalar target; reading it needs the GIL).
// fasttb._core.add_scalar is a method descriptor that SummaryWriter uses as its add_scalar (and
// fasttb._core.add_text likewise, with its own plain arguments: str tag and text). It is
// flagged as a method descriptor, so `w.add_scalar(...)` calls it directly with `w` as the first
// argument, with no bound method in between; `w.add_scalar` taken as a value is a bound method
// that keeps `w` alive, as a Python method would. Plain arguments (str tag; int, float or bool
// value; int, bool or None step; int, float or None walltime; new_style false) are queued here;
// anything else goes to `w._add_scalar(...)` with the original arguments, which converts,
// validates and raises.
#pragma once

#include <Python.h>

#include <memory>

#include "runtime/writer.h"

namespace fasttb {

// Adds NativeWriter, add_scalar and add_text to `module`. False with a Python error set on failure.
bool add_fast_paths(PyObject* module);

// Points the scalar target of `writer` (a NativeWriter) at `target` (may be null: everything
// takes the general path). False with a Python error set if `writer` is not a NativeWriter.
bool set_scalar_target(PyObject* writer, std::shared_ptr<EventWriter> target);

}  // namespace fasttb
