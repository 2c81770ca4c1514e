/*
 * Rate limits for keys a module finds itself (the email in a login body),
 * rather than an nginx variable known before the body is read.
 */
#ifndef _NGX_CREST_LIMIT_H_INCLUDED_
#define _NGX_CREST_LIMIT_H_INCLUDED_

#include "ngx_crest.h"


/* At configuration time: the crest_limit_zone called name (defined
 * before or after). */
ngx_shm_zone_t *ngx_crest_limit_zone(ngx_conf_t *cf, ngx_str_t *name);

/*
 * Counts one request for key in the zone, from the zone's state in this
 * nginx (shared memory; for policy=sync also what Redis last said).
 * NGX_OK: it passes.  NGX_DECLINED: it is over the limit, and the 429 has
 * been sent: *rc is what the content handler returns.
 */
ngx_int_t ngx_crest_limit_key(ngx_http_request_t *r, ngx_shm_zone_t *zone,
    ngx_str_t *key, ngx_int_t *rc);

#endif /* _NGX_CREST_LIMIT_H_INCLUDED_ */
