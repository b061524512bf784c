// The one list of published targets. Everything in packaging/ (builds, npm/ layout, the install test,
// the README table check) reads it; package.json `napi.targets` must name the same triples (a test checks).
//
// `build` is the triple handed to `napi build -x` (cargo-zigbuild): a `.2.17` suffix pins the glibc the
// binary links against, so the x64/arm64 glibc builds load on any distribution with glibc >= 2.17
// (RHEL/CentOS 7, Debian 8, Ubuntu 14.04 and newer), whatever glibc this build machine has.
export const GLIBC_BASELINE = '2.17';

export const TARGETS = [
  { triple: 'x86_64-unknown-linux-gnu', build: `x86_64-unknown-linux-gnu.${GLIBC_BASELINE}`, abi: 'linux-x64-gnu', machine: 'x86-64', libc: `glibc ≥ ${GLIBC_BASELINE}` },
  { triple: 'x86_64-unknown-linux-musl', build: 'x86_64-unknown-linux-musl', abi: 'linux-x64-musl', machine: 'x86-64', libc: 'musl ≥ 1.2 (Alpine ≥ 3.13)' },
  { triple: 'aarch64-unknown-linux-gnu', build: `aarch64-unknown-linux-gnu.${GLIBC_BASELINE}`, abi: 'linux-arm64-gnu', machine: 'aarch64', libc: `glibc ≥ ${GLIBC_BASELINE}` },
  { triple: 'aarch64-unknown-linux-musl', build: 'aarch64-unknown-linux-musl', abi: 'linux-arm64-musl', machine: 'aarch64', libc: 'musl ≥ 1.2 (Alpine ≥ 3.13)' },
  { triple: 'wasm32-wasip1-threads', build: 'wasm32-wasip1-threads', abi: 'wasm32-wasi', machine: 'wasm32', libc: 'none (WebAssembly, Node ≥ 20)' },
];

export const BINARY_NAME = 'dbnorm';
/** The file the napi-rs loader looks for in a target's package. */
export const binaryFile = (t) => (t.abi === 'wasm32-wasi' ? `${BINARY_NAME}.wasm32-wasi.wasm` : `${BINARY_NAME}.${t.abi}.node`);
export const packageName = (t) => `${BINARY_NAME}-${t.abi}`;
