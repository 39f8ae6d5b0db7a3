// EventWriter; see writer.h.
#include "writer.h"

#include <cerrno>

namespace fasttb {

EventWriter::EventWriter(EventFile* file, std::shared_ptr<FileState> state, bool drop_when_full)
    : engine_(&Engine::instance()),
      generation_(Engine::generation()),
      file_(file),
      state_(std::move(state)),
      drop_when_full_(drop_when_full) {}

std::shared_ptr<EventWriter> EventWriter::open(const std::string& path, double flush_secs,
                                               bool drop_when_full, double wall_time, int* err) {
    std::shared_ptr<FileState> state;
    EventFile* file = EventFile::create(path, flush_secs, &state, err);
    if (!file) return nullptr;
    std::shared_ptr<EventWriter> w(new EventWriter(file, std::move(state), drop_when_full));
    Item* first = w->make_item(ItemKind::file_version, {}, 0);
    if (!first) {
        *err = ENOMEM;
        w->close();
        return nullptr;
    }
    first->wall_time = wall_time;
    first->with_source = true;
    first->accounted = 0;  // the header never waits, so opening never blocks
    w->engine_->push(first, false);
    return w;
}

EventWriter::~EventWriter() {
    // Without close(), the file is closed in the background once its records are written. In
    // a forked child the file belongs to the parent's engine: leave it alone.
    if (!file_ || stale()) return;
    Item* item = Item::make(ItemKind::close, file_, {}, 0);
    if (!item) return;  // out of memory: leak the file rather than lose its records
    item->accounted = 0;
    engine_->push(item, false);
}

void EventWriter::flush() {
    if (!file_ || stale()) return;
    Item* item = Item::make(ItemKind::flush, file_, {}, 0);
    if (item) engine_->push_and_wait(item);
}

void EventWriter::close() {
    if (!file_ || stale()) {
        file_ = nullptr;
        return;
    }
    Item* item = Item::make(ItemKind::close, file_, {}, 0);
    if (!item) return;
    file_ = nullptr;
    engine_->push_and_wait(item);
}

void flush_all_files() {
    Engine* e = Engine::current();
    if (!e) return;
    Item* item = Item::make(ItemKind::flush, nullptr, {}, 0);
    if (item) e->push_and_wait(item);
}

}  // namespace fasttb
