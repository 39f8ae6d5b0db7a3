// NativeWriter and the native method descriptors (add_scalar, add_text); see fastcall.h.
#include "bindings/fastcall.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>

#include "bindings/python_interop.h"
#include "encoders/dtype.h"
#include "runtime/engine.h"
#include "runtime/item.h"
#include "runtime/producer.h"
#include "runtime/status.h"

namespace fasttb {
namespace {

struct NativeWriter {
    PyObject_HEAD
    std::shared_ptr<EventWriter> target;  // read and written with the GIL held
};

constexpr int kMaxParams = 6;

// One native method: its parameters, the Python method that takes every call it does not
// handle, and the push of a call whose arguments are all plain.
struct MethodSpec {
    const char* name;
    const char* qualname;
    const char* signature;
    const char* general;  // SummaryWriter's method for conversions and errors
    const char* params[kMaxParams];
    int nparams;
    // 1: queued; 0: not plain, so not handled; -1: a Python error is set. `slot` holds the
    // arguments by parameter (nullptr where not given). Called with the GIL held.
    int (*push)(NativeWriter* self, PyObject* const* slot);
    PyObject* interned[kMaxParams];  // params, interned once
    PyObject* general_name;
};

struct FastMethod {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    MethodSpec* spec;  // static storage
};

PyTypeObject g_native_writer_type;
PyTypeObject g_fast_method_type;

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
        // Beyond int64 the dialects differ (numpy holds such an int as an object, which torch's
        // float() takes and tensorboardX's isnan() refuses): the general path decides.
        return std::fabs(*out) < 0x1p63;
    }
    return false;
}

// The classes the scalar fast path reads besides Python numbers, found once their module is
// loaded (strong references, never released: classes outlive every call).
struct ForeignTypes {
    PyObject* ndarray = nullptr;        // numpy.ndarray
    PyObject* numpy_bool = nullptr;     // numpy.bool_, whose float() is slow: its truth is not
    PyObject* tensor = nullptr;         // torch.Tensor
    PyObject* real_scalars[24] = {};    // numpy scalar classes with a real value (bool included)
    PyObject* other_scalars[24] = {};   // numpy scalar classes without one (complex, str, ...)
    int n_real = 0, n_other = 0;
    // torch.Tensor's own is_cpu and item, looked up once: calling them straight saves two
    // attribute lookups per call on tensors of exactly that class.
    PyObject* is_cpu = nullptr;
    PyObject* item = nullptr;
    PyObject* dtype = nullptr;
    PyObject* is_cpu_name = nullptr;  // interned names, for subclasses
    PyObject* item_name = nullptr;
    PyObject* dtype_name = nullptr;
    PyObject* dtypes[9] = {};  // the dtypes whose item() is what the stock writer logs
    bool torch_failed = false;
};

// The torch dtypes whose item() equals the stock conversion (numpy(), then float()). Not
// bfloat16: the stock writer converts it through float16.
constexpr int kPlainDtypes = 9;
const char* const kPlainDtypeNames[kPlainDtypes] = {"float32", "float64", "float16", "int8", "int16", "int32",
                                                    "int64", "uint8", "bool"};
ForeignTypes g_foreign;

// A class of a module that is already imported (nothing is imported here), or nullptr.
PyObject* loaded_class(const char* module, const char* name) {
    PyObject* key = PyUnicode_FromString(module);
    if (!key) return nullptr;
    PyObject* mod = PyImport_GetModule(key);
    Py_DECREF(key);
    if (!mod) return nullptr;
    PyObject* cls = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    if (!cls || !PyType_Check(cls)) {
        Py_XDECREF(cls);
        return nullptr;
    }
    return cls;
}

// Looks up what the tensor path needs from torch, once. False (for good) if any is missing.
bool torch_ready() {
    ForeignTypes& g = g_foreign;
    if (g.item) return true;
    if (g.torch_failed) return false;
    PyObject* key = PyUnicode_FromString("torch");
    PyObject* torch = key ? PyImport_GetModule(key) : nullptr;
    Py_XDECREF(key);
    bool ok = torch && (g.is_cpu_name = PyUnicode_InternFromString("is_cpu")) &&
              (g.item_name = PyUnicode_InternFromString("item")) &&
              (g.dtype_name = PyUnicode_InternFromString("dtype")) &&
              (g.is_cpu = PyObject_GetAttr(g.tensor, g.is_cpu_name)) &&
              (g.dtype = PyObject_GetAttr(g.tensor, g.dtype_name)) && Py_TYPE(g.is_cpu)->tp_descr_get &&
              Py_TYPE(g.dtype)->tp_descr_get;
    for (int i = 0; ok && i < kPlainDtypes; ++i) ok = (g.dtypes[i] = PyObject_GetAttrString(torch, kPlainDtypeNames[i]));
    if (ok) g.item = PyObject_GetAttr(g.tensor, g.item_name);
    Py_XDECREF(torch);
    if (!g.item) {
        PyErr_Clear();
        g.torch_failed = true;  // kept references are never used; the general path serves
        return false;
    }
    return true;
}

bool in_list(PyObject* const* list, int n, PyObject* type) {
    for (int i = 0; i < n; ++i)
        if (list[i] == type) return true;
    return false;
}

// Whether `type` is a numpy scalar class with a real value (numbers and bool, not complex): the
// answer is kept per class.
bool numpy_real_scalar(PyTypeObject* type) {
    PyObject* t = reinterpret_cast<PyObject*>(type);
    if (in_list(g_foreign.real_scalars, g_foreign.n_real, t)) return true;
    if (in_list(g_foreign.other_scalars, g_foreign.n_other, t)) return false;
    if (std::strncmp(type->tp_name, "numpy.", 6) != 0) return false;
    PyObject* number = loaded_class("numpy", "number");
    PyObject* boolean = loaded_class("numpy", "bool_");
    PyObject* complex = loaded_class("numpy", "complexfloating");
    bool real = false;
    if (number && boolean && complex) {
        real = (PyType_IsSubtype(type, reinterpret_cast<PyTypeObject*>(number)) ||
                PyType_IsSubtype(type, reinterpret_cast<PyTypeObject*>(boolean))) &&
               !PyType_IsSubtype(type, reinterpret_cast<PyTypeObject*>(complex));
    }
    Py_XDECREF(number);
    Py_XDECREF(boolean);
    Py_XDECREF(complex);
    if (PyErr_Occurred()) PyErr_Clear();
    PyObject** list = real ? g_foreign.real_scalars : g_foreign.other_scalars;
    int& n = real ? g_foreign.n_real : g_foreign.n_other;
    if (n < 24) {
        Py_INCREF(t);
        list[n++] = t;
    }
    return real;
}

template <class T>
T load(const char* p) {
    return load_element<T>(p, 0);
}

// One element of a buffer in the native formats numpy gives real numbers.
bool buffer_value(const Py_buffer& view, double* out) {
    const char* f = view.format;
    if (!f || !f[0] || f[1] || view.len != view.itemsize) return false;
    const char* p = static_cast<const char*>(view.buf);
    switch (f[0]) {
        case 'd': *out = load<double>(p); return true;
        case 'f': *out = load<float>(p); return true;
        case 'e': *out = half_to_double(load<uint16_t>(p)); return true;
        case '?': *out = load<uint8_t>(p) ? 1.0 : 0.0; return true;
        case 'b': *out = load<int8_t>(p); return true;
        case 'B': *out = load<uint8_t>(p); return true;
        case 'h': *out = load<int16_t>(p); return true;
        case 'H': *out = load<uint16_t>(p); return true;
        case 'i': *out = load<int32_t>(p); return true;
        case 'I': *out = load<uint32_t>(p); return true;
        case 'l': case 'q':
            if (view.itemsize != 8) return false;
            *out = static_cast<double>(load<int64_t>(p));
            return true;
        case 'L': case 'Q':
            if (view.itemsize != 8) return false;
            *out = static_cast<double>(load<uint64_t>(p));
            return true;
        default: return false;
    }
}

// scalar_value beyond Python numbers, as the stock writer converts it (float(make_np(v))):
// numpy scalars, numpy arrays and CPU torch tensors with one element. False for anything else,
// and for values whose conversion fails: the general path converts those, or raises.
bool as_foreign_value(PyObject* o, double* out) {
    PyTypeObject* type = Py_TYPE(o);
    if (PyFloat_Check(o)) {  // float subclasses: numpy.float64
        *out = PyFloat_AS_DOUBLE(o);
        return true;
    }
    if (!g_foreign.ndarray) g_foreign.ndarray = loaded_class("numpy", "ndarray");
    if (g_foreign.ndarray && reinterpret_cast<PyObject*>(type) == g_foreign.ndarray) {
        Py_buffer view;
        if (PyObject_GetBuffer(o, &view, PyBUF_FORMAT | PyBUF_ND) != 0) {
            PyErr_Clear();
            return false;
        }
        const bool ok = buffer_value(view, out);
        PyBuffer_Release(&view);
        return ok;
    }
    if (!g_foreign.numpy_bool && g_foreign.ndarray) g_foreign.numpy_bool = loaded_class("numpy", "bool_");
    if (g_foreign.numpy_bool && reinterpret_cast<PyObject*>(type) == g_foreign.numpy_bool) {
        const int truth = PyObject_IsTrue(o);
        if (truth < 0) {
            PyErr_Clear();
            return false;
        }
        *out = truth ? 1.0 : 0.0;
        return true;
    }
    if (numpy_real_scalar(type)) {
        PyObject* f = PyNumber_Float(o);
        if (!f) {
            PyErr_Clear();
            return false;
        }
        *out = PyFloat_AS_DOUBLE(f);
        Py_DECREF(f);
        return true;
    }
    if (!g_foreign.tensor) g_foreign.tensor = loaded_class("torch", "Tensor");
    if (g_foreign.tensor && PyObject_TypeCheck(o, reinterpret_cast<PyTypeObject*>(g_foreign.tensor))) {
        if (!torch_ready()) return false;
        // Only CPU tensors of the plain dtypes: item() of a tensor on a device waits for it.
        // Tensors of exactly torch.Tensor use its descriptors straight; subclasses (nn.Parameter)
        // are asked by name, as they may override them.
        const bool exact = reinterpret_cast<PyObject*>(type) == g_foreign.tensor;
        PyObject* dtype = exact ? Py_TYPE(g_foreign.dtype)->tp_descr_get(g_foreign.dtype, o, g_foreign.tensor)
                                : PyObject_GetAttr(o, g_foreign.dtype_name);
        const bool plain = dtype && in_list(g_foreign.dtypes, kPlainDtypes, dtype);
        Py_XDECREF(dtype);
        if (!plain) {
            PyErr_Clear();
            return false;
        }
        PyObject* cpu = exact ? Py_TYPE(g_foreign.is_cpu)->tp_descr_get(g_foreign.is_cpu, o, g_foreign.tensor)
                              : PyObject_GetAttr(o, g_foreign.is_cpu_name);
        const bool on_cpu = cpu == Py_True;
        Py_XDECREF(cpu);
        if (!on_cpu) {
            PyErr_Clear();
            return false;
        }
        PyObject* item = exact ? PyObject_Vectorcall(g_foreign.item, &o, 1, nullptr)
                               : PyObject_CallMethodObjArgs(o, g_foreign.item_name, nullptr);
        if (!item) {
            PyErr_Clear();  // not one element, say: the general path says what is wrong
            return false;
        }
        bool ok = false;
        if (PyFloat_CheckExact(item)) {
            *out = PyFloat_AS_DOUBLE(item);
            ok = true;
        } else if (item == Py_True || item == Py_False) {
            *out = item == Py_True ? 1.0 : 0.0;
            ok = true;
        } else if (PyLong_CheckExact(item)) {
            *out = PyLong_AsDouble(item);
            ok = !(*out == -1.0 && PyErr_Occurred());
            if (!ok) PyErr_Clear();
        }
        Py_DECREF(item);
        return ok;
    }
    return false;
}

// global_step: absent or None is step 0.
bool as_step(PyObject* o, int64_t* out) {
    if (!o || o == Py_None) {
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

// walltime: absent or None is now.
bool as_wall_time(PyObject* o, double* out) {
    if (!o || o == Py_None) {
        *out = wall_clock_now();
        return true;
    }
    return as_double(o, out);
}

// An exact str as UTF-8. False for anything else, and for text without a UTF-8 form (lone
// surrogates): the general path raises a clear error for those.
bool as_utf8(PyObject* o, std::string_view* out) {
    if (!o || !PyUnicode_CheckExact(o)) return false;
    Py_ssize_t len;
    const char* s = PyUnicode_AsUTF8AndSize(o, &len);
    if (!s) {
        PyErr_Clear();
        return false;
    }
    *out = {s, static_cast<size_t>(len)};
    return true;
}

int reported(const Status& status) {
    if (status.ok()) return 1;
    set_python_error(status);
    return -1;
}

// The writer's scalar target if a record can be queued to it now, else nullptr (the general path
// then reopens, or raises). Read after the arguments are converted and nothing more: reading a
// tensor's value lets the GIL go (torch's item()) or runs Python (a subclass), and another thread
// may close the writer meanwhile, and free it. From here to the push the GIL is held throughout.
EventWriter* ready_target(NativeWriter* self) {
    EventWriter* w = self->target.get();
    return w && w->ready() ? w : nullptr;
}

// add_scalar(tag, scalar_value, global_step=None, walltime=None, new_style=False,
//            double_precision=False); new-style scalars take the general path.
int push_scalar(NativeWriter* self, PyObject* const* slot) {
    std::string_view tag;
    double value, wall_time;
    int64_t step;
    if (!slot[1] || (slot[4] && slot[4] != Py_False)) return 0;
    if (!as_utf8(slot[0], &tag) || tag.size() > UINT32_MAX ||
        !(as_double(slot[1], &value) || as_foreign_value(slot[1], &value)) ||
        !as_step(slot[2], &step) || !as_wall_time(slot[3], &wall_time))
        return 0;
    EventWriter* w = ready_target(self);
    if (!w) return 0;
    Item* item = w->make_item(ItemKind::scalar, tag, 0);
    if (!item) {
        PyErr_NoMemory();
        return -1;
    }
    item->value = value;
    item->step = step;
    item->wall_time = wall_time;
    if (w->try_push(item)) return 1;
    // The queue is full: wait without the GIL. push_waiting pins the writer, so a close() or a
    // new target meanwhile cannot free it under this thread.
    PythonLock lock;
    return reported(w->push_waiting(item, lock));
}

// add_text(tag, text_string, global_step=None, walltime=None)
int push_text(NativeWriter* self, PyObject* const* slot) {
    std::string_view tag, text;
    double wall_time;
    int64_t step;
    if (!as_utf8(slot[0], &tag) || !as_utf8(slot[1], &text) || !as_step(slot[2], &step) ||
        !as_wall_time(slot[3], &wall_time))
        return 0;
    EventWriter* w = ready_target(self);
    if (!w) return 0;
    // push_bytes pins the writer before it lets the GIL go (a long copy, a wait for room); the
    // text's buffer belongs to the str, which the caller holds for the whole call.
    PythonLock lock;
    return reported(push_bytes(*w, ItemKind::text, tag, text, step, wall_time, lock));
}

MethodSpec g_add_scalar{
    "add_scalar",
    "SummaryWriter.add_scalar",
    "($self, tag, scalar_value, global_step=None, walltime=None, new_style=False, double_precision=False)",
    "_add_scalar",
    {"tag", "scalar_value", "global_step", "walltime", "new_style", "double_precision"},
    6,
    push_scalar,
    {},
    nullptr,
};

MethodSpec g_add_text{
    "add_text",
    "SummaryWriter.add_text",
    "($self, tag, text_string, global_step=None, walltime=None)",
    "_add_text",
    {"tag", "text_string", "global_step", "walltime"},
    4,
    push_text,
    {},
    nullptr,
};

MethodSpec* const g_specs[] = {&g_add_scalar, &g_add_text};

int param_index(const MethodSpec& spec, PyObject* name) {
    for (int i = 0; i < spec.nparams; ++i)
        if (name == spec.interned[i]) return i;  // keywords in calls are interned
    for (int i = 0; i < spec.nparams; ++i)
        if (PyUnicode_Compare(name, spec.interned[i]) == 0) return i;
    return -1;
}

// args[0] is the writer (the descriptor's self), then the method's own arguments.
PyObject* fast_method_call(PyObject* callable, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
    const MethodSpec& spec = *reinterpret_cast<FastMethod*>(callable)->spec;
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    NativeWriter* self = nargs >= 1 ? as_native_writer(args[0]) : nullptr;
    if (!self) {
        PyErr_Format(PyExc_TypeError, "%s() must be called on a fasttb SummaryWriter", spec.name);
        return nullptr;
    }
    const Py_ssize_t given = nargs - 1;
    if (ready_target(self) && given <= spec.nparams) {  // checked again after the conversions
        PyObject* slot[kMaxParams] = {};
        bool plain = true;
        for (Py_ssize_t i = 0; i < given; ++i) slot[i] = args[i + 1];
        if (kwnames) {
            for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); ++k) {
                const int i = param_index(spec, PyTuple_GET_ITEM(kwnames, k));
                if (i < 0 || i < given) {
                    plain = false;  // unknown or repeated: the general path raises TypeError
                    break;
                }
                slot[i] = args[nargs + k];
            }
        }
        if (plain) {
            const int r = spec.push(self, slot);
            if (r < 0) return nullptr;
            if (r > 0) Py_RETURN_NONE;
        }
    }
    return PyObject_VectorcallMethod(spec.general_name, args, nargsf, kwnames);
}

PyObject* fast_method_get(PyObject* self, PyObject* obj, PyObject*) {
    if (!obj || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

void fast_method_dealloc(PyObject* self) { PyObject_Free(self); }

const MethodSpec& spec_of(PyObject* self) { return *reinterpret_cast<FastMethod*>(self)->spec; }
PyObject* text_signature(PyObject* self, void*) { return PyUnicode_FromString(spec_of(self).signature); }
PyObject* method_name(PyObject* self, void*) { return PyUnicode_FromString(spec_of(self).name); }
PyObject* method_qualname(PyObject* self, void*) { return PyUnicode_FromString(spec_of(self).qualname); }

PyGetSetDef g_fast_method_getset[] = {
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
    for (MethodSpec* spec : g_specs) {
        for (int i = 0; i < spec->nparams; ++i)
            if (!(spec->interned[i] = PyUnicode_InternFromString(spec->params[i]))) return false;
        if (!(spec->general_name = PyUnicode_InternFromString(spec->general))) return false;
    }
    return true;
}

}  // namespace

bool add_fast_paths(PyObject* module) {
    if (!intern_names()) return false;

    PyTypeObject& base = g_native_writer_type;
    Py_SET_TYPE(&base, &PyType_Type);
    Py_SET_REFCNT(&base, 1);
    base.tp_name = "fasttb._core.NativeWriter";
    base.tp_basicsize = sizeof(NativeWriter);
    base.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
    base.tp_doc = "The native part of fasttb.SummaryWriter: where its plain scalars and texts go.";
    base.tp_new = native_writer_new;
    base.tp_dealloc = native_writer_dealloc;
    if (PyType_Ready(&base) < 0) return false;

    PyTypeObject& method = g_fast_method_type;
    Py_SET_TYPE(&method, &PyType_Type);
    Py_SET_REFCNT(&method, 1);
    method.tp_name = "fasttb._core.FastMethod";
    method.tp_basicsize = sizeof(FastMethod);
    method.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_HAVE_VECTORCALL;
    method.tp_vectorcall_offset = offsetof(FastMethod, vectorcall);
    method.tp_call = PyVectorcall_Call;
    method.tp_descr_get = fast_method_get;
    method.tp_dealloc = fast_method_dealloc;
    method.tp_getset = g_fast_method_getset;
    method.tp_doc =
        "A SummaryWriter method in native code: plain arguments are queued here; every other "
        "call (conversions, errors) goes to the writer's Python method of the same name with a "
        "leading underscore.";
    if (PyType_Ready(&method) < 0) return false;

    Py_INCREF(&base);
    if (PyModule_AddObject(module, "NativeWriter", reinterpret_cast<PyObject*>(&base)) < 0) {
        Py_DECREF(&base);
        return false;
    }
    for (MethodSpec* spec : g_specs) {
        FastMethod* m = PyObject_New(FastMethod, &method);
        if (!m) return false;
        m->vectorcall = fast_method_call;
        m->spec = spec;
        if (PyModule_AddObject(module, spec->name, reinterpret_cast<PyObject*>(m)) < 0) {
            Py_DECREF(m);
            return false;
        }
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
