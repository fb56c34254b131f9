#!/usr/bin/env bash
# Model-checks the fence protocol (docs/model/fence.pml, explained in
# docs/MODEL.md) with Spin: generates the verifier (spin -a), compiles it
# (gcc), and runs one exhaustive search per property and variant.
#
# Every row of CHECKS says what the search must find: "holds" (no error in
# the whole state space) or "violated" (a counterexample must exist: the
# documented findings, and the variants that show a property can fail).
# Exit 1 when any row does not come out as expected.
#
#   MODEL_NATT (default 2)  attempts Pacemaker may make per fence operation
#   MODEL_TRAILS=DIR        also write each counterexample, readable, to DIR
#   MODEL_QUIET=1           print the table only, not the counterexamples
#   MODEL_ONLY=VARIANT      run the rows of that variant only
#   MODEL_FILE=PATH         check another copy of the model (the tests use it)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL_FILE:-$PWD/docs/model/fence.pml}
ONLY=${MODEL_ONLY:-}
[ -f "$MODEL" ] || { echo "model-check: no model at $MODEL" >&2; exit 1; }
NATT=${MODEL_NATT:-2}
case $NATT in
  [1-9]) ;;
  *) echo "model-check: invalid MODEL_NATT \"$NATT\": expected 1 to 9" >&2; exit 1 ;;
esac
for tool in spin gcc; do
  command -v "$tool" >/dev/null ||
    { echo "model-check: $tool not found (Debian packages spin and gcc; make setup installs them)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${MODEL_TRAILS:-}" ]; then mkdir -p "$MODEL_TRAILS"; fi

# variant (name:spin defines) | property (ltl name, or "end-states") | expected
CHECKS=(
  "intended||exit0_means_answered|holds"
  "intended||on_leaves_no_request|holds"
  "intended||honest_timeout_record|holds"
  "intended||end-states|holds"
  "intended||refence_only_from_reads_before_on|holds"
  "intended||no_refence_after_on|violated"
  "intended||no_refence_rename|violated"
  "intended||no_refence_inplace_read_before_on|violated"
  "intended||no_refence_inplace_partial_outlives_on|violated"
  "intended||no_refence_after_a_timeout|violated"
  "pre-fix|-DPRE_FIX|on_leaves_no_request|violated"
  "pre-fix|-DPRE_FIX|honest_timeout_record|violated"
  "pre-fix|-DPRE_FIX|exit0_means_answered|holds"
  "pre-fix|-DPRE_FIX|no_refence_after_on|violated"
  "pre-fix|-DPRE_FIX|refence_only_from_reads_before_on|violated"
  "already-off|-DALREADY_OFF|exit0_means_answered|violated"
  "already-off|-DALREADY_OFF|on_leaves_no_request|holds"
  "look-first|-DRECORD_BEFORE_UNLINK|honest_timeout_record|violated"
)

# Builds the verifier of one variant once; "noclaim" builds it without the
# claims, for the end-state search. -O0: compiling dominates, the searches
# take a fraction of a second either way.
build() { # name defines [noclaim]
  local dir=$work/$1 exe=pan flags=()
  if [ "${3:-}" = noclaim ]; then exe=pan-noclaim; flags=(-DNOCLAIM); fi
  [ -x "$dir/$exe" ] && return 0
  if [ ! -f "$dir/pan.c" ]; then
    mkdir -p "$dir"
    cp "$MODEL" "$dir/fence.pml"
    (cd "$dir" && spin -a -DNATT="$NATT" $2 fence.pml >spin.out 2>&1) ||
      { cat "$dir/spin.out" >&2; echo "model-check: spin -a failed for $1" >&2; exit 1; }
  fi
  (cd "$dir" && gcc -O0 -w "${flags[@]}" -o "$exe" pan.c) ||
    { echo "model-check: gcc failed for $1" >&2; exit 1; }
}

# Replays the trail of the last run as numbered lines.
readable_trail() { # dir defines
  (cd "$1" && spin -t -DNATT="$NATT" $2 fence.pml) 2>&1 |
    sed -n 's/^ *MSC: //p' | awk '{ printf "%3d. %s\n", NR, $0 }'
}

failures=0
total_start=$(date +%s.%N)
printf '%-12s %-40s %-9s %-9s %10s %7s\n' variant property expected found states seconds
trails=""
for row in "${CHECKS[@]}"; do
  IFS='|' read -r name defines prop expected <<<"$row"
  if [ -n "$ONLY" ] && [ "$name" != "$ONLY" ]; then continue; fi
  if [ "$prop" = end-states ]; then build "$name" "$defines" noclaim; else build "$name" "$defines"; fi
  dir=$work/$name
  rm -f "$dir/fence.pml.trail"
  if [ "$prop" = end-states ]; then
    (cd "$dir" && ./pan-noclaim -m100000) >"$dir/run.out" 2>&1 || true
  else
    (cd "$dir" && ./pan -a -m100000 -N "$prop") >"$dir/run.out" 2>&1 || true
  fi
  out=$dir/run.out
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | tail -1)
  states=$(awk '/states, stored/ { print $1; exit }' "$out")
  secs=$(sed -n 's/^pan: elapsed time \([0-9.e+-]*\) seconds.*/\1/p' "$out" | tail -1)
  if [ -z "$errors" ]; then
    found="no-result"
  elif grep -q 'max search depth too small' "$out"; then
    found="truncated"
  elif [ "$errors" = 0 ]; then
    found=holds
  else
    found=violated
  fi
  mark=""
  if [ "$found" != "$expected" ]; then
    mark="  <-- UNEXPECTED"
    failures=$((failures + 1))
    [ "$found" = no-result ] && cat "$out" >&2
  fi
  printf '%-12s %-40s %-9s %-9s %10s %7s%s\n' "$name" "$prop" "$expected" "$found" "${states:-?}" "${secs:-?}" "$mark"
  if [ "$found" = violated ]; then
    # The shortest counterexample (-i: iterative shortening), made readable.
    if [ "$prop" = end-states ]; then
      (cd "$dir" && ./pan-noclaim -i -m100000) >/dev/null 2>&1 || true
    else
      (cd "$dir" && ./pan -i -m100000 -N "$prop") >/dev/null 2>&1 || true
    fi
    text=$(readable_trail "$dir" "$defines")
    trails+=$'\n'"== $name: $prop (expected: $expected)"$'\n'"$text"$'\n'
    if [ -n "${MODEL_TRAILS:-}" ]; then
      printf '%s\n' "$text" >"$MODEL_TRAILS/$name-$prop.txt"
    fi
  fi
done
total=$(awk -v s="$total_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
if [ "${MODEL_QUIET:-0}" != 1 ] && [ -n "$trails" ]; then
  printf '\nCounterexamples (shortest found):\n%s' "$trails"
fi
echo
if [ "$failures" -gt 0 ]; then
  echo "model-check: $failures check(s) did not come out as expected (NATT=$NATT, ${total} s)" >&2
  exit 1
fi
echo "model-check: all checks as expected (NATT=$NATT, ${total} s)"
