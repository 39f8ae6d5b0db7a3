// Keeps what was logged when the process is told to terminate. SIGTERM is how schedulers and
// Kubernetes stop a job; its default action ends the process at once, and records still queued
// would be lost. If SIGTERM has its default action when the engine starts, fasttb installs a
// handler that hands the signal to a watcher thread and returns: the watcher asks the worker to
// write everything queued (waiting at most 5 seconds), then restores the default action and
// raises the signal again, so the process still ends by SIGTERM. Meanwhile the program goes on,
// so that the worker never waits for the very thread the signal stopped. A handler the program
// installs itself, before or after, takes precedence. A remote run's files are uploaded before
// the process ends, in a wait of their own (below).
#pragma once

namespace fasttb {

void install_termination_handler();
// A SIGTERM was handed to the watcher, which will end the process (async-signal-safe).
bool termination_pending();

// Remote runs. Their files are uploaded by a Python thread (fasttb._remote), which the watcher
// cannot run: after the drain, it waits up to `wait_ms` for termination_uploads_done(), which that
// thread calls once it has ended and uploaded every open file's segment (or given up). Called
// with 0 when the process has no remote run left, so the watcher does not wait.
void expect_termination_uploads(long wait_ms);
void termination_uploads_done();

// After fork(), in the child: a SIGTERM the parent is draining is not the child's (it would
// drop the child's records and hold its exit for a watcher that is not there).
void termination_forget_in_child();

}  // namespace fasttb
