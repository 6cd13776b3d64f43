#!/bin/sh
# Runs each test binary given on the command line from the repository root
# and prints one summary line; exit status is non-zero if any test failed.
pass=0; fail=0; failed=""
for t in "$@"; do
    if "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); failed="$failed $(basename "$t")"; fi
done
echo "test binaries: $pass passed, $fail failed${failed:+ ($failed )}"
[ "$fail" -eq 0 ]
