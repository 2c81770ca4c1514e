#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "signals.h"


/* read by every thread of the job runtime: a lock-free atomic, which a
 * signal handler may also write */
static atomic_int             crest_stop_sig;
static int                    crest_wake[2] = { -1, -1 };


static void
crest_signals_handler(int sig)
{
    int   saved_errno;
    char  c;

    saved_errno = errno;

    atomic_store(&crest_stop_sig, sig);
    c = 's';

    /* a full pipe already wakes the loop, so a failed write is fine */
    if (write(crest_wake[1], &c, 1) < 0) {
        /* void */
    }

    errno = saved_errno;
}


int
crest_signals_init(char *err, size_t errlen)
{
    struct sigaction  sa;

    if (pipe2(crest_wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe2: %s", strerror(errno));
        return -1;
    }

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);

    /* no SA_RESTART: a blocking read should see EINTR and look at the flag */
    sa.sa_handler = crest_signals_handler;

    if (sigaction(SIGTERM, &sa, NULL) != 0
        || sigaction(SIGINT, &sa, NULL) != 0)
    {
        snprintf(err, errlen, "sigaction: %s", strerror(errno));
        return -1;
    }

    sa.sa_handler = SIG_IGN;

    if (sigaction(SIGPIPE, &sa, NULL) != 0) {
        snprintf(err, errlen, "sigaction: %s", strerror(errno));
        return -1;
    }

    return 0;
}


int
crest_stop_requested(void)
{
    return atomic_load(&crest_stop_sig) != 0;
}


int
crest_stop_signal(void)
{
    return atomic_load(&crest_stop_sig);
}


int
crest_wake_fd(void)
{
    return crest_wake[0];
}


void
crest_signals_wait(int timeout_ms)
{
    struct pollfd  pfd;
    char           drain[64];

    if (crest_stop_requested()) {
        return;
    }

    pfd.fd = crest_wake[0];
    pfd.events = POLLIN;
    pfd.revents = 0;

    if (poll(&pfd, 1, timeout_ms) > 0) {
        while (read(crest_wake[0], drain, sizeof(drain)) > 0) {
            /* void */
        }
    }
}
