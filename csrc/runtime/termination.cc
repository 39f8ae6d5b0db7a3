// The SIGTERM drain; see termination.h. The handler uses only async-signal-safe calls: atomic
// loads and stores on lock-free atomics, clock_gettime, nanosleep, sigaction and raise.
#include "runtime/termination.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <ctime>

#include "runtime/engine.h"

namespace fasttb {
namespace {

// Long enough for the worker to write a full queue of images; short next to the grace period of
// schedulers (Kubernetes, Slurm: 30 s) before they send SIGKILL.
constexpr long kTerminationWaitMs = 5000;

double monotonic_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

void on_terminate(int sig) {
    const int saved_errno = errno;
    if (Engine* engine = Engine::current()) {
        const uint64_t ticket = engine->request_drain();
        const double deadline = monotonic_ms() + kTerminationWaitMs;
        const timespec pause{0, 1000000};  // 1 ms
        while (engine->drained() < ticket && monotonic_ms() < deadline) nanosleep(&pause, nullptr);
    }
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, nullptr);
    raise(sig);  // blocked while this handler runs: delivered, with the default action, on return
    errno = saved_errno;
}

}  // namespace

void install_termination_handler() {
    static_assert(std::atomic<uint64_t>::is_always_lock_free, "the handler needs lock-free atomics");
    struct sigaction current {};
    if (sigaction(SIGTERM, nullptr, &current) != 0) return;
    if ((current.sa_flags & SA_SIGINFO) || current.sa_handler != SIG_DFL) return;
    struct sigaction ours {};
    ours.sa_handler = on_terminate;
    sigemptyset(&ours.sa_mask);
    ours.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &ours, nullptr);
}

}  // namespace fasttb
