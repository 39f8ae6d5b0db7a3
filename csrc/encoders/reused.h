// Arrays kept from one image to the next by the thread that encodes them (PNG, deflate).
#pragma once

#include <cstddef>
#include <memory>
#include <new>

namespace fasttb {

// An array kept from one image to the next by the thread that encodes them: allocated anew for
// each image, the encoder's buffers had the kernel map and clear their pages every time, about a
// tenth of the time of a 256x256 image. Arrays over kKeptBytes are let go after each image.
constexpr size_t kKeptBytes = size_t(8) << 20;

template <typename T>
class Reused {
   public:
    // At least `count` elements, contents unspecified; null when memory runs out.
    T* get(size_t count) {
        if (count > capacity_) {
            data_.reset();
            data_.reset(new (std::nothrow) T[count]);
            capacity_ = data_ ? count : 0;
        }
        return data_.get();
    }
    void trim() {
        if (capacity_ > kKeptBytes / sizeof(T)) {
            data_.reset();
            capacity_ = 0;
        }
    }

   private:
    std::unique_ptr<T[]> data_;
    size_t capacity_ = 0;
};

}  // namespace fasttb
