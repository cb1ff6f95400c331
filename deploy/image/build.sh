#!/bin/sh
# Build the ferryman image (operator and migration workers) without Docker, as an OCI archive.
#
# The same image as the Dockerfile (Python 3.11, the project installed with pip, user 65532,
# entrypoint `ferryman`, working directory /tmp), made with Debian's tools: mmdebstrap lays a
# Debian root filesystem with Python and installs the project's wheel into it with pip, umoci packs
# that filesystem as one layer with the image config, skopeo writes the OCI archive.
#
# usage: build.sh [OUT]   (default: .cache/image/ferryman.oci.tar; name localhost/ferryman:<version>)
# The archive names its image in its index (org.opencontainers.image.ref.name), so
#   ctr -n k8s.io images import OUT                                 imports it into containerd, and
#   skopeo copy oci-archive:OUT docker://REGISTRY/ferryman:TAG      pushes it to a registry.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/.cache/image/ferryman.oci.tar}
python=${PYTHON:-$root/.venv/bin/python}
suite=bookworm  # Python 3.11, as the Dockerfile's python:3.11-slim

fail() { echo "image: $*" >&2; exit 1; }
for tool in mmdebstrap umoci skopeo; do
    command -v $tool >/dev/null 2>&1 || fail "$tool is missing: apt-get install -y mmdebstrap umoci skopeo"
done
[ "$(id -u)" = 0 ] || fail "run as root (mmdebstrap installs packages into a chroot)"

version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
work=$(mktemp -d "${TMPDIR:-/tmp}/ferryman-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Wheels of ferryman and its dependencies, fetched here with the host's pip settings and installed in the
# root filesystem from that directory only (this host runs Python 3.11 on the same Debian release).
echo "image: building the ferryman $version wheel and fetching its dependencies"
(cd "$root" && "$python" -m pip wheel --quiet --wheel-dir "$work/wheels" .)

# The host's apt sources (no mirror named here); the Dockerfile's environment for pip and Python.
sources=$(ls /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$sources" ] || fail "no apt sources in /etc/apt to build the Debian root filesystem from"
echo "image: Debian $suite root filesystem with Python and ferryman (mmdebstrap)"
# shellcheck disable=SC2086  # $sources is a list of files
mmdebstrap --quiet --variant=minbase --include=python3,python3-pip,ca-certificates \
    --customize-hook="copy-in $work/wheels /tmp" \
    --customize-hook='chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin python3 -m pip install --quiet \
        --no-index --find-links /tmp/wheels --no-cache-dir --no-warn-script-location --break-system-packages --root-user-action=ignore \
        ferryman' \
    --customize-hook='chroot "$1" apt-get purge -qq --yes --autoremove python3-pip >/dev/null' \
    --customize-hook='chroot "$1" useradd --uid 65532 --user-group --home-dir /tmp --no-create-home ferryman' \
    --customize-hook='rm -rf "$1"/tmp/wheels "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
    --customize-hook='chmod 1777 "$1"/tmp' \
    "$suite" "$work/rootfs.tar" $sources

echo "image: packing the OCI image (umoci)"
layout="$work/oci:$version"
umoci init --layout "$work/oci"
umoci new --image "$layout"
umoci raw add-layer --image "$layout" "$work/rootfs.tar"
umoci config --image "$layout" --author ferryman --os linux --architecture amd64 \
    --config.user 65532:65532 --config.workingdir /tmp --config.entrypoint ferryman \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env LANG=C.UTF-8 \
    --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 --config.env PIP_NO_CACHE_DIR=1
mkdir -p "$(dirname "$out")"
rm -f "$out"
skopeo copy --quiet "oci:$layout" "oci-archive:$out:localhost/ferryman:$version"
echo "image: wrote ${out#"$root"/} (localhost/ferryman:$version, $(du -m "$out" | cut -f1) MiB)"
