# Higgs-size run in a fresh process: 10.5M × 28 generated as an R data frame,
# one TabNet-S epoch through tabnet_fit(); records time and peak RSS.
#   Rscript bench/higgs_run.R THREADS OUT.json [OUT.md]
# HIGGS_ROWS overrides the number of rows (for a quick try).
args <- commandArgs(trailingOnly = TRUE)
threads <- as.integer(args[[1]]); out <- args[[2]]
md <- if (length(args) >= 3) args[[3]] else NULL
suppressPackageStartupMessages(library(tabnetrs))
rss <- function(field) {
  s <- readLines("/proc/self/status")
  as.numeric(sub("[^0-9]*([0-9]+).*", "\\1", s[grepl(paste0("^", field), s)])) / 1024
}
blas_libraries <- function() {
  maps <- readLines("/proc/self/maps", warn = FALSE)
  paste(basename(unique(sub(".* ", "", maps[grepl("blas|lapack|gomp", maps)]))), collapse = ", ")
}
n <- as.numeric(Sys.getenv("HIGGS_ROWS", "10500000"))
set.seed(1)
df <- as.data.frame(lapply(1:28, function(i) rnorm(n)))
names(df) <- sprintf("V%02d", 1:28)
df$class <- factor(ifelse(df$V03 + df$V04 - df$V05 + 0.5 * df$V06 > 0, "1", "0"))
invisible(gc())
df_mib <- as.numeric(object.size(df)) / 2^20
rss_with_df <- rss("VmRSS")
t <- system.time(fit <- tabnet_fit(class ~ ., df, epochs = 1, decision_width = 24, attention_width = 26,
                                   num_steps = 5, feature_reusage = 1.5, batch_size = 16384,
                                   virtual_batch_size = 512, momentum = 0.4, penalty = 1e-6,
                                   learn_rate = 0.02, mask_type = "sparsemax", num_threads = threads, skip_importance = TRUE,
                                   checkpoint_epochs = 0))[["elapsed"]]
res <- list(n = n, threads = threads, fit_s = t, epoch_s = fit$fit$metrics[[1]]$seconds,
            train_loss = fit$fit$metrics[[1]]$train, peak_rss_mib = rss("VmHWM"), df_mib = df_mib,
            rss_with_df_mib = rss_with_df, blas = blas_libraries())
jsonlite::write_json(res, out, auto_unbox = TRUE, digits = NA)
line <- sprintf(paste(
  "Higgs size (%s × 28 numeric data frame of %.0f MiB, formula `class ~ .`, TabNet-S, 1 epoch, %d threads):",
  "tabnet_fit() %.0f s, of which the epoch %.0f s (training loss %.3f); peak RSS %.0f MiB, %.0f MiB above",
  "the process with the data frame (%.0f MiB). BLAS: %s."),
  format(n, big.mark = ",", scientific = FALSE), df_mib, threads, t, res$epoch_s, res$train_loss,
  res$peak_rss_mib, res$peak_rss_mib - rss_with_df, rss_with_df, res$blas)
cat(line, "\n")
if (!is.null(md)) writeLines(c("# Higgs-size run", "", line), md)
