/*
 * Who is calling: decided once per request by ngx_http_crest_auth_module
 * (JWT or API key) and read from here by every other Crest module, never
 * from the token again.
 */
#ifndef _NGX_CREST_AUTH_H_INCLUDED_
#define _NGX_CREST_AUTH_H_INCLUDED_

#include "ngx_crest.h"


typedef struct {
    ngx_str_t     user_id;      /* a UUID */
    ngx_str_t     role;         /* "user" or "admin" */
    ngx_str_t     plan;         /* "free", "pro", ... */
    json_t       *claims;       /* the JWT's claims; NULL for an API key */
    unsigned      api_key:1;
} ngx_crest_identity_t;


/* The caller, or NULL on a location without crest_auth. */
ngx_crest_identity_t *ngx_crest_auth_identity(ngx_http_request_t *r);

/*
 * Signs an access token for a user with the configured key and lifetime.
 * The token is allocated from r->pool.
 */
ngx_int_t ngx_crest_auth_issue(ngx_http_request_t *r, ngx_str_t *user_id,
    ngx_str_t *role, ngx_str_t *plan, ngx_str_t *token, time_t *expires_in);

/* The refresh token lifetime, in seconds (crest_auth_refresh_ttl). */
time_t ngx_crest_auth_refresh_ttl(ngx_http_request_t *r);

/*
 * Adds Set-Cookie for the browser dashboard when crest_auth_cookie is set:
 * the access token, or an expired cookie when token is NULL.
 */
ngx_int_t ngx_crest_auth_set_cookie(ngx_http_request_t *r, ngx_str_t *token,
    time_t max_age);

/* Forgets cached API keys of a user in this worker (after a change). */
void ngx_crest_auth_forget_user(ngx_str_t *user_id);

#endif /* _NGX_CREST_AUTH_H_INCLUDED_ */
