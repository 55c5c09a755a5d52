#!/usr/bin/env bash
# Rust lints run by `make test`: formatting, and clippy with warnings denied.
# The workspace's [lints] table (src/rust/Cargo.toml) adds
# `clippy::undocumented_unsafe_blocks`: every `unsafe` block and `unsafe impl`
# carries a `// SAFETY:` comment right above it.
#   Usage: bash tools/lint-rust.sh <cargo target dir> [--offline]
set -euo pipefail
cd "$(dirname "$0")/../src/rust"
target=${1:?target dir}
shift
cargo fmt --all --check
cargo clippy --release "$@" --workspace --all-targets --target-dir "$target" -- -D warnings
echo "rust lints: fmt, clippy -D warnings (undocumented unsafe blocks denied): ok"
