#!/usr/bin/env bash
# Rust lints run by `make test`: formatting, clippy with warnings denied, and a
# `// SAFETY:` comment on (or up to four lines above) every `unsafe` block and
# `unsafe impl`.   Usage: bash tools/lint-rust.sh <cargo target dir> [--offline]
set -euo pipefail
cd "$(dirname "$0")/../src/rust"
target=${1:?target dir}
shift
cargo fmt --all --check
cargo clippy --release "$@" --workspace --all-targets --target-dir "$target" -- -D warnings
# the line itself and the four before it are searched for "SAFETY"
missing=$(find . -name '*.rs' -not -path './target/*' -print0 | sort -z |
  xargs -0 awk '
    FNR == 1 { split("", ctx) }
    { ctx[FNR] = $0; delete ctx[FNR - 5] }
    /unsafe[ \t]*\{|unsafe impl/ {
      ok = 0
      for (i = FNR - 4; i <= FNR; i++) if ((i in ctx) && ctx[i] ~ /SAFETY/) ok = 1
      if (!ok) print FILENAME ":" FNR ": " $0
    }')
if [ -n "$missing" ]; then
  echo "unsafe without a // SAFETY: comment:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "rust lints: fmt, clippy -D warnings, SAFETY comments: ok"
