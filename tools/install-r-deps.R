# Install the R packages tabnetrs needs (Imports + Suggests used by the tests
# and vignettes), touching as little as possible.
#
#   Rscript tools/install-r-deps.R          # install what is missing/too old
#   Rscript tools/install-r-deps.R --dry-run  # only print the plan
#
# tools/setup.sh first installs Debian's r-cran-* binaries for everything whose
# bookworm version is new enough; this script then fills the gaps from CRAN.
#
# How it decides: a package is installed from CRAN only when it is missing or
# the version that library() would load is older than the minimum required,
# either below or by the DESCRIPTION of another package this script installs
# from CRAN (resolved recursively, version-aware -- install.packages() itself
# never upgrades an installed-but-too-old dependency). Packages that already
# satisfy every requirement are never upgraded. CRAN builds go to the site
# library (/usr/local/lib/R/site-library), which comes before Debian's
# /usr/lib/R/site-library on .libPaths(), so they shadow older Debian builds.
#
# Exit status is non-zero when a required package cannot be loaded (or is
# still too old) afterwards.

t0 <- Sys.time()
args <- commandArgs(trailingOnly = TRUE)
dry_run <- "--dry-run" %in% args

# The user's repositories (a mirror set in .Rprofile, Rprofile.site or by an
# organisation) when any is set; the cloud mirror only where none is.
repos <- getOption("repos")
if (!length(repos) || all(is.na(repos) | repos %in% c("", "@CRAN@"))) {
  repos <- c(CRAN = "https://cloud.r-project.org")
} else {
  repos[repos == "@CRAN@"] <- "https://cloud.r-project.org"
}
ncpus <- 2L

# name = minimum version ("" = any). Imports first, then Suggests.
required <- c(
  # Imports
  cli = "", rlang = "1.1.0", tibble = "", hardhat = "1.3.0", vctrs = "",
  generics = "", magrittr = "", ggplot2 = "", parsnip = "1.2.0",
  dials = "1.2.0", tune = "1.2.0", withr = "", jsonlite = "",
  # Suggests (tests, vignettes, docs)
  testthat = "3.1.0", recipes = "", workflows = "", yardstick = "",
  rsample = "", finetune = "", vip = "", dplyr = "", tidyr = "", purrr = "", data.tree = "",
  modeldata = "", future = "1.33.0", future.apply = "", mirai = "2.0.0",
  # Debian's knitr, rmarkdown and roxygen2 stop loading beside the xfun (0.62)
  # that current CRAN packages pull in
  knitr = "1.45", rmarkdown = "2.25", roxygen2 = "7.3.0",
  tidyverse = "", patchwork = "", viridisLite = "", scales = "1.3.0", lme4 = "", callr = "",
  # interpretation (SHAP peers and plots, the vignette's boosted-tree baseline;
  # lightgbm is the vignette's fallback, not installed: a long C++ build),
  # deployment, Arrow input
  kernelshap = "", xgboost = "", shapviz = "",
  vetiver = "", plumber = "", pins = "", butcher = "", bundle = "", httpuv = "", httr = "", nanoarrow = ""
)
# Served by CRAN only for a newer R: this version from CRAN's archive builds on
# R 4.2 (about 10 minutes on 2 cores). Installed before the resolver runs.
archived <- c(xgboost = "1.7.8.1")
# Installed when CRAN has them, but their absence only warns: vip has been
# archived on CRAN (no current version, archive not reachable from here).
optional <- c("vip", "kernelshap", "xgboost", "shapviz",
              "vetiver", "plumber", "pins", "butcher", "bundle", "httpuv", "httr", "nanoarrow")

msg <- function(...) cat("install-r-deps: ", ..., "\n", sep = "")

lib <- if (length(.Library.site) && nzchar(.Library.site[1])) {
  .Library.site[1]
} else {
  "/usr/local/lib/R/site-library"
}
lib <- sub("/+$", "", lib)
if (!dir.exists(lib)) dir.create(lib, recursive = TRUE)
if (!(normalizePath(lib) %in% normalizePath(.libPaths()))) {
  .libPaths(c(lib, .libPaths()))
}

pv <- function(x) package_version(if (is.na(x) || !nzchar(x)) "0.0" else x)

# Version of each package as library() would load it (first hit on .libPaths()).
installed_versions <- function() {
  ip <- installed.packages(lib.loc = .libPaths(), noCache = TRUE)
  ip <- ip[!duplicated(ip[, "Package"]), , drop = FALSE]
  setNames(ip[, "Version"], ip[, "Package"])
}
inst <- installed_versions()
base_pkgs <- rownames(installed.packages(lib.loc = .Library,
                                          priority = "base"))

satisfied <- function(p, min) {
  !is.na(inst[p]) && package_version(inst[[p]]) >= pv(min)
}

# Archived versions: their dependencies from CRAN, then the archive's tarball.
for (p in names(archived)) {
  if (!is.na(inst[p]) || dry_run) next
  url <- sprintf("%s/src/contrib/Archive/%s/%s_%s.tar.gz", sub("/+$", "", repos[[1]]),
                 p, p, archived[[p]])
  deps <- switch(p, xgboost = c("data.table", "jsonlite", "Matrix"), character())
  deps <- deps[is.na(inst[deps])]
  msg(p, " ", archived[[p]], " from CRAN's archive", if (length(deps)) paste0(" (and ", paste(deps, collapse = ", "), ")"))
  ok <- tryCatch({
    if (length(deps)) install.packages(deps, lib = lib, repos = repos, Ncpus = ncpus, quiet = TRUE)
    install.packages(url, lib = lib, repos = NULL, type = "source", quiet = TRUE)
    TRUE
  }, error = function(e) FALSE, warning = function(w) FALSE)
  if (!ok) msg("could not install ", p, " ", archived[[p]], " from ", url)
  inst <- installed_versions()
}

# Fast path: if every required package is present and new enough, nothing has
# to be installed, so CRAN is not contacted at all (unless an optional package
# is missing and might have come back).
need_top <- names(required)[!mapply(satisfied, names(required), required)]
cran_ok <- TRUE
to_install <- character()
unavailable <- character()

if (length(need_top)) {
  ap <- tryCatch(available.packages(repos = repos),
                 error = function(e) NULL)
  if (is.null(ap) || !nrow(ap)) {
    cran_ok <- FALSE
    msg("could not read the package index at ", paste(repos, collapse = ", "))
  }
}

if (length(need_top) && cran_ok) {
  ap_all <- tryCatch(available.packages(repos = repos, filters = list()),
                     error = function(e) ap)

  deps_of <- function(p) {
    f <- ap[p, c("Depends", "Imports", "LinkingTo")]
    f <- paste(f[!is.na(f)], collapse = ",")
    x <- trimws(strsplit(gsub("[\r\n\t]", " ", f), ",")[[1]])
    x <- x[nzchar(x)]
    nm <- trimws(sub("\\(.*", "", x))
    mn <- ifelse(grepl(">=", x), sub(".*>=\\s*([^ )]+).*", "\\1", x), "")
    keep <- nm != "R" & !(nm %in% base_pkgs)
    setNames(mn[keep], nm[keep])
  }

  # Constraints: package -> highest minimum version seen so far.
  cons <- as.list(required)
  bump <- function(p, min) {
    old <- cons[[p]]
    if (is.null(old) || pv(min) > pv(old)) {
      cons[[p]] <<- min
      TRUE
    } else FALSE
  }
  repeat {
    changed <- FALSE
    for (p in names(cons)) {
      if (satisfied(p, cons[[p]]) || p %in% c(to_install, unavailable)) next
      if (p %in% rownames(ap) && package_version(ap[p, "Version"]) >= pv(cons[[p]])) {
        to_install <- c(to_install, p)
        for (d in names(dl <- deps_of(p))) if (bump(d, dl[[d]])) changed <- TRUE
      } else {
        unavailable <- c(unavailable, p)
      }
      changed <- TRUE
    }
    # A raised minimum may make an already-queued CRAN version insufficient.
    bad <- to_install[vapply(to_install, function(p)
      package_version(ap[p, "Version"]) < pv(cons[[p]]), logical(1))]
    if (length(bad)) {
      to_install <- setdiff(to_install, bad)
      unavailable <- union(unavailable, bad)
    }
    if (!changed) break
  }

  why <- function(p) {
    have <- if (is.na(inst[p])) "missing" else inst[[p]]
    req <- if (nzchar(cons[[p]])) paste0(" < ", cons[[p]]) else ""
    paste0(p, " ", ap[p, "Version"], " (", have, req, ")")
  }
  if (length(to_install)) {
    msg(length(to_install), " package(s) from CRAN: ",
        paste(vapply(sort(to_install), why, ""), collapse = ", "))
  }
  for (p in unavailable) {
    reason <- if (p %in% rownames(ap)) {
      paste0("CRAN has only ", ap[p, "Version"])
    } else if (p %in% rownames(ap_all)) {
      paste0("CRAN has ", ap_all[p, "Version"], " but it needs a newer R")
    } else "not on CRAN"
    msg("cannot satisfy ", p, if (nzchar(cons[[p]])) paste0(" >= ", cons[[p]]),
        ": ", reason)
  }

  if (length(to_install) && !dry_run) {
    install.packages(to_install, lib = lib, repos = repos, Ncpus = ncpus,
                     dependencies = FALSE, quiet = TRUE)
  }
}

if (dry_run) {
  msg("dry run, nothing installed")
  quit(status = 0)
}

# Verify: every required package loads (in a fresh R, so namespaces and their
# versioned imports are checked exactly as a user session would) and is new
# enough.
inst <- installed_versions()
failed <- character()
for (i in seq_along(required)) {
  p <- names(required)[i]
  if (!satisfied(p, required[[i]])) {
    failed <- c(failed, p)
    next
  }
}
# One child process for all packages is enough and much faster.
script <- tempfile(fileext = ".R")
writeLines(c(
  sprintf("pk <- c(%s)", paste0("'", setdiff(names(required), failed), "'", collapse = ", ")),
  "bad <- character()",
  "for (p in pk) tryCatch(loadNamespace(p), error = function(e) {",
  "  message('  ', p, ': ', conditionMessage(e)); bad <<- c(bad, p) })",
  "if (length(bad)) cat(bad, sep = '\\n')"
), script)
out <- system2(file.path(R.home("bin"), "Rscript"), shQuote(script),
               stdout = TRUE,
               # TZ: without it lubridate's load calls timedatectl, which
               # prints noise in containers without systemd.
               env = c(paste0("R_LIBS=", shQuote(lib)),
                       if (!nzchar(Sys.getenv("TZ"))) "TZ=UTC"))
failed <- c(failed, out[nzchar(out)])
unlink(script)

n_installed <- sum(vapply(to_install, function(p)
  !is.na(inst[p]) && inst[[p]] == ap[p, "Version"], logical(1)))
n_sat <- length(required) - length(need_top)
el <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
msg(sprintf("%d of %d already satisfied, %d installed from CRAN, %.0f s",
            n_sat, length(required), n_installed, el))

hard <- setdiff(failed, optional)
soft <- intersect(failed, optional)
if (length(soft)) {
  msg("WARNING: optional package(s) not available: ", paste(soft, collapse = ", "))
}
if (length(hard)) {
  msg("ERROR: required package(s) missing, too old or not loadable: ",
      paste(vapply(hard, function(p) paste0(p, if (nzchar(required[[p]])) paste0(" (>= ", required[[p]], ")"),
                                           " [", if (is.na(inst[p])) "missing" else inst[[p]], "]"), ""),
            collapse = ", "))
  quit(status = 1)
}
if (!cran_ok && length(setdiff(need_top, optional))) quit(status = 1)
