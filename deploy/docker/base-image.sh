#!/usr/bin/env bash
# Make the local base image debian:bookworm-slim when no registry can be pulled from: debootstrap
# (minbase: the same Debian the official image is built from) piped into `docker import`. No-op
# when the image is already in docker's store (pulled or made here before). Needs root.
#
# Usage: deploy/docker/base-image.sh [IMAGE]   (default debian:bookworm-slim)
set -euo pipefail
image="${1:-debian:bookworm-slim}"
suite=bookworm
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
# A pull is the normal way; only where it fails is the image made from Debian's packages.
if timeout 60 docker pull -q "$image" >/dev/null 2>&1; then
  exit 0
fi
command -v debootstrap >/dev/null || { echo "base-image: need debootstrap (apt-get install debootstrap)" >&2; exit 1; }
root="$(mktemp -d /tmp/evi-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "base-image: making $image with debootstrap (~1 min)" >&2
start=$SECONDS
debootstrap --variant=minbase "$suite" "$root/fs" >"$root/debootstrap.log" 2>&1 \
  || { tail -20 "$root/debootstrap.log" >&2; exit 1; }
# As slim as the official image: no apt lists, no docs or man pages, no logs.
rm -rf "$root"/fs/var/lib/apt/lists/* "$root"/fs/var/cache/apt/*.bin "$root"/fs/var/log/*.log \
  "$root"/fs/usr/share/doc/* "$root"/fs/usr/share/man/* "$root"/fs/usr/share/info/*
# debootstrap leaves the host's resolver; the container gets its own from the engine.
: >"$root/fs/etc/resolv.conf"
tar -C "$root/fs" --numeric-owner -c . \
  | docker import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$image" >/dev/null
echo "base-image: $image made in $((SECONDS - start)) s" >&2
