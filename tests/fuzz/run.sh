#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS — runs every fuzz target of BUILD_DIR/fuzz for SECONDS each, seeded from
# tests/fuzz/corpus/<target> (never written to: new inputs go to BUILD_DIR/corpus/<target>). Crashes land
# in BUILD_DIR/artifacts/<target>/; prints exec/s and coverage per target; exits 1 if any target failed.
set -u
build=$1 seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
failed=""
for exe in "$build"/fuzz/fuzz_*; do
  t=$(basename "$exe"); t=${t#fuzz_}
  mkdir -p "$build/corpus/$t" "$build/artifacts/$t"
  dict=()
  case $t in safetensors|index|config|tekken|chat_input) dict=(-dict="$here/json.dict") ;; esac
  log="$build/fuzz_$t.log"
  "$exe" "$build/corpus/$t" "$here/corpus/$t" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$build/artifacts/$t/" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
  printf '%-12s %6s exec/s  %-22s %s\n' "$t" "${execs:-?}" "${cov:-?}" "$([ $rc = 0 ] && echo ok || echo "FAILED (rc $rc, $log)")"
  [ $rc = 0 ] || failed="$failed $t"
done
[ -z "$failed" ] || { echo "fuzz: failures in:$failed"; exit 1; }
