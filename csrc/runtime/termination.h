// Keeps what was logged when the process is told to terminate. SIGTERM is how schedulers and
// Kubernetes stop a job; its default action ends the process at once, and records still queued
// would be lost. If SIGTERM has its default action when the engine starts, fasttb installs a
// handler that hands the signal to a watcher thread and returns: the watcher asks the worker to
// write everything queued (waiting at most 5 seconds), then restores the default action and
// raises the signal again, so the process still ends by SIGTERM. Meanwhile the program goes on,
// so that the worker never waits for the very thread the signal stopped. A handler the program
// installs itself, before or after, takes precedence.
#pragma once

namespace fasttb {

void install_termination_handler();
// A SIGTERM was handed to the watcher, which will end the process (async-signal-safe).
bool termination_pending();

}  // namespace fasttb
