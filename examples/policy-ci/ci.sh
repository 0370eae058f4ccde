#!/usr/bin/env bash
# Policy CI for this folder: lint the policy, run its tests, and fail when
# the change widens access compared with the previous git revision.
#
#   examples/policy-ci/ci.sh              # sqlsandbox on PATH
#   SQLSANDBOX="cargo run -q --" examples/policy-ci/ci.sh
#
# JUNIT=path writes the test report there (default: junit.xml in this folder).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck disable=SC2206 # SQLSANDBOX may be a command with arguments
sqlsandbox=(${SQLSANDBOX:-sqlsandbox})
policy="$here/policy.yaml"

echo "== sqlsandbox check"
"${sqlsandbox[@]}" check --policy "$policy"

echo "== sqlsandbox test"
"${sqlsandbox[@]}" test --junit "${JUNIT:-$here/junit.xml}" "$here/tests"

echo "== sqlsandbox diff against the previous revision"
path="$(git -C "$here" ls-files --full-name -- policy.yaml 2>/dev/null || true)"
if [ -z "$path" ]; then
  echo "skipped: policy.yaml is not tracked by git"
elif ! git -C "$here" rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null; then
  echo "skipped: no previous revision"
elif ! git -C "$here" cat-file -e "HEAD~1:$path" 2>/dev/null; then
  echo "skipped: policy.yaml did not exist in the previous revision"
else
  old="$(mktemp)"
  trap 'rm -f "$old"' EXIT
  git -C "$here" show "HEAD~1:$path" >"$old"
  # Exit 1 when some principal could read more than before.
  "${sqlsandbox[@]}" diff "$old" "$policy" --fail-on widen
fi
echo "== policy CI passed"
