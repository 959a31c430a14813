#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs every Debian 12 package that building, running and testing Threadline needs.
# Idempotent: packages already present are left alone; runs apt-get only when something is missing.
set -eu

PKGS="build-essential pkg-config meson ninja-build cmake clang clang-format
libuv1-dev libnng-dev libprotobuf-c-dev protobuf-c-compiler liblmdb-dev lmdb-utils
libcriterion-dev libhttp-parser-dev libjansson-dev zlib1g-dev libcurl4-openssl-dev
libsodium-dev libyaml-dev ca-certificates curl"

# Node.js runs the interop tests (real OpenTelemetry JS SDK clients); any node >= 18 will do.
if ! command -v node >/dev/null 2>&1; then
	PKGS="$PKGS nodejs"
fi
if ! command -v npm >/dev/null 2>&1; then
	PKGS="$PKGS npm"
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -n "$missing" ]; then
	if [ "$(id -u)" -eq 0 ]; then
		SUDO=""
	elif command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "install-deps: missing packages:$missing; run as root or install sudo" >&2
		exit 1
	fi
	echo "install-deps: installing:$missing" >&2
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	# shellcheck disable=SC2086
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
