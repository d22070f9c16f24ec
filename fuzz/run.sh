#!/usr/bin/env bash
# Runs every fuzz target (or those named) one after the other, each for SECONDS_PER_TARGET
# seconds with one libFuzzer worker, and appends what each run did to fuzz/logs/summary.tsv.
# Works on the stable toolchain: cargo-fuzz without a sanitizer (`-s none`; pgweir forbids
# unsafe code) passes rustc no -Z flag.
#
#   fuzz/run.sh                           # every target, 600 s each
#   SECONDS_PER_TARGET=60 fuzz/run.sh sql admin
#   UPDATE_CORPUS=1 fuzz/run.sh           # then minimise into the checked-in corpus
#   fuzz/run.sh --check                   # only replay the checked-in corpora (no fuzzing)
#   fuzz/run.sh --minimize                # only merge fuzz/work into fuzz/corpus (no fuzzing)
#
# Environment:
#   SECONDS_PER_TARGET  fuzzing time per target (default 600)
#   UPDATE_CORPUS       1: merge what the run found into fuzz/corpus/<target>, minimised
#                       (libFuzzer -merge=1 -use_counters=0: the smallest inputs that keep
#                       every edge covered; the hit-count variety stays in fuzz/work)
#   JOBS                cargo build jobs (default 1)
#   NICE                niceness of builds and runs (default 10)
#   FUZZ_ARGS           extra libFuzzer flags, e.g. "-max_len=8192"
#
# Layout: fuzz/corpus/<target> is the checked-in, minimised corpus; fuzz/work/<target> is
# the working corpus a run grows (not checked in); crashes, hangs and out-of-memory inputs
# land in fuzz/artifacts/<target>/ (see fuzz/README.md to reproduce one); each run's
# libFuzzer output is in fuzz/logs/<target>-<time>.log.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-600}
UPDATE_CORPUS=${UPDATE_CORPUS:-0}
JOBS=${JOBS:-1}
NICE=${NICE:-10}
FUZZ_ARGS=${FUZZ_ARGS:-}
CHECK=0
case "${1:-}" in
--check)
    CHECK=1
    shift
    ;;
--minimize)
    CHECK=2
    UPDATE_CORPUS=1
    shift
    ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    nice -n "$NICE" cargo install cargo-fuzz --locked -j "$JOBS"
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${targets[*]} (cargo fuzz build -s none, $JOBS job(s))"
CARGO_BUILD_JOBS=$JOBS nice -n "$NICE" cargo fuzz build -s none
bin_dir=target/x86_64-unknown-linux-gnu/release

# The hba and pgbouncer_ini targets write their input to files: keep those on tmpfs.
scratch_base=/dev/shm
[ -d "$scratch_base" ] && [ -w "$scratch_base" ] || scratch_base=${TMPDIR:-/tmp}
scratch=$(mktemp -d "$scratch_base/pgweir-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export PGWEIR_FUZZ_SCRATCH=$scratch

mkdir -p logs work artifacts
summary=logs/summary.tsv
[ -f "$summary" ] || printf 'date\ttarget\tseconds\texecs\texecs_per_s\tcov\tft\tcorpus_units\tcorpus_bytes\tnew_artifacts\texit\n' >"$summary"

failed=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "corpus/$t" "artifacts/$t"
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    log="logs/$t-$stamp.log"
    before=$(find "artifacts/$t" -type f | wc -l)
    secs=0
    case "$CHECK" in
    1)
        echo "== $t: replaying corpus/$t"
        set +e
        # shellcheck disable=SC2086
        nice -n "$NICE" "$bin_dir/$t" -runs=0 -rss_limit_mb=2048 -timeout=10 \
            -artifact_prefix="artifacts/$t/" $FUZZ_ARGS "corpus/$t" >"$log" 2>&1
        status=$?
        set -e
        ;;
    0)
        echo "== $t: fuzzing for ${SECONDS_PER_TARGET}s (log: fuzz/$log)"
        start=$(date +%s)
        set +e
        # New inputs go to work/<t>; corpus/<t> is only read. One worker, no fork mode.
        # shellcheck disable=SC2086
        nice -n "$NICE" "$bin_dir/$t" -max_total_time="$SECONDS_PER_TARGET" \
            -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
            -artifact_prefix="artifacts/$t/" $FUZZ_ARGS "work/$t" "corpus/$t" >"$log" 2>&1
        status=$?
        set -e
        secs=$(($(date +%s) - start))
        ;;
    esac
    if [ "$CHECK" != 2 ]; then
        after=$(find "artifacts/$t" -type f | wc -l)
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
        # The last status line: "#N  DONE  cov: C ft: F corp: U/S ..." (or INITED / pulse).
        last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
        cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
        ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
        units=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
        size=$(sed -n 's/.* corp: [0-9]*\/\([0-9]*[A-Za-z]*\).*/\1/p' <<<"$last")
        [ -z "$execs" ] && execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
        new=$((after - before))
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$stamp" "$t" "$secs" \
            "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${units:-?}" "${size:-?}" "$new" \
            "$status" >>"$summary"
        tail -1 "$summary"
        if [ "$status" -ne 0 ] || [ "$new" -gt 0 ]; then
            failed=1
            echo "!! $t: exit $status, $new new artifact(s) in fuzz/artifacts/$t:" >&2
            grep -E 'ERROR: libFuzzer|panicked at|^SUMMARY|Test unit written' "$log" >&2 || true
        fi
    fi
    if [ "$UPDATE_CORPUS" = 1 ] && [ "$CHECK" != 1 ]; then
        merged=$(mktemp -d "work/.merge-$t.XXXXXX")
        if nice -n "$NICE" "$bin_dir/$t" -merge=1 -use_counters=0 -rss_limit_mb=2048 \
            -timeout=10 "$merged" "corpus/$t" "work/$t" >"logs/$t-$stamp-merge.log" 2>&1; then
            rm -rf "corpus/$t"
            mv "$merged" "corpus/$t"
            echo "   corpus/$t: $(find "corpus/$t" -type f | wc -l) inputs," \
                "$(du -sb "corpus/$t" | cut -f1) bytes"
        else
            rm -rf "$merged"
            echo "!! $t: merge failed (fuzz/logs/$t-$stamp-merge.log); corpus/$t left as it was" >&2
            failed=1
        fi
    fi
done
exit "$failed"
