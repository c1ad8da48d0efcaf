#!/usr/bin/env bash
# Builds drover's container image without a registry: a Debian 12 root file
# system from the Debian mirror (debootstrap), drover built and installed in
# it as deploy/Dockerfile does, the build tools removed, and the tree
# imported with `docker import` or `podman import`, whichever runs.
#
#   sudo deploy/image.sh [TAG]         (default drover:latest)
#
# Needs root (debootstrap, chroot) and debootstrap. MIRROR overrides the
# mirror (default: the one in /etc/apt/sources.list*, else
# http://deb.debian.org/debian). KEEP=1 keeps the work directory. Without a
# container engine that runs, it stops after making the tree and says where
# the tarball is.
set -euo pipefail

tag=${1:-drover:latest}
here=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "image.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and chroot)"
command -v debootstrap >/dev/null ||
  die "needs debootstrap (apt-get install debootstrap)"

mirror=${MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^(deb |URIs:) *https?://[^ ]+/debian/?' \
             /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
             /etc/apt/sources.list.d/*.sources 2>/dev/null |
           head -n1 | grep -oE 'https?://[^ ]+' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

engine=""
for e in docker podman; do
  if command -v "$e" >/dev/null && "$e" info >/dev/null 2>&1; then
    engine=$e
    break
  fi
done

work=$(mktemp -d /tmp/drover-image.XXXXXX)
root=$work/root
cleanup() {
  for m in proc sys dev; do umount -l "$root/$m" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then
    echo "image.sh: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# The runtime packages of deploy/Dockerfile's last stage, and what building
# needs on top (removed again before the import).
runtime="libzmq5,libczmq4,libmsgpackc2,libjansson4,libsqlite3-0,libcurl4,libpq5,libmicrohttpd12,libncursesw6,ca-certificates,python3-minimal"
build=(build-essential cmake pkg-config libzmq3-dev libczmq-dev libmsgpack-dev
       libjansson-dev libsqlite3-dev libcurl4-openssl-dev libpq-dev
       libmicrohttpd-dev libncurses-dev libcmocka-dev)

echo "image.sh: debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase --include="$runtime" bookworm "$root" "$mirror"

mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
              DEBIAN_FRONTEND=noninteractive "$@"; }

in_root apt-get install -y --no-install-recommends "${build[@]}"
mkdir -p "$root/src"
# The sources as git has them (no build directories), or the tree as is.
if git -C "$here" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$here" ls-files -z | (cd "$here" && xargs -0 tar -cf - --) |
    tar -xf - -C "$root/src"
else
  tar -C "$here" --exclude='./build*' -cf - . | tar -xf - -C "$root/src"
fi
# shellcheck disable=SC2016  # $(nproc) expands in the chroot
in_root sh -c 'cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release \
                 -DCMAKE_INSTALL_PREFIX=/usr/local &&
               cmake --build /build -j"$(nproc)" --target drover libdrover drover_docs &&
               cmake --install /build && ldconfig'
in_root apt-mark manual ${runtime//,/ } >/dev/null
in_root apt-get purge -y "${build[@]}"
# What the build packages pulled in (gcc, the -dev headers), also when only
# a Recommends of something kept holds it.
in_root apt-get -o APT::AutoRemove::RecommendsImportant=false \
  -o APT::AutoRemove::SuggestsImportant=false autoremove --purge -y
in_root apt-get clean
rm -rf "$root/src" "$root/build" "$root/var/lib/apt/lists/"*
in_root groupadd --system --gid 10001 drover
in_root useradd --system --uid 10001 --gid drover --home-dir /var/lib/drover \
  --create-home --shell /usr/sbin/nologin drover
in_root install -d -o drover -g drover -m 0700 /run/drover
in_root drover version

for m in proc sys dev; do umount -l "$root/$m"; done
tarball=$work/drover-rootfs.tar
tar -C "$root" --numeric-owner -cf "$tarball" .

# The same settings as deploy/Dockerfile's last stage (HEALTHCHECK is a
# Docker-format setting that import cannot set: compose and Kubernetes set
# their own probes).
changes=(
  --change 'USER 10001:10001'
  --change 'WORKDIR /var/lib/drover'
  --change 'EXPOSE 7700' --change 'EXPOSE 7701' --change 'EXPOSE 7702'
  --change 'EXPOSE 7703' --change 'EXPOSE 7780'
  --change 'ENV DROVER_HEALTH_SELF=broker'
  --change 'ENV DROVER_HEALTH_FILE=/run/drover/health'
  --change 'ENTRYPOINT ["drover"]'
  --change 'CMD ["--help"]'
)
if [ -z "$engine" ]; then
  KEEP=1
  die "no container engine runs here (docker info and podman info fail): \
the root file system is $tarball; import it where one runs with
  docker import ${changes[*]} $tarball $tag"
fi
"$engine" import "${changes[@]}" "$tarball" "$tag"
echo "image.sh: $tag imported with $engine" >&2
