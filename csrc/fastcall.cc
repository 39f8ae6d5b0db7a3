// NativeWriter and the add_scalar descriptor; see fastcall.h.
#include "fastcall.h"

#include <cstddef>
#include <new>

#include "python_interop.h"

namespace fasttb {
namespace {

struct NativeWriter {
    PyObject_HEAD
    std::shared_ptr<EventWriter> target;  // read and written with the GIL held
};

struct ScalarMethod {
    PyObject_HEAD
    vectorcallfunc vectorcall;
};

PyTypeObject g_native_writer_type;
PyTypeObject g_scalar_method_type;

// Names of add_scalar's parameters, interned once, in order.
constexpr int kParams = 6;
PyObject* g_param_names[kParams];
PyObject* g_general_name;
// The last NativeWriter subclass seen (a strong reference, so that its address cannot be reused
// by another type), to skip the walk over the MRO on every call.
PyObject* g_known_type;

NativeWriter* as_native_writer(PyObject* self) {
    PyTypeObject* type = Py_TYPE(self);
    if (reinterpret_cast<PyObject*>(type) != g_known_type) {
        if (!PyType_IsSubtype(type, &g_native_writer_type)) return nullptr;
        Py_INCREF(type);
        Py_XSETREF(g_known_type, reinterpret_cast<PyObject*>(type));
    }
    return reinterpret_cast<NativeWriter*>(self);
}

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
            PyErr_Clear();  // too large for a double: the general path raises OverflowError
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

// Queues the scalar if everything is plain. 1: queued; 0: not handled; -1: Python error set.
int try_push(NativeWriter* self, PyObject* tag, PyObject* value, PyObject* step_obj, PyObject* wall) {
    EventWriter* w = self->target.get();
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
    if (static_cast<size_t>(tag_len) > UINT32_MAX) return 0;
    Item* item = w->make_item(ItemKind::scalar, {s, static_cast<size_t>(tag_len)}, 0);
    if (!item) {
        PyErr_NoMemory();
        return -1;
    }
    item->value = v;
    item->step = step;
    item->wall_time = wall_time;
    if (w->try_push(item)) return 1;
    // The queue is full: wait without the GIL. push_waiting pins the writer, so a close() or a
    // new target meanwhile cannot free it under this thread.
    PythonLock lock;
    const Status status = w->push_waiting(item, lock);
    if (!status.ok()) {
        set_python_error(status);
        return -1;
    }
    return 1;
}

int param_index(PyObject* name) {
    for (int i = 0; i < kParams; ++i)
        if (name == g_param_names[i]) return i;  // keywords in calls are interned
    for (int i = 0; i < kParams; ++i)
        if (PyUnicode_Compare(name, g_param_names[i]) == 0) return i;
    return -1;
}

// args[0] is the writer (the descriptor's self), then add_scalar's own arguments.
PyObject* add_scalar_call(PyObject*, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    NativeWriter* self = nargs >= 1 ? as_native_writer(args[0]) : nullptr;
    if (!self) {
        PyErr_SetString(PyExc_TypeError, "add_scalar() must be called on a fasttb SummaryWriter");
        return nullptr;
    }
    PyObject* slot[kParams] = {nullptr, nullptr, Py_None, Py_None, nullptr, nullptr};
    const Py_ssize_t given = nargs - 1;
    bool plain = given <= kParams;
    for (Py_ssize_t i = 0; plain && i < given; ++i) slot[i] = args[i + 1];
    if (plain && kwnames) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); ++k) {
            const int i = param_index(PyTuple_GET_ITEM(kwnames, k));
            if (i < 0 || i < given) {
                plain = false;  // unknown or repeated: the general path raises TypeError
                break;
            }
            slot[i] = args[nargs + k];
        }
    }
    if (plain && slot[0] && slot[1] && (!slot[4] || slot[4] == Py_False)) {
        const int r = try_push(self, slot[0], slot[1], slot[2], slot[3]);
        if (r < 0) return nullptr;
        if (r > 0) Py_RETURN_NONE;
    }
    return PyObject_VectorcallMethod(g_general_name, args, nargsf, kwnames);
}

PyObject* scalar_method_get(PyObject* self, PyObject* obj, PyObject*) {
    if (!obj || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

void scalar_method_dealloc(PyObject* self) { PyObject_Free(self); }

PyObject* text_signature(PyObject*, void*) {
    return PyUnicode_FromString("($self, tag, scalar_value, global_step=None, walltime=None, "
                                "new_style=False, double_precision=False)");
}
PyObject* method_name(PyObject*, void*) { return PyUnicode_FromString("add_scalar"); }
PyObject* method_qualname(PyObject*, void*) { return PyUnicode_FromString("SummaryWriter.add_scalar"); }

PyGetSetDef g_scalar_method_getset[] = {
    {"__text_signature__", text_signature, nullptr, nullptr, nullptr},
    {"__name__", method_name, nullptr, nullptr, nullptr},
    {"__qualname__", method_qualname, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyObject* native_writer_new(PyTypeObject* type, PyObject*, PyObject*) {
    PyObject* self = type->tp_alloc(type, 0);
    if (self) new (&reinterpret_cast<NativeWriter*>(self)->target) std::shared_ptr<EventWriter>();
    return self;
}

void native_writer_dealloc(PyObject* self) {
    // May queue the file's close (EventWriter's destructor): lock-free, never waits.
    reinterpret_cast<NativeWriter*>(self)->target.~shared_ptr();
    Py_TYPE(self)->tp_free(self);
}

bool intern_names() {
    const char* names[kParams] = {"tag", "scalar_value", "global_step", "walltime", "new_style",
                                  "double_precision"};
    for (int i = 0; i < kParams; ++i)
        if (!(g_param_names[i] = PyUnicode_InternFromString(names[i]))) return false;
    g_general_name = PyUnicode_InternFromString("_add_scalar");
    return g_general_name != nullptr;
}

}  // namespace

bool add_scalar_fast_path(PyObject* module) {
    if (!intern_names()) return false;

    PyTypeObject& base = g_native_writer_type;
    Py_SET_TYPE(&base, &PyType_Type);
    Py_SET_REFCNT(&base, 1);
    base.tp_name = "fasttb._core.NativeWriter";
    base.tp_basicsize = sizeof(NativeWriter);
    base.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
    base.tp_doc = "The native part of fasttb.SummaryWriter: where its plain scalars go.";
    base.tp_new = native_writer_new;
    base.tp_dealloc = native_writer_dealloc;
    if (PyType_Ready(&base) < 0) return false;

    PyTypeObject& method = g_scalar_method_type;
    Py_SET_TYPE(&method, &PyType_Type);
    Py_SET_REFCNT(&method, 1);
    method.tp_name = "fasttb._core.ScalarMethod";
    method.tp_basicsize = sizeof(ScalarMethod);
    method.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_HAVE_VECTORCALL;
    method.tp_vectorcall_offset = offsetof(ScalarMethod, vectorcall);
    method.tp_call = PyVectorcall_Call;
    method.tp_descr_get = scalar_method_get;
    method.tp_dealloc = scalar_method_dealloc;
    method.tp_getset = g_scalar_method_getset;
    method.tp_doc =
        "Log one number (see SummaryWriter._add_scalar, which takes every call this native fast "
        "path does not: conversions, new-style scalars and errors).";
    if (PyType_Ready(&method) < 0) return false;

    ScalarMethod* add_scalar = PyObject_New(ScalarMethod, &method);
    if (!add_scalar) return false;
    add_scalar->vectorcall = add_scalar_call;
    Py_INCREF(&base);
    if (PyModule_AddObject(module, "NativeWriter", reinterpret_cast<PyObject*>(&base)) < 0) {
        Py_DECREF(&base);
        Py_DECREF(add_scalar);
        return false;
    }
    if (PyModule_AddObject(module, "add_scalar", reinterpret_cast<PyObject*>(add_scalar)) < 0) {
        Py_DECREF(add_scalar);
        return false;
    }
    return true;
}

bool set_scalar_target(PyObject* writer, std::shared_ptr<EventWriter> target) {
    if (!PyObject_TypeCheck(writer, &g_native_writer_type)) {
        PyErr_SetString(PyExc_TypeError, "expected a fasttb SummaryWriter");
        return false;
    }
    // Swapped in first, then the old target let go: its destructor runs with the field valid.
    std::shared_ptr<EventWriter> old = std::move(reinterpret_cast<NativeWriter*>(writer)->target);
    reinterpret_cast<NativeWriter*>(writer)->target = std::move(target);
    return true;
}

}  // namespace fasttb
