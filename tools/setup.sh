#!/usr/bin/env bash
# Set up a Debian 12 (bookworm) machine, as root, to build, test and document
# tabnetrs:  bash tools/setup.sh [--bench]
#
#   1. apt: libtorch, OpenBLAS, pandoc and Debian's prebuilt r-cran-* packages
#      (only the ones whose bookworm version is new enough for the current
#      tidymodels stack; the too-old ones come from CRAN in step 2).
#      --bench adds the Python benchmark peer (PyTorch, scikit-learn, ...).
#   2. Rscript tools/install-r-deps.R: the remaining R packages from CRAN,
#      only those missing or older than required.
#
# Idempotent: a re-run with everything in place does no apt or CRAN work.
set -euo pipefail

cd "$(dirname "$0")/.."

bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) bench=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { echo "setup.sh: $*"; }
start=$(date +%s)

apt_pkgs=(
  libtorch-dev libopenblas0-pthread pandoc
  # msgmerge and msgfmt for tools/update-po.R (the French message catalogue)
  gettext
  # R toolchain (headers, compilers, BLAS/LAPACK dev libs) for CRAN builds.
  r-base-dev
  # Requested R packages whose bookworm version is new enough.
  r-cran-generics r-cran-magrittr r-cran-ggplot2 r-cran-withr r-cran-jsonlite
  r-cran-testthat r-cran-purrr r-cran-tidyr r-cran-modeldata r-cran-future
  r-cran-knitr r-cran-rmarkdown r-cran-roxygen2 r-cran-tidyverse
  r-cran-patchwork r-cran-viridislite r-cran-lme4 r-cran-callr
  # Dependencies of the CRAN-built tidymodels packages that bookworm has new
  # enough (saves compiling Rcpp, RcppArmadillo, clock, lubridate, ...).
  r-cran-rcpp r-cran-rcpparmadillo r-cran-clock r-cran-lubridate
  r-cran-timedate r-cran-ipred r-cran-prodlim r-cran-gower r-cran-slider
  r-cran-furrr r-cran-globals r-cran-tidyselect r-cran-glue r-cran-farver
  r-cran-labeling r-cran-rcolorbrewer r-cran-prettyunits r-cran-utf8
  r-cran-pkgconfig r-cran-r6 r-cran-numderiv
  # plumber (vetiver's API server) links libsodium; data.table for xgboost
  libsodium-dev r-cran-data.table
  # Python's torch.jit.load() for the TorchScript export test (same libtorch)
  python3-torch
)
# Too old in bookworm, so taken from CRAN by install-r-deps.R (the old Debian
# builds may still come in as apt dependencies; the CRAN ones shadow them):
#   rlang 1.0.6 (< 1.1.7), vctrs 0.5.2 (< 0.7.1), cli 3.6.0 (< 3.6.2),
#   tibble 3.1.8 (< 3.2.1), pillar 1.8.1 (< 1.9.0), lifecycle 1.0.3 (< 1.0.5),
#   dplyr 1.0.10 (< 1.1.1), scales 1.2.1 (< 1.3.0), hardhat 1.2.0 (< 1.4.3),
#   recipes 1.0.4 (< 1.3.2), rsample 1.1.1 (< 1.3.2).
# Not in bookworm: parsnip, dials, tune, finetune, workflows, yardstick,
#   tailor, modelenv, sparsevctrs, GauPro, DiceDesign, sfd, vip, ...
if [ "$bench" = 1 ]; then
  apt_pkgs+=(python3-sklearn python3-scipy python3-tqdm python3-pandas)
fi

missing=()
for p in "${apt_pkgs[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  say "all ${#apt_pkgs[@]} Debian packages already installed"
else
  export DEBIAN_FRONTEND=noninteractive
  stamp=/var/lib/apt/periodic/update-success-stamp
  apt_update() {
    say "apt-get update"
    apt-get update -qq
    mkdir -p "$(dirname "$stamp")" && touch "$stamp"
  }
  if [ -z "$(find "$stamp" -mmin -60 2>/dev/null)" ] ||
     ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt_update
  else
    say "apt-get update ran less than an hour ago, skipped"
  fi
  say "apt-get install ${#missing[@]} package(s): ${missing[*]}"
  install_cmd=(apt-get install -y -qq --no-install-recommends "${missing[@]}")
  if ! "${install_cmd[@]}" >/tmp/setup-apt.log 2>&1; then
    # Package lists may be stale (404s): refresh once and retry.
    say "apt-get install failed, refreshing package lists and retrying"
    apt_update
    if ! "${install_cmd[@]}" >/tmp/setup-apt.log 2>&1; then
      tail -n 30 /tmp/setup-apt.log >&2
      exit 1
    fi
  fi
  say "apt done in $(( $(date +%s) - start )) s"
fi

say "Rscript tools/install-r-deps.R"
Rscript tools/install-r-deps.R
if [ "$bench" = 1 ]; then
  say "benchmark peer: run it with /usr/bin/python3 (Debian's python3-* packages are not visible to a pyenv/venv python3 on PATH)"
fi
say "done in $(( $(date +%s) - start )) s"
