// Numbers as Python's str() writes them, for text side files that must match the stock writer's
// byte for byte (tensors.tsv holds str(element.item()) of every element).
#pragma once

#include <cstddef>
#include <string>

#include "encoders/dtype.h"

namespace fasttb {

// Appends repr(x) of a Python float: the shortest digits that read back as x, in positional
// notation when the decimal point falls within 16 digits (with ".0" on whole numbers), otherwise
// as d.ddde+XX; "inf", "-inf", "nan".
void append_python_float(std::string& out, double x);

// Appends str() of element i of an array of `t` once numpy's .item() has made it a Python
// number: floats as above (float16 and float32 by their exact double value), integers in
// decimal, booleans as True and False.
void append_python_element(std::string& out, const void* base, size_t i, DType t);

}  // namespace fasttb
