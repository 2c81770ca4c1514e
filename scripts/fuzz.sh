#!/usr/bin/env bash
# Builds every fuzz/fuzz_*.c as a libFuzzer binary under build/fuzz/ and runs
# each for FUZZ_SECONDS (default 60).  Each target keeps a growing corpus in
# build/fuzz/corpus-<name>, seeded from the committed fuzz/corpus/<name>/.
# Exits non-zero if any target fails to build or finds a crash; crashing
# inputs are kept in build/fuzz/artifacts-<name>/.
#
#   FUZZ_SECONDS=20 scripts/fuzz.sh            all targets, 20 s each
#   scripts/fuzz.sh fuzz_url                   one target
set -euo pipefail

cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
CLANG=${CLANG:-clang}
OUT=build/fuzz

if ! [[ $FUZZ_SECONDS =~ ^[0-9]+$ ]] || (( FUZZ_SECONDS < 1 )); then
    echo "fuzz.sh: FUZZ_SECONDS must be a positive number of seconds" >&2
    exit 2
fi

command -v "$CLANG" >/dev/null || {
    echo "fuzz.sh: $CLANG not found (apt-get install clang libclang-rt-dev)" >&2
    exit 2
}

if (( $# )); then
    targets=("$@")
else
    targets=()
    for src in fuzz/fuzz_*.c; do
        targets+=("$(basename "$src" .c)")
    done
fi

mkdir -p "$OUT"
failed=()

for name in "${targets[@]}"; do
    src=fuzz/$name.c
    bin=$OUT/$name
    corpus=$OUT/corpus-$name
    artifacts=$OUT/artifacts-$name/

    if [[ ! -f $src ]]; then
        echo "fuzz.sh: no $src" >&2
        failed+=("$name")
        continue
    fi

    echo "== $name: building"
    if ! "$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined \
            -fno-sanitize-recover=all -fno-omit-frame-pointer \
            -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Ishared \
            -o "$bin" "$src" shared/*.c -ljansson -lcrypto -lm; then
        failed+=("$name")
        continue
    fi

    mkdir -p "$corpus" "$artifacts"
    if [[ -d fuzz/corpus/$name ]]; then
        cp -n fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
    fi

    opts=(-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix="$artifacts")
    if [[ -f fuzz/$name.dict ]]; then
        opts+=(-dict="fuzz/$name.dict")
    fi

    echo "== $name: fuzzing for ${FUZZ_SECONDS}s"
    if ! "$bin" "${opts[@]}" "$corpus" >"$OUT/$name.log" 2>&1; then
        tail -40 "$OUT/$name.log" >&2
        echo "== $name: FAILED (full log: $OUT/$name.log, inputs: $artifacts)" >&2
        failed+=("$name")
        continue
    fi

    grep -E '^stat::number_of_executed_units|^Done ' "$OUT/$name.log" || true
    echo "== $name: ok ($(find "$corpus" -type f | wc -l) corpus files)"
done

if (( ${#failed[@]} )); then
    echo "fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi

echo "fuzz.sh: all ${#targets[@]} targets ran clean"
