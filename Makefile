# tabnetrs developer entry points. The two a newcomer needs:
#   make demo   set the machine up, build, and run the Syn2 fit + explain demo
#   make test   set the machine up, build, and run every test (cargo + testthat + R CMD check)
#
# Rust crates come from the offline archive ../shared/cargo-vendor.tar.xz when
# it exists (or from TABNETRS_CARGO_VENDOR); otherwise from crates.io.

SHELL := /bin/bash
VENDOR_DEFAULT := $(abspath ../shared/cargo-vendor.tar.xz)
export TABNETRS_CARGO_VENDOR ?= $(if $(wildcard $(VENDOR_DEFAULT)),$(VENDOR_DEFAULT),)
export TABNETRS_TARGET_DIR ?= $(CURDIR)/.cache/cargo-target
export TABNETRS_VENDOR_DIR ?= $(CURDIR)/.cache/vendor
export TZ ?= UTC
export _R_CHECK_FORCE_SUGGESTS_ ?= false
# libtorch threads in tests and checks (CRAN: at most 2)
export OMP_NUM_THREADS ?= 2
R_LIB ?= $(CURDIR)/.cache/R-lib
RSCRIPT := R_LIBS=$(R_LIB):$$R_LIBS Rscript

.PHONY: setup makevars install demo test test-rust lint-rust test-r check dist docs clean

setup:
	bash tools/setup.sh

makevars:
	./configure

# Installs into a project-local library so tests never see a stale copy.
install: makevars
	mkdir -p $(R_LIB)
	R CMD INSTALL --no-test-load --library=$(R_LIB) .

demo: setup install
	$(RSCRIPT) tools/demo.R

# The core's tests, then its numerics again with OpenBLAS's Prescott and Haswell
# sgemm kernels (every x86-64 CPU runs Prescott; CPUs differ in the kernel
# OpenBLAS picks, so a tolerance that only holds for one kernel fails here too).
CARGO_TEST = cargo test --release $(if $(TABNETRS_CARGO_VENDOR),--offline,) -p tabnet_core --target-dir "$(TABNETRS_TARGET_DIR)"
test-rust: makevars
	mkdir -p .cache
	set -o pipefail; export LIBTORCH=$$(sed -n 's/^CARGO_ENV = LIBTORCH="\([^"]*\)"/\1/p' src/Makevars); \
	  cd src/rust && $(CARGO_TEST) 2>&1 | tee $(CURDIR)/.cache/cargo-test.log && \
	  for core in Prescott Haswell; do \
	    echo "== cargo test with OPENBLAS_CORETYPE=$$core"; \
	    OPENBLAS_CORETYPE=$$core $(CARGO_TEST) 2>&1 | tee -a $(CURDIR)/.cache/cargo-test.log || exit 1; \
	  done
	@grep -h "^test result:" .cache/cargo-test.log | awk '{p+=$$4; f+=$$6} END {printf "cargo: %d passed, %d failed\n", p, f}'

# cargo fmt --check, clippy -D warnings, a SAFETY comment on every unsafe block
lint-rust: makevars
	export LIBTORCH=$$(sed -n 's/^CARGO_ENV = LIBTORCH="\([^"]*\)"/\1/p' src/Makevars); \
	  bash tools/lint-rust.sh "$(TABNETRS_TARGET_DIR)" $(if $(TABNETRS_CARGO_VENDOR),--offline,)

test-r: install
	$(RSCRIPT) tools/run-tests.R

check: install
	rm -rf .cache/check && mkdir -p .cache/check
	cd .cache/check && R_LIBS=$(R_LIB):$$R_LIBS R CMD build ../.. && \
	  R_LIBS=$(R_LIB):$$R_LIBS R CMD check --no-manual --no-tests --ignore-vignettes tabnetrs_*.tar.gz
	@! grep -E "^Status: .*(ERROR|WARNING)" .cache/check/tabnetrs.Rcheck/00check.log

test: setup
	mkdir -p .cache
	$(MAKE) lint-rust
	$(MAKE) test-rust
	$(MAKE) test-r
	$(MAKE) check

# A source tarball that installs with no network (crates bundled), as CRAN
# requires of Rust packages: tabnetrs_<version>.tar.gz
dist: install
	R_LIBS=$(R_LIB):$$R_LIBS bash tools/dist.sh

docs: install
	$(RSCRIPT) -e 'roxygen2::roxygenise(load_code = roxygen2::load_installed)'

clean:
	rm -rf .cache src/Makevars src/*.o src/*.so
