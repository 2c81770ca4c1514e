#!/bin/sh
# Runs one Crest role from environment: edge (nginx), worker, or migrate.
#   CREST_PG_CONNINFO   libpq conninfo for nginx, e.g. "hostaddr=10.0.0.5 dbname=crest user=crest password=..."
#   CREST_REDIS_ADDR    host:port for nginx (a name is resolved when nginx starts)
#   CREST_JWT_SECRET_FILE        the JWT signing key (a mounted secret)
#   CREST_DOWNLOADS_SECRET_FILE  the key of the signed download links
#   CREST_MEDIA_DIR     where downloads are stored (default /var/lib/crest/media;
#                       a volume shared with the worker, whose CREST_STORAGE_DIR
#                       must name the same directory)
#   DATABASE_URL, REDIS_URL   for the worker and for migrate
set -eu
role=${1:-edge}

case "$role" in
edge)
    : "${CREST_PG_CONNINFO:?set CREST_PG_CONNINFO}" "${CREST_REDIS_ADDR:?set CREST_REDIS_ADDR}"
    : "${CREST_JWT_SECRET_FILE:?set CREST_JWT_SECRET_FILE}"
    : "${CREST_DOWNLOADS_SECRET_FILE:?set CREST_DOWNLOADS_SECRET_FILE}"
    media=${CREST_MEDIA_DIR:-/var/lib/crest/media}
    mkdir -p /var/lib/crest/logs /var/lib/crest/tmp "$media"
    chown -R www-data /var/lib/crest
    # the conninfo may hold a password: escape it for sed, never print it
    conninfo=$(printf '%s' "$CREST_PG_CONNINFO" | sed 's/[&#\\]/\\&/g')
    sed -e "s#@CREST_MODULE@#/usr/lib/nginx/modules/ngx_http_crest_module.so#" \
        -e "s#@CREST_PREFIX@#/var/lib/crest#g" \
        -e "s#@CREST_PORT@#${CREST_PORT:-8080}#" \
        -e "s#@CREST_CONF_DIR@#/etc/crest#" \
        -e "s#@CREST_REDIS_ADDR@#$CREST_REDIS_ADDR#" \
        -e "s#@CREST_PG_CONNINFO@#$conninfo#" \
        -e "s#@CREST_JWT_SECRET_FILE@#$CREST_JWT_SECRET_FILE#" \
        -e "s#@CREST_DOWNLOADS_SECRET_FILE@#$CREST_DOWNLOADS_SECRET_FILE#" \
        -e "s#@CREST_MEDIA_DIR@#$media#" \
        -e "s#listen       127.0.0.1:#listen       #" \
        /etc/crest/nginx.conf.in > /var/lib/crest/nginx.conf
    exec nginx -p /var/lib/crest -c /var/lib/crest/nginx.conf -g 'daemon off; user www-data;'
    ;;
worker)
    exec crest-worker
    ;;
migrate)
    CREST_SQL_DIR=/usr/share/crest/sql exec crest-migrate
    ;;
*)
    echo "usage: crest-entrypoint edge|worker|migrate" >&2
    exit 2
    ;;
esac
