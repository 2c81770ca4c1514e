#!/usr/bin/env bash
# Apply sql/NNNN_*.sql migrations in lexical order.
#
#   DATABASE_URL=postgresql://crest:pw@127.0.0.1:55432/crest scripts/migrate.sh
#
# Each file runs in its own transaction together with its bookkeeping row in
# schema_migrations (version, name, checksum, applied_at).  Applied versions
# are skipped; an applied file whose sha256 changed is an error, because the
# database no longer matches the source.  Concurrent runs (several test
# files, two developers' `make run`) are serialised by a transaction-scoped
# advisory lock taken before the "already applied?" check, so the check and
# the apply are atomic with respect to each other.
#
# Environment:
#   DATABASE_URL   libpq URI or conninfo (required)
#   CREST_SQL_DIR  directory holding the migrations (default: <repo>/sql)
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SQL_DIR=${CREST_SQL_DIR:-$TOP/sql}

if [[ -z ${DATABASE_URL:-} ]]; then
    echo "migrate.sh: DATABASE_URL is not set (e.g. postgresql://crest:pw@127.0.0.1:55432/crest)" >&2
    exit 2
fi
if [[ ! -d $SQL_DIR ]]; then
    echo "migrate.sh: no migrations directory $SQL_DIR" >&2
    exit 2
fi
SQL_DIR=$(cd "$SQL_DIR" && pwd)

# Arbitrary constant identifying "crest schema migrations" among advisory locks.
LOCK_KEY=727300001

# Marker lines the generated script prints, distinguishable from anything a
# migration itself might print.
MARK='@@crest-migrate@@'

shopt -s nullglob
files=("$SQL_DIR"/[0-9][0-9][0-9][0-9]_*.sql)
shopt -u nullglob
if ((${#files[@]} == 0)); then
    echo "migrate.sh: no migrations in $SQL_DIR" >&2
    exit 2
fi

# Two files with one version number would make "applied?" ambiguous.
declare -A seen=()
for f in "${files[@]}"; do
    b=$(basename "$f")
    v=${b:0:4}
    if [[ -n ${seen[$v]:-} ]]; then
        echo "migrate.sh: duplicate migration version $v: ${seen[$v]} and $b" >&2
        exit 2
    fi
    seen[$v]=$b
done

applied=0 skipped=0
script=$(mktemp /tmp/crest-migrate.XXXXXX)
trap 'rm -f "$script"' EXIT

for f in "${files[@]}"; do
    name=$(basename "$f")
    version=${name:0:4}
    checksum=$(sha256sum "$f" | cut -d' ' -f1)

    # One psql session and one transaction (--single-transaction) per file:
    # lock, create the bookkeeping table, check, apply, record.  psql
    # variables (:'x') do the quoting of the values.
    cat >"$script" <<EOF
SELECT true AS crest_locked FROM pg_advisory_xact_lock($LOCK_KEY) \gset
SET LOCAL client_min_messages = warning;   -- no "already exists, skipping"
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
RESET client_min_messages;
SELECT count(*) > 0 AS crest_applied,
       coalesce(bool_or(checksum <> :'crest_checksum'), false) AS crest_changed,
       coalesce(max(checksum), '') AS crest_old_checksum
  FROM schema_migrations WHERE version = :'crest_version' \gset
\if :crest_changed
SELECT format('migrate.sh: %s was applied with sha256 %s but the file now has %s',
              :'crest_name', :'crest_old_checksum', :'crest_checksum') AS crest_msg \gset
\warn :crest_msg
\warn 'migrate.sh: applied migrations must not be edited; add a new migration instead'
DO \$\$ BEGIN RAISE EXCEPTION 'schema_migrations: checksum mismatch'; END \$\$;
\elif :crest_applied
\echo '$MARK skipped'
\else
\i :crest_file
INSERT INTO schema_migrations (version, name, checksum)
     VALUES (:'crest_version', :'crest_name', :'crest_checksum');
\echo '$MARK applied'
\endif
EOF
    if ! out=$(psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 --single-transaction \
                    -v crest_version="$version" -v crest_name="$name" \
                    -v crest_checksum="$checksum" -v crest_file="$f" \
                    -f "$script"); then
        if [[ -n $out ]]; then printf '%s\n' "$out" | grep -v -F "$MARK" || true; fi
        echo "migrate.sh: FAILED at $name" >&2
        exit 1
    fi
    # Pass through whatever the migration itself printed.
    printf '%s\n' "$out" | grep -v -F "$MARK" | grep -v '^$' || true
    case $out in
    *"$MARK applied"*)
        echo "applied $name"
        applied=$((applied + 1)) ;;
    *"$MARK skipped"*)
        skipped=$((skipped + 1)) ;;
    *)
        echo "migrate.sh: unexpected result for $name" >&2
        exit 1 ;;
    esac
done

echo "migrations: $applied applied, $skipped already applied, $((applied + skipped)) total"
