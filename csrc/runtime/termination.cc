// The SIGTERM drain; see termination.h. The handler uses only async-signal-safe calls: atomic
// loads and stores on lock-free atomics, getpid, sem_post, and (without a watcher thread)
// clock_gettime, nanosleep, sigaction and raise.
#include "runtime/termination.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <ctime>
#include <new>
#include <pthread.h>
#include <semaphore.h>
#include <system_error>
#include <thread>
#include <unistd.h>

#include "runtime/engine.h"

namespace fasttb {
namespace {

// Long enough for the worker to write a full queue of images; short next to the grace period of
// schedulers (Kubernetes, Slurm: 30 s) before they send SIGKILL.
constexpr long kTerminationWaitMs = 5000;

// The handler hands the signal to the watcher thread, which does the waiting. Waiting in the
// handler itself held the thread the signal interrupted, and the worker may need that thread:
// the rest of a streamed histogram it was copying, or the malloc lock it held (records were lost
// after a 5 s stall).
sem_t g_signalled;
std::atomic<int> g_signal{0};             // the signal to end the process with, once handed over
std::atomic<pid_t> g_watcher_of{0};        // the process whose watcher waits on g_signalled
std::atomic<bool> g_terminating{false};   // a SIGTERM is being drained: the process ends soon
// Remote runs (fasttb._remote): the process whose upload thread, once it sees termination_pending,
// ends every open remote file's segment and uploads it; how long the watcher waits for that; and
// whether it is done. The watcher waits only in that process: a forked child has no such thread
// until it opens a remote run of its own.
std::atomic<pid_t> g_uploader_of{0};
std::atomic<long> g_upload_wait_ms{0};
std::atomic<bool> g_uploads_done{false};

double monotonic_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

// Has the worker write what is queued, waiting at most kTerminationWaitMs.
void wait_for_drain() {
    if (Engine* engine = Engine::current()) {
        const uint64_t ticket = engine->request_drain();
        const double deadline = monotonic_ms() + kTerminationWaitMs;
        const timespec pause{0, 1000000};  // 1 ms
        while (engine->drained() < ticket && monotonic_ms() < deadline) nanosleep(&pause, nullptr);
    }
}

// Waits (at most g_upload_wait_ms) for the upload thread of remote runs, if this process has one.
// The drain came first, so the segments it ends hold every record logged before the signal.
void wait_for_uploads() {
    if (g_uploader_of.load(std::memory_order_acquire) != getpid()) return;
    const double deadline = monotonic_ms() + double(g_upload_wait_ms.load(std::memory_order_acquire));
    const timespec pause{0, 10000000};  // 10 ms
    while (!g_uploads_done.load(std::memory_order_acquire) && monotonic_ms() < deadline) nanosleep(&pause, nullptr);
}

void restore_default_action(int sig) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, nullptr);
}

// On the watcher: drains, waits for the uploads of remote runs, then ends the process by `sig`
// with its default action.
[[noreturn]] void drain_and_end(int sig) {
    wait_for_drain();
    wait_for_uploads();
    // Threads may still be logging: the worker stops between two records, so that the signal
    // does not end the process in the middle of a write.
    if (Engine* engine = Engine::current()) engine->halt(std::chrono::milliseconds(0));
    restore_default_action(sig);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    pthread_sigmask(SIG_UNBLOCK, &only, nullptr);
    raise(sig);
    for (;;) pause();  // (raise returns only if the signal is blocked or caught)
}

void watch() {
    for (;;) {
        if (sem_wait(&g_signalled) != 0) continue;  // EINTR
        drain_and_end(g_signal.load(std::memory_order_acquire));
    }
}

void on_terminate(int sig) {
    const int saved_errno = errno;
    if (g_watcher_of.load(std::memory_order_acquire) == getpid()) {
        g_signal.store(sig, std::memory_order_release);
        g_terminating.store(true, std::memory_order_release);
        sem_post(&g_signalled);
        errno = saved_errno;
        return;  // the interrupted thread goes on; the watcher ends the process
    }
    // No watcher in this process (it could not be started): wait here, as a last resort.
    wait_for_drain();
    restore_default_action(sig);
    raise(sig);  // blocked while this handler runs: delivered, with the default action, on return
    errno = saved_errno;
}

// Starts this process's watcher thread, with every signal blocked (SIGTERM must interrupt the
// threads that log, never the watcher). After fork() the child starts its own.
void start_watcher() {
    const pid_t me = getpid();
    if (g_watcher_of.load(std::memory_order_acquire) == me) return;
    if (sem_init(&g_signalled, 0, 0) != 0) return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    try {
        std::thread(watch).detach();
        g_watcher_of.store(me, std::memory_order_release);
    } catch (const std::system_error&) {
        // No thread: the handler waits itself.
    } catch (const std::bad_alloc&) {
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

}  // namespace

void install_termination_handler() {
    static_assert(std::atomic<uint64_t>::is_always_lock_free, "the handler needs lock-free atomics");
    static_assert(std::atomic<pid_t>::is_always_lock_free, "the handler needs lock-free atomics");
    struct sigaction current {};
    if (sigaction(SIGTERM, nullptr, &current) != 0) return;
    if (!(current.sa_flags & SA_SIGINFO) && current.sa_handler == on_terminate) {
        start_watcher();  // ours, inherited through fork: this process needs its own watcher
        return;
    }
    if ((current.sa_flags & SA_SIGINFO) || current.sa_handler != SIG_DFL) return;
    start_watcher();
    struct sigaction ours {};
    ours.sa_handler = on_terminate;
    sigemptyset(&ours.sa_mask);
    ours.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &ours, nullptr);
}

bool termination_pending() { return g_terminating.load(std::memory_order_acquire); }

void expect_termination_uploads(long wait_ms) {
    g_upload_wait_ms.store(wait_ms > 0 ? wait_ms : 0, std::memory_order_release);
    g_uploads_done.store(false, std::memory_order_release);
    g_uploader_of.store(wait_ms > 0 ? getpid() : 0, std::memory_order_release);
}

void termination_uploads_done() { g_uploads_done.store(true, std::memory_order_release); }

void termination_forget_in_child() {
    g_terminating.store(false, std::memory_order_release);
    g_uploads_done.store(false, std::memory_order_release);
}

}  // namespace fasttb
