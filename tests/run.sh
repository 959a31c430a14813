#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The README's second command: installs what is missing, builds, and runs
# every suite: unit, integration, interop (real OpenTelemetry JS SDKs), fuzz
# corpus replay; then unit and integration again under AddressSanitizer and
# UndefinedBehaviorSanitizer. Ends with one line "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
./deploy/install-deps.sh || exit 1

echo "== npm ci (tests/interop)"
(cd tests/interop && npm ci --no-audit --no-fund --loglevel=error) || exit 1

status=0
run_suites() { # builddir, meson setup options..., then -- suites
	dir=$1
	shift
	opts=""
	while [ "$1" != "--" ]; do
		opts="$opts $1"
		shift
	done
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		# shellcheck disable=SC2086
		meson setup "$dir" $opts >/dev/null || return 1
	fi
	ninja -C "$dir" || return 1
	suites=""
	for s in "$@"; do
		suites="$suites --suite $s"
	done
	# shellcheck disable=SC2086
	meson test -C "$dir" $suites --print-errorlogs --num-processes 2 || status=1
}

echo "== build and test (debugoptimized)"
run_suites build-test -- unit integration interop fuzz || status=1
echo "== build and test (address,undefined sanitizers)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	run_suites build-san -Db_sanitize=address,undefined -Db_lundef=false -- unit integration fuzz || status=1

python3 "$root/tests/summarize.py" build-test/meson-logs/testlog.json build-san/meson-logs/testlog.json || status=1
exit $status
