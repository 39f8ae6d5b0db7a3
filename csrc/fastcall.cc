// The raw fast-call scalar pusher; see fastcall.h.
#include "fastcall.h"

namespace fasttb {
namespace {

constexpr const char* kCapsuleName = "fasttb.EventWriter";

bool as_double(PyObject* o, double* out) {
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return true;
    }
    if (o == Py_True || o == Py_False) {
        *out = o == Py_True ? 1.0 : 0.0;
        return true;
    }
    if (PyLong_CheckExact(o)) {
        *out = PyLong_AsDouble(o);
        if (*out == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();  // too large for a double: the general path reports it
            return false;
        }
        return true;
    }
    return false;
}

bool as_step(PyObject* o, int64_t* out) {
    if (o == Py_None) {
        *out = 0;
        return true;
    }
    if (o == Py_True || o == Py_False) {
        *out = o == Py_True;
        return true;
    }
    if (!PyLong_CheckExact(o)) return false;
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return false;
    }
    *out = v;
    return true;
}

PyObject* push_scalar(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "push(tag, value, step, walltime) takes 4 arguments");
        return nullptr;
    }
    auto* holder = static_cast<std::shared_ptr<EventWriter>*>(PyCapsule_GetPointer(self, kCapsuleName));
    if (!holder) return nullptr;
    EventWriter& w = **holder;
    if (!w.ready() || !PyUnicode_CheckExact(args[0])) Py_RETURN_FALSE;
    double value, wall_time;
    int64_t step;
    if (!as_double(args[1], &value) || !as_step(args[2], &step)) Py_RETURN_FALSE;
    if (args[3] == Py_None) {
        wall_time = wall_clock_now();
    } else if (!as_double(args[3], &wall_time)) {
        Py_RETURN_FALSE;
    }
    Py_ssize_t tag_len;
    const char* tag = PyUnicode_AsUTF8AndSize(args[0], &tag_len);
    if (!tag) {
        PyErr_Clear();  // e.g. lone surrogates: the general path raises a clear error
        Py_RETURN_FALSE;
    }
    Item* item = w.make_item(ItemKind::scalar, {tag, static_cast<size_t>(tag_len)}, 0);
    if (!item) return PyErr_NoMemory();
    item->value = value;
    item->step = step;
    item->wall_time = wall_time;
    w.push<GilRelease>(item);
    Py_RETURN_TRUE;
}

PyMethodDef kPushDef = {"push", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(push_scalar)),
                        METH_FASTCALL, "Queue an old-style scalar if every argument is plain."};

void destroy_capsule(PyObject* capsule) {
    delete static_cast<std::shared_ptr<EventWriter>*>(PyCapsule_GetPointer(capsule, kCapsuleName));
}

}  // namespace

PyObject* make_scalar_pusher(std::shared_ptr<EventWriter> writer) {
    auto* holder = new std::shared_ptr<EventWriter>(std::move(writer));
    PyObject* capsule = PyCapsule_New(holder, kCapsuleName, destroy_capsule);
    if (!capsule) {
        delete holder;
        return nullptr;
    }
    PyObject* fn = PyCFunction_NewEx(&kPushDef, capsule, nullptr);
    Py_DECREF(capsule);
    return fn;
}

}  // namespace fasttb
