#!/usr/bin/env bash
# Fuzzes the response parser and the settings resolver with cargo-fuzz
# (libFuzzer) on stable Rust: no sanitizer, so no nightly toolchain is needed.
# Not part of CI. Each target runs for FUZZ_SECONDS (default 60); the last
# line of each run gives the number of executions.
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   targets to run (default: read_response resolve_settings)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-"read_response resolve_settings"}

log() { printf '[fuzz] %s\n' "$*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
# The engine links libpython through PyO3 (as cargo test does).
PYO3_PYTHON=${PYO3_PYTHON:-$(command -v python3)}
export PYO3_PYTHON
libdir=$("$PYO3_PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

mkdir -p corpus/read_response corpus/resolve_settings
# Seeds: the two real response shapes and a few settings lines.
id=12345678-1234-4234-8234-123456789abc
printf '{"request_id": "%s", "target_node": "compute-node-3", "success": true, "message": "ok", "action_performed": "off"}' "$id" \
  > corpus/read_response/seed-pretty
printf '{"request_id":"%s","status":"success","target_node":"compute-node-3","success":true,"message":"none"}' "$id" > corpus/read_response/seed-compact
printf '{"success": false, "success": true}' > corpus/read_response/seed-duplicate
printf '/r\0/s\0/l\0005\0000.1\0yes\0\001\0003\0000640\00020' > corpus/resolve_settings/seed-options
printf '\0\0\0\0\0\0\0\0\0\0abc\0\0003600\0rel/log\0777\0-1\0x' > corpus/resolve_settings/seed-env

for t in $TARGETS; do
  log "$t: ${SECONDS_PER_TARGET} s"
  out=$(mktemp)
  cargo fuzz run --sanitizer none --release "$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 2>&1 | tee "$out" | grep -E '^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|==|SUMMARY|thread)' || true
  if grep -qE 'panicked|deadly signal|SUMMARY: libFuzzer' "$out"; then
    log "$t: FAILED (see fuzz/artifacts/$t)"; rm -f "$out"; exit 1
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$out" | grep -oE '[0-9]+$' || true)
  log "$t: ${runs:-?} executions in ${SECONDS_PER_TARGET} s, no failure"
  rm -f "$out"
done
