#!/usr/bin/env bash
# Builds tabnetrs_<version>.tar.gz at the repository root with its Rust crates
# inside (src/rust/vendor.tar.xz: exactly the crates Cargo.lock names), so that
# `R CMD INSTALL tabnetrs_<version>.tar.gz` needs no network and no environment
# variable. Crates come from the offline archive when ./configure set one up
# (TABNETRS_CARGO_VENDOR), else from crates.io.
#   bash tools/dist.sh        (make dist runs ./configure first)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.cache/dist
rm -rf "$out"
mkdir -p "$out"
(cd "$out" && R CMD build --no-manual "$root")
tarball=$(ls "$out"/tabnetrs_*.tar.gz)
tar -xzf "$tarball" -C "$out"
rm "$tarball"
vendor_args=(--locked)
if [ -f src/rust/.cargo/config.toml ]; then vendor_args+=(--offline --respect-source-config); fi
mkdir -p "$out/crates"
(cd src/rust && cargo vendor "${vendor_args[@]}" "$out/crates/vendor" > /dev/null 2> "$out/vendor.log")
tar -cJf "$out/tabnetrs/src/rust/vendor.tar.xz" -C "$out/crates" vendor
(cd "$out" && tar -czf "$root/$(basename "$tarball")" tabnetrs)
rm -rf "$out"
echo "dist: $(basename "$tarball") ($(du -h "$root/$(basename "$tarball")" | cut -f1), crates bundled)"
