# Higgs-size run in a fresh process: 10.5M × 28 generated as an R data frame,
# one TabNet-S epoch through tabnet_fit(); prints time and peak RSS.
#   Rscript bench/higgs_run.R THREADS OUT.json
args <- commandArgs(trailingOnly = TRUE)
threads <- as.integer(args[[1]]); out <- args[[2]]
suppressPackageStartupMessages(library(tabnetrs))
rss <- function(field) {
  s <- readLines("/proc/self/status")
  as.numeric(sub("[^0-9]*([0-9]+).*", "\\1", s[grepl(paste0("^", field), s)])) / 1024
}
n <- as.numeric(Sys.getenv("HIGGS_ROWS", "10500000"))
set.seed(1)
df <- as.data.frame(lapply(1:28, function(i) rnorm(n)))
names(df) <- sprintf("V%02d", 1:28)
df$class <- factor(ifelse(df$V03 + df$V04 - df$V05 + 0.5 * df$V06 > 0, "1", "0"))
gc()
df_mib <- as.numeric(object.size(df)) / 2^20
rss_with_df <- rss("VmRSS")
t <- system.time(fit <- tabnet_fit(class ~ ., df, epochs = 1, decision_width = 24, attention_width = 26,
                                   num_steps = 5, feature_reusage = 1.5, batch_size = 16384,
                                   virtual_batch_size = 512, momentum = 0.4, penalty = 1e-6,
                                   learn_rate = 0.02, num_threads = threads, skip_importance = TRUE,
                                   checkpoint_epochs = 0))[["elapsed"]]
jsonlite::write_json(list(n = n, epoch_s = t, peak_rss_mib = rss("VmHWM"), df_mib = df_mib,
                          rss_with_df_mib = rss_with_df), out, auto_unbox = TRUE, digits = NA)
