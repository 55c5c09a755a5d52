# knitr printing: fits, explanations and importances as Markdown (rendered as
# HTML, LaTeX, ... by R Markdown / Quarto) instead of console text.

md_escape <- function(x) {
  gsub("([_*`|<>\\[\\]])", "\\\\\\1", x, perl = TRUE)
}

md_table <- function(df, digits = 4) {
  knitr::kable(df, format = "pipe", digits = digits, row.names = FALSE)
}

knit_print_fit <- function(x, ...) {
  out <- utils::capture.output(print(x))
  if (!length(out)) return(knitr::normal_print(x))
  title <- out[1]
  items <- sub("^\\* ", "", out[-1])
  md <- c(sprintf("**%s**", md_escape(title)), "", paste0("- ", md_escape(items)), "")
  knitr::asis_output(paste(md, collapse = "\n"))
}

#' @exportS3Method knitr::knit_print
knit_print.tabnet_fit <- function(x, ...) knit_print_fit(x, ...)

#' @exportS3Method knitr::knit_print
knit_print.tabnet_pretrain <- function(x, ...) knit_print_fit(x, ...)

#' @exportS3Method knitr::knit_print
knit_print.tabnet_explain <- function(x, ...) {
  n <- nrow(x$M_explain)
  share <- explain_share(x)
  head_md <- sprintf("**TabNet explanation**: %s observations, %d predictors, %d decision steps. Share of the aggregated mask per predictor:",
                     format(n, big.mark = ","), ncol(x$M_explain), length(x$masks))
  top <- utils::head(share, 15)
  tab <- data.frame(Variable = names(top), Share = sprintf("%.1f%%", 100 * top))
  md <- c(head_md, "", md_table(tab), "",
          if (length(share) > 15) sprintf("... and %d more predictors.", length(share) - 15),
          "*Plot with `autoplot(x)` or `autoplot(x, type = \"steps\")`.*", "")
  knitr::asis_output(paste(md, collapse = "\n"))
}

#' @exportS3Method knitr::knit_print
knit_print.tabnet_importance <- function(x, ...) {
  df <- as.data.frame(x)
  md <- c(sprintf("**TabNet importance** (%s)", md_escape(importance_summary(x))), "", md_table(df), "")
  knitr::asis_output(paste(md, collapse = "\n"))
}
