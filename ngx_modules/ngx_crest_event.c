/*
 * Sockets owned by client libraries (libpq, hiredis) inside nginx's event
 * loop.  The library opens and closes the descriptor; nginx only watches it.
 * Events are level-triggered: neither library promises to read until EAGAIN,
 * which edge-triggered epoll would need.
 */

#include <time.h>

#include "ngx_crest.h"


ngx_connection_t *
ngx_crest_wrap_socket(ngx_socket_t fd, ngx_log_t *log,
    ngx_event_handler_pt read, ngx_event_handler_pt write, void *data)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(fd, log);
    if (c == NULL) {
        return NULL;
    }

    c->data = data;
    c->log = log;
    c->read->log = log;
    c->write->log = log;
    c->read->handler = read;
    c->write->handler = write;

    /* an idle pool connection must not hold a graceful shutdown open */
    c->idle = 1;

    return c;
}


ngx_int_t
ngx_crest_watch(ngx_event_t *ev, ngx_uint_t on)
{
    ngx_int_t  event;

    event = ev->write ? NGX_WRITE_EVENT : NGX_READ_EVENT;

    if (on && !ev->active) {
        return ngx_add_event(ev, event, NGX_LEVEL_EVENT);
    }

    if (!on && ev->active) {
        return ngx_del_event(ev, event, 0);
    }

    return NGX_OK;
}


/*
 * Forgets the socket without closing it: the library closes it right after,
 * and closing removes it from epoll, so no system call is spent on that.
 */
void
ngx_crest_unwrap_socket(ngx_connection_t *c)
{
    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->closed = 1;
    c->write->closed = 1;

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;
}


/* Latency figures want better than ngx_current_msec's cached milliseconds. */
double
ngx_crest_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1e6;
}
