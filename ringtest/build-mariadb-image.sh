#!/usr/bin/env bash
# build-mariadb-image.sh: build the local MariaDB image that ringtest's Docker
# backend runs, without any container registry.
#
#   ringtest/build-mariadb-image.sh [IMAGE]
#
# This is the only copy: package ringtest embeds it (go:embed) and runs
# it with bash when an image in the local namespace is absent, so it works
# from the module cache and with -trimpath. scripts/build-mariadb-image.sh
# is a wrapper that runs this file.
#
# IMAGE defaults to $DBROUTER_RING_IMAGE, then dbrouter-ringtest/mariadb:local.
# If `docker image inspect IMAGE` succeeds, nothing is done (the image is the
# cache). Otherwise:
#   1. the Debian mirror and suite are read from this machine's apt sources
#      (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and the deb822
#      *.sources files) -- never hard-coded;
#   2. debootstrap (installed with apt-get when missing) builds a minbase
#      rootfs with mariadb-server from that mirror;
#   3. the rootfs is trimmed and imported with `docker import` as IMAGE.
# Set DBROUTER_APT_MIRROR / DBROUTER_APT_SUITE to override step 1.
#
# On failure the script exits non-zero and prints the failing step's name and
# the tail of its output (the full log stays in $LOG). Concurrent runs are
# serialised with flock, so parallel test binaries build the image once.
set -euo pipefail

IMAGE=${1:-${DBROUTER_RING_IMAGE:-dbrouter-ringtest/mariadb:local}}
LOCK=${TMPDIR:-/tmp}/dbrouter-ringtest-image.lock
LOG=${TMPDIR:-/tmp}/dbrouter-ringtest-image-build-$(printf %s "$IMAGE" | tr -c 'A-Za-z0-9.-' _).log

die() { echo "build-mariadb-image: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "the docker command is not installed"
docker version >/dev/null 2>&1 || die "no Docker engine answers (docker version failed: $(docker version 2>&1 | tail -1))"

exec 9>"$LOCK"
flock 9
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
	echo "build-mariadb-image: $IMAGE is present; nothing to build"
	exit 0
fi

# step NAME CMD...: run a build step, logging to $LOG; on failure print the
# step and the tail of its output.
step() {
	local name=$1; shift
	echo "build-mariadb-image: $name" >&2
	echo "=== $name: $*" >>"$LOG"
	if ! "$@" >>"$LOG" 2>&1; then
		echo "build-mariadb-image: step failed: $name" >&2
		echo "--- last 40 lines of its output (full log: $LOG) ---" >&2
		tail -n 40 "$LOG" >&2
		exit 1
	fi
}

# apt_source prints "MIRROR SUITE" for the first Debian main archive entry of
# the apt sources (skipping security, updates and backports suites).
apt_source() {
	local f
	# One-line format: deb [options] URI SUITE COMPONENTS...
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk '$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i+1) ~ /[-\/]/) next
			print $i, $(i+1); exit
		}' "$f"
	done
	# deb822 format: stanzas of Types/URIs/Suites fields.
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk '
		function flush() {
			if (types ~ /(^| )deb( |$)/ && uri != "" && suite != "" && enabled != "no") { print uri, suite; found = 1 }
			types = uri = suite = ""; enabled = "yes"
		}
		BEGIN { enabled = "yes" }
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); if (found) exit; next }
		tolower($1) == "types:"   { types = $0; sub(/^[^:]*:[ \t]*/, "", types) }
		tolower($1) == "uris:"    { uri = $2 }
		tolower($1) == "enabled:" { enabled = tolower($2) }
		tolower($1) == "suites:"  { for (i = 2; i <= NF; i++) if ($i !~ /[-\/]/) { suite = $i; break } }
		END { if (!found) flush() }
		' "$f"
	done
}

if [ -n "${DBROUTER_APT_MIRROR:-}" ]; then
	MIRROR=$DBROUTER_APT_MIRROR
	SUITE=${DBROUTER_APT_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-}")}
else
	read -r MIRROR SUITE < <(apt_source | head -n 1) || true
	SUITE=${DBROUTER_APT_SUITE:-${SUITE:-}}
fi
[ -n "${MIRROR:-}" ] && [ -n "${SUITE:-}" ] ||
	die "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d; set DBROUTER_APT_MIRROR and DBROUTER_APT_SUITE"

: >"$LOG"
t0=$(date +%s)
echo "build-mariadb-image: building $IMAGE from $MIRROR $SUITE (log: $LOG)" >&2

if ! command -v debootstrap >/dev/null 2>&1; then
	[ "$(id -u)" = 0 ] || die "debootstrap is missing; install it as root: apt-get install -y debootstrap"
	export DEBIAN_FRONTEND=noninteractive
	step "apt-get update" apt-get update -qq
	step "apt-get install debootstrap" apt-get install -y -qq debootstrap
fi
[ "$(id -u)" = 0 ] || die "debootstrap needs root"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dbrouter-rootfs-XXXXXX")
# A failed debootstrap can leave /proc or /sys mounted in the rootfs:
# unmount whatever is under it before removing it, and never cross into
# another file system while removing.
cleanup() {
	awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
ROOTFS=$WORK/rootfs

keyring=()
for k in /usr/share/keyrings/debian-archive-keyring.gpg; do
	[ -r "$k" ] && keyring=(--keyring="$k")
done
step "debootstrap $SUITE from $MIRROR" \
	debootstrap --variant=minbase --include=mariadb-server "${keyring[@]}" "$SUITE" "$ROOTFS" "$MIRROR"
t1=$(date +%s)

# The harness initialises each node's datadir itself; drop the one made by
# the package's postinst, the downloaded .debs and the apt lists. mariadbd
# needs /run/mysqld owned by mysql (the container command creates it too,
# since /run may be a fresh tmpfs).
trim() {
	rm -rf "$ROOTFS"/var/lib/mysql/* "$ROOTFS"/var/cache/apt/archives/*.deb \
		"$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* \
		"$ROOTFS"/usr/share/locale/*
	mkdir -p "$ROOTFS"/run/mysqld
	chroot "$ROOTFS" chown mysql:mysql /run/mysqld /var/lib/mysql
	chroot "$ROOTFS" /usr/sbin/mariadbd --version
}
step "trim rootfs" trim

step "docker import as $IMAGE" sh -c "tar -C '$ROOTFS' -c . | docker import \
	-c 'CMD [\"/usr/sbin/mariadbd\", \"--user=mysql\"]' \
	-c 'EXPOSE 3306' \
	-m 'dbrouter ringtest: debootstrap $SUITE $MIRROR + mariadb-server' - '$IMAGE'"
t2=$(date +%s)

echo "build-mariadb-image: built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}')) in $((t2 - t0)) s (debootstrap $((t1 - t0)) s, import $((t2 - t1)) s)" >&2
