// The raw fast-call scalar entry points; see fastcall.h.
#include "fastcall.h"

#include <vector>

namespace fasttb {
namespace {

constexpr const char* kCapsuleName = "fasttb.ScalarFastPath";

struct FastPath {
    std::shared_ptr<EventWriter> writer;
    PyObject* owner_ref = nullptr;  // weak reference: the owner holds us through its __dict__
};

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

FastPath* fast_path_of(PyObject* capsule) {
    return static_cast<FastPath*>(PyCapsule_GetPointer(capsule, kCapsuleName));
}

// Queues the scalar if everything is plain. 1: queued; 0: not handled; -1: Python error.
int try_push(FastPath& path, PyObject* tag, PyObject* value, PyObject* step_obj, PyObject* wall) {
    EventWriter* w = path.writer.get();
    if (!w || !w->ready() || !PyUnicode_CheckExact(tag)) return 0;
    double v, wall_time;
    int64_t step;
    if (!as_double(value, &v) || !as_step(step_obj, &step)) return 0;
    if (wall == Py_None) {
        wall_time = wall_clock_now();
    } else if (!as_double(wall, &wall_time)) {
        return 0;
    }
    Py_ssize_t tag_len;
    const char* s = PyUnicode_AsUTF8AndSize(tag, &tag_len);
    if (!s) {
        PyErr_Clear();  // e.g. lone surrogates: the general path raises a clear error
        return 0;
    }
    Item* item = w->make_item(ItemKind::scalar, {s, static_cast<size_t>(tag_len)}, 0);
    if (!item) {
        PyErr_NoMemory();
        return -1;
    }
    item->value = v;
    item->step = step;
    item->wall_time = wall_time;
    w->push<GilRelease>(item);
    return 1;
}

PyObject* push(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "push(tag, value, step, walltime) takes 4 arguments");
        return nullptr;
    }
    FastPath* path = fast_path_of(self);
    if (!path) return nullptr;
    const int r = try_push(*path, args[0], args[1], args[2], args[3]);
    if (r < 0) return nullptr;
    return PyBool_FromLong(r);
}

// Names of add_scalar's parameters, interned once, in order.
constexpr int kParams = 6;
PyObject* g_param_names[kParams];
PyObject* g_general_name;

int param_index(PyObject* name) {
    for (int i = 0; i < kParams; ++i)
        if (name == g_param_names[i]) return i;  // keywords in calls are interned
    for (int i = 0; i < kParams; ++i)
        if (PyUnicode_Compare(name, g_param_names[i]) == 0) return i;
    return -1;
}

PyObject* general_path(FastPath& path, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
#if PY_VERSION_HEX >= 0x030D0000
    PyObject* owner = nullptr;
    if (PyWeakref_GetRef(path.owner_ref, &owner) < 0) return nullptr;
    if (!owner) {
        PyErr_SetString(PyExc_ReferenceError, "the SummaryWriter of this add_scalar is gone");
        return nullptr;
    }
    struct Release {
        PyObject* o;
        ~Release() { Py_DECREF(o); }
    } release{owner};
#else
    PyObject* owner = PyWeakref_GetObject(path.owner_ref);  // borrowed
    if (!owner) return nullptr;
    if (owner == Py_None) {
        PyErr_SetString(PyExc_ReferenceError, "the SummaryWriter of this add_scalar is gone");
        return nullptr;
    }
#endif
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    const Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    std::vector<PyObject*> full(static_cast<size_t>(total) + 1);
    full[0] = owner;
    for (Py_ssize_t i = 0; i < total; ++i) full[size_t(i) + 1] = args[i];
    return PyObject_VectorcallMethod(g_general_name, full.data(), size_t(nargs) + 1, kwnames);
}

PyObject* add_scalar(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    FastPath* path = fast_path_of(self);
    if (!path) return nullptr;
    PyObject* slot[kParams] = {nullptr, nullptr, Py_None, Py_None, nullptr, nullptr};
    bool plain = nargs <= kParams;
    for (Py_ssize_t i = 0; plain && i < nargs; ++i) slot[i] = args[i];
    if (plain && kwnames) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); ++k) {
            const int i = param_index(PyTuple_GET_ITEM(kwnames, k));
            if (i < 0 || (i < nargs)) {
                plain = false;  // unknown or repeated: the general path raises TypeError
                break;
            }
            slot[i] = args[nargs + k];
        }
    }
    if (plain && slot[0] && slot[1] && (!slot[4] || slot[4] == Py_False)) {
        const int r = try_push(*path, slot[0], slot[1], slot[2], slot[3]);
        if (r < 0) return nullptr;
        if (r > 0) Py_RETURN_NONE;
    }
    return general_path(*path, args, size_t(nargs), kwnames);
}

PyMethodDef kPushDef = {
    "push", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(push)), METH_FASTCALL,
    "push($self, tag, value, step, walltime, /)\n--\n\n"
    "Queue an old-style scalar if every argument is plain; return whether it was queued."};

PyMethodDef kAddScalarDef = {
    "add_scalar", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(add_scalar)),
    METH_FASTCALL | METH_KEYWORDS,
    "add_scalar($self, tag, scalar_value, global_step=None, walltime=None, new_style=False, "
    "double_precision=False)\n--\n\n"
    "Log one number (see SummaryWriter.add_scalar; this is its native fast path)."};

void destroy_capsule(PyObject* capsule) {
    FastPath* path = fast_path_of(capsule);
    if (!path) return;
    Py_XDECREF(path->owner_ref);
    delete path;
}

bool intern_names() {
    if (g_general_name) return true;
    const char* names[kParams] = {"tag", "scalar_value", "global_step", "walltime", "new_style",
                                  "double_precision"};
    for (int i = 0; i < kParams; ++i)
        if (!(g_param_names[i] = PyUnicode_InternFromString(names[i]))) return false;
    g_general_name = PyUnicode_InternFromString("_add_scalar");
    return g_general_name != nullptr;
}

}  // namespace

PyObject* make_scalar_fast_path(PyObject* owner) {
    if (!intern_names()) return nullptr;
    PyObject* ref = PyWeakref_NewRef(owner, nullptr);
    if (!ref) return nullptr;
    auto* path = new FastPath{nullptr, ref};
    PyObject* capsule = PyCapsule_New(path, kCapsuleName, destroy_capsule);
    if (!capsule) {
        Py_DECREF(ref);
        delete path;
        return nullptr;
    }
    PyObject* pusher = PyCFunction_NewEx(&kPushDef, capsule, nullptr);
    PyObject* adder = pusher ? PyCFunction_NewEx(&kAddScalarDef, capsule, nullptr) : nullptr;
    Py_DECREF(capsule);
    if (!adder) {
        Py_XDECREF(pusher);
        return nullptr;
    }
    PyObject* pair = PyTuple_Pack(2, pusher, adder);
    Py_DECREF(pusher);
    Py_DECREF(adder);
    return pair;
}

bool set_scalar_target(PyObject* builtin, std::shared_ptr<EventWriter> writer) {
    if (!PyCFunction_Check(builtin)) {
        PyErr_SetString(PyExc_TypeError, "expected a scalar fast-path builtin");
        return false;
    }
    FastPath* path = fast_path_of(PyCFunction_GET_SELF(builtin));
    if (!path) return false;
    path->writer = std::move(writer);
    return true;
}

}  // namespace fasttb
