// What a producer-side call reports instead of raising. The core is Python-free: it describes a
// failure here, and the bindings raise the exception the stock writer would raise for it.
#pragma once

#include <string>
#include <utility>

namespace fasttb {

enum class Failure : unsigned char {
    none,
    value,        // ValueError: bad input (a shape, a size, a setting)
    type,         // TypeError: an input of the wrong kind
    os,           // OSError(err, message, path): the file failed, or the worker could not start
    closed,       // OSError("Writer is closed"): the writer closed while this call waited
    interrupted,  // a signal handler raised (Ctrl-C) while this call waited; the error is set
    no_memory,    // MemoryError on the caller's thread
};

struct Status {
    Failure failure = Failure::none;
    int err = 0;           // errno, for Failure::os
    std::string message;
    std::string path;      // the file, for Failure::os and Failure::closed

    bool ok() const { return failure == Failure::none; }

    static Status value_error(std::string message) { return {Failure::value, 0, std::move(message), {}}; }
    static Status type_error(std::string message) { return {Failure::type, 0, std::move(message), {}}; }
    static Status os_error(int err, std::string message, std::string path = {}) {
        return {Failure::os, err, std::move(message), std::move(path)};
    }
    static Status closed(std::string path) { return {Failure::closed, 0, "Writer is closed", std::move(path)}; }
    static Status interrupted() { return {Failure::interrupted, 0, {}, {}}; }
    static Status no_memory() { return {Failure::no_memory, 0, {}, {}}; }
};

}  // namespace fasttb
