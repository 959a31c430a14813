#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Fails, naming the files, if any C source or header differs from what
# clang-format (with the repo's .clang-format) would write.
set -u
cd "$(dirname "$0")/.."
if git rev-parse --git-dir >/dev/null 2>&1; then
	files=$(git ls-files '*.c' '*.h')
else
	files=$(find agent collector common proto tests -name '*.[ch]' -not -path '*/node_modules/*')
fi
bad=0
for f in $files; do
	if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
		echo "not clang-formatted: $f (run: clang-format -i $f)"
		bad=1
	fi
done
[ $bad -eq 0 ] && echo "all $(echo "$files" | wc -w) C files are clang-formatted"
exit $bad
