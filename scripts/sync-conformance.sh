#!/usr/bin/env bash
# Copies the workplace's conformance corpora (the shared folder beside the checkout, present only in
# the development workplace) into conformance/. The repository's copy is what builds and tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
workplace=../shared   # the development workplace's shared folder
src=${1:-$workplace/conformance}
if [ ! -d "$src" ]; then
  echo "no $src: nothing to copy (conformance/ stays as committed)"
  exit 0
fi
for suite in "$src"/*/; do
  name=$(basename "$suite")
  mkdir -p "conformance/$name"
  cp -r "$suite"/. "conformance/$name/"
  echo "conformance/$name: $(find "conformance/$name/cases" -name '*.json' 2>/dev/null | wc -l) cases"
done
