#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The README's first command: installs what is missing, builds, and runs the
# end-to-end demo on a temporary data dir (it stops everything it starts).
set -eu
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
if [ ! -f build/build.ninja ]; then
	meson setup build -Dtests=false >/dev/null
fi
ninja -C build >/dev/null
exec build/collector/threadline demo "$@"
