/*
 * SIGTERM/SIGINT handling with a self-pipe: the handler only sets a flag and
 * writes a byte, so every wait in the worker can poll the pipe and wake at
 * once instead of sleeping through a shutdown request.
 */
#ifndef CREST_SIGNALS_H
#define CREST_SIGNALS_H

#include <stddef.h>

/* Installs the handlers; ignores SIGPIPE (a dead server must not kill us). */
int crest_signals_init(char *err, size_t errlen);
int crest_stop_requested(void);
/* The signal that asked us to stop, or 0. */
int crest_stop_signal(void);
/* Readable once a stop was requested; for poll() sets. */
int crest_wake_fd(void);
/* Waits up to timeout_ms or until a signal arrives. */
void crest_signals_wait(int timeout_ms);

#endif /* CREST_SIGNALS_H */
