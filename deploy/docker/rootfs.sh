#!/usr/bin/env bash
# Builds the sandbox-runner base image from Debian packages, without a
# registry: debootstrap a minimal Debian 13 (trixie) root filesystem, then
# `docker import` it as nodex-runner-base:trixie. Debian 13 is chosen because
# its nodejs is 20.19, and the runner needs node 20 or later for the
# permission model; Debian 12's nodejs is 18.
#
# The tarball is cached under $CACHE (deploy/.cache by default); the image
# is rebuilt from it when only the Docker store was cleared. Needs root.
set -euo pipefail

SUITE=${SUITE:-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
IMAGE=${IMAGE:-nodex-runner-base:$SUITE}
CACHE=${CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache}
PACKAGES=python3,nodejs,bash,coreutils,gawk,bats,ca-certificates
TARBALL=$CACHE/rootfs-$SUITE.tar

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
	echo "rootfs: $IMAGE exists"
	exit 0
fi
mkdir -p "$CACHE"
if [ ! -f "$TARBALL" ]; then
	if ! command -v debootstrap >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
	fi
	root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
	trap 'rm -rf "$root"' EXIT
	debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR"
	# Package caches and logs are no use in the image.
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
		"$root"/var/log/*
	tar -C "$root" --numeric-owner -cf "$TARBALL.tmp" .
	mv "$TARBALL.tmp" "$TARBALL"
fi
docker import "$TARBALL" "$IMAGE"
echo "rootfs: imported $IMAGE"
