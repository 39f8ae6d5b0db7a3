// See side_files.h.
#include "encoders/side_files.h"

#include <cerrno>
#include <cmath>
#include <fcntl.h>
#include <unistd.h>

#include "encoders/dtype.h"
#include "encoders/float_repr.h"

namespace fasttb {

void append_tsv(std::string& out, const TsvParams& params, const char* matrix) {
    size_t i = 0;
    for (uint64_t r = 0; r < params.rows; ++r) {
        for (uint64_t c = 0; c < params.cols; ++c, ++i) {
            if (c) out += '\t';
            append_python_element(out, matrix, i, params.dtype);
        }
        out += '\n';
    }
}

void sprite_pixels(const SpriteParams& params, const char* images, std::vector<uint8_t>* out) {
    const size_t side = size_t(params.columns) * params.width;
    out->assign(side * side * 3, 0);
    const size_t plane = size_t(params.height) * params.width;
    for (uint64_t n = 0; n < params.count; ++n) {
        const size_t top = size_t(n / params.columns) * params.height;
        const size_t left = size_t(n % params.columns) * params.width;
        for (uint32_t c = 0; c < 3; ++c) {
            const size_t source = size_t(n) * params.channels + (params.channels == 1 ? 0 : c);
            for (uint32_t y = 0; y < params.height; ++y)
                for (uint32_t x = 0; x < params.width; ++x) {
                    const double v = element_as_double(images, source * plane + size_t(y) * params.width + x,
                                                       params.dtype) * 255.0;
                    const double clipped = std::isnan(v) ? 0.0 : std::fmin(std::fmax(v, 0.0), 255.0);
                    (*out)[((top + y) * side + left + x) * 3 + c] = static_cast<uint8_t>(clipped);
                }
        }
    }
}

int write_file(const std::string& path, const char* data, size_t n) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return errno;
    while (n > 0) {
        const ssize_t w = ::write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::close(fd);
            return err;
        }
        data += w;
        n -= static_cast<size_t>(w);
    }
    return ::close(fd) == 0 ? 0 : errno;
}

}  // namespace fasttb
