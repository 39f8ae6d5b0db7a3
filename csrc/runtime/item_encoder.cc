// Item to record; see item_encoder.h.
#include "runtime/item_encoder.h"

#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "encoders/gif.h"
#include "encoders/histogram.h"
#include "encoders/kind_params.h"
#include "encoders/plugin_events.h"
#include "encoders/png.h"
#include "encoders/side_files.h"
#include "format/event.h"
#include "format/record.h"

namespace fasttb {

int append_record(const Item& item, std::string& out, std::string& png) {
    const size_t start = begin_record(out);
    const std::string_view payload(item.payload(), item.payload_len);
    switch (item.kind) {
        case ItemKind::scalar:
            encode_scalar_event(out, item.wall_time, item.step, item.tag(), item.value, item.scalar_kind);
            break;
        case ItemKind::event:
            out.append(payload.data(), payload.size());
            break;
        case ItemKind::summary:
            encode_summary_event(out, item.wall_time, item.step, payload);
            break;
        case ItemKind::file_version:
            encode_file_version_event(out, item.wall_time, item.step, item.with_source);
            break;
        case ItemKind::session_start:
            encode_session_start_event(out, item.wall_time, item.step);
            break;
        case ItemKind::histogram: {
            const Histogram h = tensorflow_histogram(item.payload(), item.count, item.dtype, item.max_bins,
                                                     item.streamed ? &item.filled : nullptr);
            encode_histogram_event(out, item.wall_time, item.step, item.tag(), h);
            break;
        }
        case ItemKind::histogram_raw: {
            Histogram h;
            h.min = item.stats[0];
            h.max = item.stats[1];
            h.num = item.stats[2];
            h.sum = item.stats[3];
            h.sum_squares = item.stats[4];
            // The payload starts 16-byte aligned in its block (Item::make).
            const double* v = reinterpret_cast<const double*>(item.payload());
            h.bucket_limit.assign(v, v + item.count);
            h.bucket.assign(v + item.count, v + 2 * item.count);
            encode_histogram_event(out, item.wall_time, item.step, item.tag(), h);
            break;
        }
        case ItemKind::image: {
            const uint8_t* pixels = reinterpret_cast<const uint8_t*>(item.payload());
            const bool encoded =
                item.planes ? encode_png_planes(pixels, item.planes, item.height, item.width, &png)
                            : encode_png(pixels, item.height, item.width, item.channels, &png);
            // Shapes were checked on the caller's thread: only memory can be missing here.
            if (!encoded) return ENOMEM;
            encode_image_event(out, item.wall_time, item.step, item.tag(), item.shown_height,
                               item.shown_width, item.channels, png);
            if (png.capacity() > (size_t(8) << 20)) std::string().swap(png);
            break;
        }
        case ItemKind::text:
            encode_text_event(out, item.wall_time, item.step, item.tag(), payload);
            break;
        case ItemKind::pr_curve: {
            const auto params = read_params<PrCurveParams>(item.payload());
            encode_pr_curve_event(out, item.wall_time, item.step, item.tag(), params,
                                  item.payload() + params_end(sizeof params));
            break;
        }
        case ItemKind::audio: {
            const auto params = read_params<AudioParams>(item.payload());
            encode_audio_event(out, item.wall_time, item.step, item.tag(), params,
                               item.payload() + params_end(sizeof params));
            break;
        }
        case ItemKind::video: {
            const auto p = read_params<VideoParams>(item.payload());
            const auto* frames = reinterpret_cast<const uint8_t*>(item.payload() + params_end(sizeof p));
            if (!encode_gif(frames, p.frames, p.height, p.width, p.channels, p.fps, &png)) return ENOMEM;
            encode_image_event(out, item.wall_time, item.step, item.tag(), p.height, p.width, p.channels, png);
            if (png.capacity() > (size_t(8) << 20)) std::string().swap(png);
            break;
        }
        case ItemKind::side_bytes:
        case ItemKind::side_tsv:
        case ItemKind::side_sprite:
        case ItemKind::open:
        case ItemKind::flush:
        case ItemKind::close:
        case ItemKind::rotate:
        case ItemKind::fail:
        case ItemKind::hold:
            return EINVAL;  // no record: the worker handles these itself
    }
    if (out.size() - start - kRecordHeader > kMaxRecordPayload) return EFBIG;
    end_record(out, start);
    return 0;
}

const char* encoding_failure(int err) {
    switch (err) {
        case ENOMEM: return "cannot encode a record";
        case EFBIG: return "a record is larger than the 2 GiB any reader accepts";
        default: return "internal error while encoding a record";
    }
}

}  // namespace fasttb

namespace fasttb {

bool is_side_file(ItemKind kind) {
    return kind == ItemKind::side_bytes || kind == ItemKind::side_tsv || kind == ItemKind::side_sprite;
}

int write_side_file(const Item& item, std::string& scratch) {
    const std::string path(item.tag());
    const char* payload = item.payload();
    switch (item.kind) {
        case ItemKind::side_tsv: {
            const auto params = read_params<TsvParams>(payload);
            scratch.clear();
            append_tsv(scratch, params, payload + params_end(sizeof params));
            const int err = write_file(path, scratch.data(), scratch.size());
            if (scratch.capacity() > (size_t(8) << 20)) std::string().swap(scratch);
            return err;
        }
        case ItemKind::side_sprite: {
            const auto params = read_params<SpriteParams>(payload);
            std::vector<uint8_t> pixels;
            sprite_pixels(params, payload + params_end(sizeof params), &pixels);
            const uint32_t side = params.columns * params.width;
            if (!encode_png(pixels.data(), side, side, 3, &scratch)) return ENOMEM;
            const int err = write_file(path, scratch.data(), scratch.size());
            if (scratch.capacity() > (size_t(8) << 20)) std::string().swap(scratch);
            return err;
        }
        default:
            return write_file(path, payload, item.payload_len);
    }
}

}  // namespace fasttb
