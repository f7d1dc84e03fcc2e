#!/usr/bin/env bash
# Runs weir's tests with node's built-in runner, one file at a time (lab tests share the kernel).
# Tests named *.privileged.test.* need root; WEIR_SKIP_PRIVILEGED=1 skips them, and says so loudly.
set -uo pipefail
cd "$(dirname "$0")/.."
files=("$@")
if [ "${WEIR_SKIP_PRIVILEGED:-}" = 1 ] || [ "$(id -u)" != 0 ]; then
  if [ "$(id -u)" != 0 ] && [ "${WEIR_SKIP_PRIVILEGED:-}" != 1 ]; then
    echo "weir: the privileged tests need root (run 'sudo make test', or WEIR_SKIP_PRIVILEGED=1 to skip them)" >&2
    exit 1
  fi
  echo "!!! WEIR_SKIP_PRIVILEGED=1: skipping every privileged (BPF, lab) test !!!" >&2
  mapfile -t files < <(printf '%s\n' "${files[@]}" | grep -v '\.privileged\.test\.')
fi
# Leftovers of a crashed earlier run would make lab tests fail for the wrong reason, so every weir
# lab and namespace is swept before and after. WEIR_TEST_SWEEP=0 skips that (e.g. while you keep
# another lab running on the same machine); the tests still remove their own labs.
sweep() { [ "${WEIR_TEST_SWEEP:-1}" = 0 ] || bin/weir lab down --all >/dev/null 2>&1 || true; }
sweep
start=$(date +%s)
node --test --test-concurrency=1 --test-timeout=600000 "${files[@]}"
rc=$?
sweep
echo "weir: tests took $(($(date +%s) - start)) s"
exit $rc
