# The columns of a numeric matrix as a tibble named `names`: what
# tibble::as_tibble(<matrix>, .name_repair = "minimal") and
# hardhat::spruce_prob() return (identical()), without as_tibble's conversion
# of the matrix (a third of a 100,000-row predict()'s time in R, half of a
# 40,000 x 28 tabnet_explain()'s).
columns_tibble <- function(m, names = colnames(m)) {
  cols <- lapply(seq_len(ncol(m)), function(j) m[, j])
  names(cols) <- names
  tibble::new_tibble(cols, nrow = nrow(m))
}
