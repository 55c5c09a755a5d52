# Configure step of tabnetrs (run by ./configure). Writes src/Makevars from
# src/Makevars.in. Environment variables it honours:
#   LIBTORCH                 libtorch root (include/ and lib/ below it)
#   LIBTORCH_INCLUDE, LIBTORCH_LIB  override the include / lib directories
#   TABNETRS_CARGO_VENDOR    path to a cargo vendor archive (.tar.xz holding
#                            vendor/): build offline from it instead of crates.io
#   TABNETRS_VENDOR_DIR      where to unpack that archive (default: the user cache)
#   TABNETRS_TARGET_DIR      cargo target directory to reuse between builds
#   TABNETRS_JOBS            cargo build jobs (default 2)

msg <- function(...) cat("tabnetrs configure:", ..., "\n")
fail <- function(...) {
  cat("\n-------------------------- [tabnetrs configure] --------------------------\n",
      ..., "\n---------------------------------------------------------------------------\n",
      sep = "")
  quit(status = 1)
}

# ---- cargo and rustc --------------------------------------------------------
paths <- c(strsplit(Sys.getenv("PATH"), .Platform$path.sep)[[1]], file.path(Sys.getenv("HOME"), ".cargo", "bin"))
find_tool <- function(name) {
  hit <- file.path(paths, name)
  hit <- hit[file.exists(hit)]
  if (length(hit)) hit[[1]] else ""
}
cargo <- find_tool("cargo")
rustc <- find_tool("rustc")
if (!nzchar(cargo) || !nzchar(rustc)) {
  fail("cargo and rustc (Rust >= 1.88) are required.\n",
       "Install them with your package manager (Debian/Ubuntu: apt-get install cargo rustc)\n",
       "or from https://rustup.rs, then reinstall tabnetrs.")
}
rustc_version <- suppressWarnings(tryCatch(system2(rustc, "--version", stdout = TRUE, stderr = FALSE),
                                           error = function(e) character()))
if (!length(rustc_version) || !isTRUE(grepl("^rustc [0-9]", rustc_version[1]))) {
  fail("'", rustc, " --version' failed: Rust is installed but has no usable toolchain.\n",
       "With rustup, run 'rustup default stable'; otherwise reinstall rustc and cargo, then reinstall tabnetrs.")
}
msg("using", rustc_version)
# the minimum Rust is the crates' `rust-version` (src/rust/Cargo.toml)
cargo_toml <- readLines(file.path("src", "rust", "Cargo.toml"), warn = FALSE)
need_rust <- sub('^rust-version *= *"([^"]+)".*', "\\1", grep("^rust-version", cargo_toml, value = TRUE)[1])
have_rust <- sub("^rustc ([0-9.]+).*", "\\1", rustc_version[1])
if (!is.na(need_rust) && !is.na(package_version(have_rust, strict = FALSE)) &&
    package_version(have_rust) < package_version(need_rust)) {
  fail("tabnetrs needs Rust >= ", need_rust, ", but ", rustc, " is ", have_rust, ".\n",
       "Update it (rustup update, or a newer rustc/cargo from your package manager), then reinstall tabnetrs.")
}
msg("using", system2(cargo, "--version", stdout = TRUE))

# ---- libtorch -----------------------------------------------------------------
libtorch <- Sys.getenv("LIBTORCH")
inc <- Sys.getenv("LIBTORCH_INCLUDE")
lib <- Sys.getenv("LIBTORCH_LIB")
has_torch_lib <- function(d) nzchar(d) && any(file.exists(file.path(d, c("libtorch_cpu.so", "libtorch_cpu.dylib"))))
multiarch <- tryCatch(system2("gcc", "-print-multiarch", stdout = TRUE, stderr = FALSE), error = function(e) "")
if (nzchar(libtorch)) {
  if (!nzchar(inc)) inc <- file.path(libtorch, "include")
  if (!nzchar(lib)) {
    lib <- file.path(libtorch, "lib")
    # Debian-style prefixes (LIBTORCH=/usr) keep the libraries in lib/<multiarch>
    if (!has_torch_lib(lib) && length(multiarch) && nzchar(multiarch[1]) &&
        has_torch_lib(file.path(lib, multiarch[1]))) lib <- file.path(lib, multiarch[1])
  }
} else {
  candidates <- unique(c(if (length(multiarch) && nzchar(multiarch[1])) file.path("/usr/lib", multiarch[1]), "/usr/lib", "/usr/lib64", "/usr/local/lib"))
  found <- Filter(has_torch_lib, candidates)
  if (length(found) && file.exists("/usr/include/torch/csrc/api/include/torch/torch.h")) {
    libtorch <- "/usr"
    if (!nzchar(inc)) inc <- "/usr/include"
    if (!nzchar(lib)) lib <- found[[1]]
  }
}
if (!nzchar(libtorch) || !has_torch_lib(lib) ||
    !file.exists(file.path(inc, "torch", "csrc", "api", "include", "torch", "torch.h"))) {
  fail("libtorch 1.13 was not found.\n",
       "On Debian/Ubuntu install it (and a fast BLAS) with:\n",
       "    apt-get install libtorch-dev libopenblas0-pthread\n",
       "or download libtorch 1.13.x from pytorch.org and set LIBTORCH=/path/to/libtorch\n",
       "(optionally LIBTORCH_INCLUDE and LIBTORCH_LIB) before installing tabnetrs.\n",
       "Looked in: LIBTORCH='", Sys.getenv("LIBTORCH"), "', include '", inc, "', lib '", lib, "'.")
}
msg("libtorch:", libtorch, "(include", inc, "| lib", lib, ")")
cuda <- any(file.exists(file.path(lib, c("libtorch_cuda.so", "libtorch_cuda.dylib"))))
torch_libs <- paste0("-L", lib, " -Wl,-rpath,", lib)
torch_libs <- paste(torch_libs,
                    if (cuda) "-Wl,--no-as-needed -ltorch_cuda -ltorch -Wl,--as-needed",
                    "-ltorch_cpu -ltorch -lc10 -lgomp -lstdc++ -lpthread -ldl -lm")
msg(if (cuda) "libtorch has CUDA: device = \"cuda\" is available" else "libtorch is CPU-only")

# ---- crates: offline archive or crates.io ----------------------------------
vendor_archive <- Sys.getenv("TABNETRS_CARGO_VENDOR")
cargo_dir <- file.path("src", "rust", ".cargo")
cargo_config <- file.path(cargo_dir, "config.toml")
offline <- ""
cargo_home <- ""
# A source tarball made by `make dist` carries its crates (src/rust/vendor.tar.xz):
# it builds offline, with no environment variable, as CRAN requires.
bundled <- file.path("src", "rust", "vendor.tar.xz")
if (!nzchar(vendor_archive) && file.exists(bundled)) {
  vendor_archive <- bundled
  Sys.setenv(TABNETRS_VENDOR_DIR = file.path(getwd(), "src", "rust"))
  # cargo writes nothing outside the build directory
  cargo_home <- file.path(getwd(), "src", "rust", ".cargo-home")
  msg("using the crates bundled with this source package")
}
if (nzchar(vendor_archive)) {
  vendor_archive <- normalizePath(vendor_archive, mustWork = FALSE)
  if (!file.exists(vendor_archive)) fail("TABNETRS_CARGO_VENDOR names '", vendor_archive, "', which does not exist.")
  # Unpacked outside the package sources (so R CMD build/check never see the
  # crates), once per archive version, in TABNETRS_VENDOR_DIR or a user cache.
  vendor_root <- Sys.getenv("TABNETRS_VENDOR_DIR")
  if (!nzchar(vendor_root)) vendor_root <- tools::R_user_dir("tabnetrs", "cache")
  dir.create(vendor_root, recursive = TRUE, showWarnings = FALSE)
  vendor_root <- normalizePath(vendor_root, mustWork = TRUE)
  stamp <- file.path(vendor_root, "vendor", ".archive")
  id <- paste(vendor_archive, file.size(vendor_archive), as.character(file.mtime(vendor_archive)))
  same <- file.exists(stamp) && identical(readLines(stamp, warn = FALSE), id)
  if (!same) {
    msg("unpacking offline crates from", vendor_archive, "into", vendor_root)
    unlink(file.path(vendor_root, "vendor"), recursive = TRUE)
    status <- system2("tar", c("-xJf", shQuote(vendor_archive), "-C", shQuote(vendor_root)))
    if (status != 0 || !dir.exists(file.path(vendor_root, "vendor"))) fail("could not unpack ", vendor_archive, " (it must hold a vendor/ directory).")
    writeLines(id, stamp)
  }
  dir.create(cargo_dir, showWarnings = FALSE)
  writeLines(c("# written by tools/config.R: crates come from the offline archive",
               "[source.crates-io]", "replace-with = \"vendored-sources\"",
               "[source.vendored-sources]", paste0("directory = \"", file.path(vendor_root, "vendor"), "\"")),
             cargo_config)
  offline <- "--offline"
  msg("building offline from the vendored crates")
} else if (file.exists(cargo_config) && any(grepl("written by tools/config.R", readLines(cargo_config, warn = FALSE)))) {
  unlink(cargo_config)
}

target_dir <- Sys.getenv("TABNETRS_TARGET_DIR")
in_tree_target <- !nzchar(target_dir)
if (in_tree_target) target_dir <- "$(CURDIR)/rust/target"
jobs <- Sys.getenv("TABNETRS_JOBS", "2")

tpl <- readLines(file.path("src", "Makevars.in"))
cargo_env_extra <- if (nzchar(cargo_home)) paste0(' CARGO_HOME="', cargo_home, '"') else ""
# an in-tree target is build debris once the library is linked: only the
# static library and the wrapper generator are kept until then
tidy <- if (in_tree_target) 'rm -rf "$(TARGET_DIR)/release/build" "$(TARGET_DIR)/release/deps" "$(TARGET_DIR)/release/incremental" "$(TARGET_DIR)/release/.fingerprint"' else "true"
subst <- c(LIBTORCH = libtorch, LIBTORCH_INCLUDE = inc, LIBTORCH_LIB = lib, TORCH_LIBS = torch_libs,
           OFFLINE = offline, TARGET_DIR = target_dir, JOBS = jobs, CARGO = cargo,
           CARGO_ENV_EXTRA = cargo_env_extra, TIDY = tidy)
for (k in names(subst)) tpl <- gsub(paste0("@", k, "@"), subst[[k]], tpl, fixed = TRUE)
writeLines(tpl, file.path("src", "Makevars"))
msg("wrote src/Makevars")
