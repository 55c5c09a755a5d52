# The interpretation vignette's study as users run it (issue #13): its own
# make_syn2() / make_syn4() (5,000 rows), `tabnet_fit(y ~ ., syn, epochs = 10)`
# at the package's defaults, and the fit's mask importance (what
# `vip::vip(fit)` plots). For seeds 1..N (`set.seed(seed)` before the data
# and the fits, as a user running the vignette would), it counts
#   * Syn2: the top four are V03-V06 ("by far the most important ones");
#   * Syn4: V10 ranks first or second ("strong importance for V10");
# for tabnetrs at its defaults, for tabnetrs with single changes (to find what
# the claims depend on), and for pytorch-tabnet 4.1.0 at its defaults on the
# same data (bench/peer_vignette.py).
#
#   Rscript bench/vignette_study.R [--seeds 10] [--from 1] [--variants "defaults;..."]
#       [--no-peer] [--out bench/results-vignette.md]
# (--variants none: the peer only)
args <- commandArgs(trailingOnly = TRUE)
arg <- function(name, default) {
  i <- match(name, args)
  if (is.na(i)) default else args[[i + 1]]
}
here <- local({
  f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  normalizePath(dirname(f[1]))
})
suppressPackageStartupMessages(library(tabnetrs))
options(tabnetrs.threads = 1L)

# ---- the vignette's code, verbatim ------------------------------------------
logit_to_y <- function(logits) {
  p <- exp(logits) / (1 + exp(logits))
  y <- factor(ifelse(p > 0.5, "yes", "no"), levels = c("yes", "no"))
  y
}
make_random_x <- function(n) {
  x <- as.data.frame(lapply(1:10, function(x) rnorm(n)))
  names(x) <- sprintf("V%02d", 1:10)
  x
}
make_syn2 <- function(n = 5000) {
  x <- make_random_x(n)
  logits <- rowSums(x[, 3:6])
  x$y <- logit_to_y(logits)
  x
}
make_syn4 <- function(n = 5000) {
  x <- make_random_x(n)
  logits <- ifelse(
    x[, 10] > 0,
    rowSums(x[, 1:2]),
    rowSums(x[, 5:6])
  )
  x$y <- logit_to_y(logits)
  x
}

# ---- variants: the defaults with one change ---------------------------------
# Each variant spells out the two settings tabnetrs 0.1.0 changed (mask_type,
# batch_size), so its meaning does not depend on the installed defaults;
# `defaults` is whatever the installed package's defaults are (the report
# says which).
sm <- function(...) list(mask_type = "sparsemax", batch_size = 1024, ...) # before issue #13
em <- function(...) list(mask_type = "entmax", batch_size = 512, ...) # since issue #13
VARIANTS <- list(
  defaults = list(),
  `sparsemax, batch 1024 (old defaults)` = sm(),
  `sparsemax, batch 1024, batch_size 256` = utils::modifyList(sm(), list(batch_size = 256)),
  `sparsemax, batch 512` = utils::modifyList(sm(), list(batch_size = 512)),
  `sparsemax, batch 1024, decision_width 16` = sm(decision_width = 16),
  `sparsemax, batch 1024, learn_rate 0.05` = sm(learn_rate = 0.05),
  `sparsemax, batch 1024, penalty 0` = sm(penalty = 0),
  `sparsemax, batch 1024, epochs 30` = sm(epochs = 30),
  `sparsemax, batch 1024, epochs 60` = sm(epochs = 60),
  `entmax, batch 1024` = utils::modifyList(em(), list(batch_size = 1024)),
  `entmax, batch 1024, decision_width 16` = utils::modifyList(em(decision_width = 16), list(batch_size = 1024)),
  `entmax, batch 512 (new defaults)` = em(),
  `entmax, batch 512, decision_width 12` = em(decision_width = 12),
  `entmax, batch 512, decision_width 16` = em(decision_width = 16),
  `entmax, batch 512, attention_width 16` = em(decision_width = 8, attention_width = 16)
)
seeds <- as.integer(arg("--from", "1")) - 1L + seq_len(as.integer(arg("--seeds", "10")))
variants <- strsplit(arg("--variants", "defaults"), ";")[[1]]
if (identical(variants, "none")) variants <- character() # the peer only
stopifnot(all(variants %in% names(VARIANTS)))
peer <- !("--no-peer" %in% args)
out_md <- arg("--out", file.path(here, "results-vignette.md"))

signal2 <- sprintf("V%02d", 3:6)
score <- function(variables, importance, set) {
  ord <- variables[order(-importance)]
  if (set == "syn2") setequal(ord[1:4], signal2) else match("V10", ord)
}
acc <- function(fit, d) mean(predict(fit, d)$.pred_class == d$y)

data_dir <- file.path(tempdir(), "vignette-study")
dir.create(data_dir, showWarnings = FALSE)
rows <- list()
for (s in seeds) {
  set.seed(s)
  sets <- list(syn2 = make_syn2(), syn4 = make_syn4())
  set.seed(10000 + s)
  tests <- list(syn2 = make_syn2(), syn4 = make_syn4())
  for (set in names(sets)) {
    utils::write.csv(sets[[set]], file.path(data_dir, sprintf("%s-seed%d.csv", set, s)), row.names = FALSE)
    utils::write.csv(tests[[set]], file.path(data_dir, sprintf("%s-seed%d.test.csv", set, s)), row.names = FALSE)
    for (v in variants) {
      set.seed(s)
      fit <- do.call(tabnet_fit, utils::modifyList(list(y ~ ., sets[[set]], epochs = 10), VARIANTS[[v]]))
      imp <- fit$fit$importances
      rows[[length(rows) + 1]] <- data.frame(tool = "tabnetrs", variant = v, set = set, seed = s,
                                             score = score(imp$variables, imp$importance, set),
                                             accuracy = acc(fit, tests[[set]]))
    }
  }
  message("seed ", s, " done")
}
if (peer) {
  py <- "/usr/bin/python3" # Debian's, with python3-torch (bench/README.md)
  pp <- Sys.getenv("PYTHONPATH", file.path(here, ".peer"))
  out_json <- file.path(data_dir, "peer.json")
  st <- system2(py, c(file.path(here, "peer_vignette.py"), data_dir, out_json),
                env = paste0("PYTHONPATH=", pp))
  if (st == 0) {
    pr <- jsonlite::fromJSON(out_json, simplifyVector = FALSE)$results
    for (r in pr) {
      set <- sub("-seed.*", "", r$name)
      rows[[length(rows) + 1]] <- data.frame(tool = "pytorch-tabnet", variant = "defaults", set = set,
                                             seed = r$seed,
                                             score = score(unlist(r$variables), unlist(r$importance), set),
                                             accuracy = r$accuracy)
    }
  } else {
    message("the peer failed (status ", st, "); see bench/README.md for its setup")
  }
}
res <- do.call(rbind, rows)

# ---- report -----------------------------------------------------------------
n <- length(seeds)
lines <- c("# The interpretation vignette's claims over seeds (issue #13)", "",
           sprintf("Generated by `Rscript bench/vignette_study.R`; %s UTC; seeds %s; `set.seed(seed)` before the data and each fit; 5,000 training rows, 10 epochs; accuracy on 5,000 fresh rows. Mask importance = the fit's `fit$fit$importances` (what `vip::vip()` shows).",
                   format(Sys.time(), "%Y-%m-%d %H:%M", tz = "UTC"), paste(range(seeds), collapse = "-")), "",
           sprintf("Installed defaults: mask_type = \"%s\", batch_size = %d.", tabnet_config()$mask_type, tabnet_config()$batch_size), "",
           "| tool | configuration | Syn2: V03-V06 top four | Syn4: V10 first or second | Syn4: V10's ranks | accuracy Syn2 | accuracy Syn4 |",
           "|---|---|---|---|---|---|---|")
for (tool in unique(res$tool)) for (v in unique(res$variant[res$tool == tool])) {
  a <- res[res$tool == tool & res$variant == v & res$set == "syn2", ]
  b <- res[res$tool == tool & res$variant == v & res$set == "syn4", ]
  b <- b[order(b$seed), ]
  lines <- c(lines, sprintf("| %s | %s | %d / %d | %d / %d | %s | %.3f | %.3f |", tool, v,
                            sum(as.logical(a$score)), nrow(a), sum(b$score <= 2), nrow(b),
                            paste(b$score, collapse = " "), mean(a$accuracy), mean(b$accuracy)))
}
writeLines(lines, out_md)
cat(lines, sep = "\n")
