#' Neural activation patterns of a TabNet
#'
#' The relative neural activity (RNA) of every node of every layer for each
#' class, and the network's sparsity, as in the NAP diagrams of Khot,
#' Neubauer & Roy (2023, "A detailed study of interpretability of deep neural
#' network based top taggers", Mach. Learn.: Sci. Technol. 4 035003):
#' \deqn{\mathrm{RNA}(j, k; S) = \frac{\sum_{i \in S} a_{jk}(x_i)}{\max_{j'} \sum_{i \in S} a_{j'k}(x_i)}}
#' for node \eqn{j} of layer \eqn{k} over the rows \eqn{S} of one class. The
#' study's nodes are ReLUs; TabNet's GLU outputs are signed, so a node's
#' activity \eqn{a} is the absolute value of its output, and RNA lies in
#' between 0 and 1. Sparsity is the share of nodes with RNA < 0.2 (per class, over
#' all layers and per layer).
#'
#' The layers, in the order the network runs them (the splitter is step 0):
#' each GLU layer of the shared and of the step-specific block of every
#' feature transformer (`step<i>.shared<l>`, `step<i>.specific<l>`; the
#' output after the residual sum), each attentive transformer's mask over the
#' attention groups (`step<i>.attentive`), each step's ReLU decision output
#' (`step<i>.decision`) and their sum (`decision`, the latent features of
#' [tabnet_latent()]). Activations come from the Rust core in eval mode, in
#' chunks of rows with a progress bar (Ctrl-C stops between chunks).
#'
#' @param object A `tabnet_fit` with a classification outcome, or a parsnip
#'   `model_fit` / fitted `workflow` holding one.
#' @param new_data A data frame with the predictors **and the outcome**.
#' @param outcome With several outcomes, the name of the one whose classes
#'   split the rows (default: the first).
#' @param ... Not used; a misspelt argument is an error.
#' @return A tibble of class `tabnet_nap` with columns `layer` (a factor in
#'   network order), `node` (1-based within the layer), `class` and `rna`;
#'   its attribute `"sparsity"` is a tibble with columns `class`, `layer`
#'   (`"all"` for the whole network) and `sparsity`; read it with
#'   `attr(x, "sparsity")`. Plot it with [autoplot()][autoplot.tabnet_nap].
#' @seealso [tabnet_lrp()], [tabnet_latent()].
#' @examples
#' \donttest{
#' set.seed(1)
#' x <- data.frame(a = rnorm(400), b = rnorm(400), c = rnorm(400))
#' x$y <- factor(ifelse(x$a - x$b > 0, "yes", "no"))
#' fit <- tabnet_fit(y ~ ., x, epochs = 5)
#' nap <- tabnet_nap(fit, x)
#' attr(nap, "sparsity")
#' autoplot(nap)
#' }
#' @export
tabnet_nap <- function(object, new_data, ...) {
  UseMethod("tabnet_nap")
}

#' @export
#' @rdname tabnet_nap
tabnet_nap.default <- function(object, new_data, ...) {
  abort_input(c(
    "{.fn tabnet_nap} is not defined for a {.cls {class(object)[1]}}.",
    i = "Use a model from {.fn tabnet_fit}, or a parsnip/workflow fit of {.fn tabnet}."
  ))
}

#' @export
#' @rdname tabnet_nap
tabnet_nap.tabnet_fit <- function(object, new_data, outcome = NULL, ...) {
  check_dots_unused(...)
  new_data <- node_new_data(new_data)
  check_new_data(new_data, object = object)
  out <- object$fit$outcome
  if (out$task == "regression") {
    abort_input("{.fn tabnet_nap} splits the rows by class, but the outcome is numeric.")
  }
  k <- pick_outcome(out, outcome)
  ys <- outcome_columns(object, new_data)
  if (is.null(ys)) {
    nm <- out$names[[k]]
    abort_input(c("{.fn tabnet_nap} needs the outcome {.field {nm}} in {.arg new_data}.",
                  i = "The activity is summed over the rows of each class."))
  }
  lv <- out$levels[[k]]
  codes <- class_codes(ys[[out$names[[k]]]], lv, out$names[[k]])
  model <- live_network(object)
  ds <- forge_dataset(object, new_data, model)
  parts <- run_chunks(nrow(new_data), "Activation patterns", function(start, len) {
    rs_nap(model, ds, start, codes[start + seq_len(len)], length(lv))
  })
  layers <- parts[[1]]$layer
  sums <- Reduce(function(a, b) Map(`+`, a, b), lapply(parts, `[[`, "sums"))
  new_tabnet_nap(layers, sums, lv)
}

#' @export
#' @rdname tabnet_nap
tabnet_nap.tabnet_pretrain <- function(object, new_data, ...) {
  check_supervised(object, "tabnet_nap")
}

#' @export
#' @rdname tabnet_nap
tabnet_nap.model_fit <- function(object, new_data, ...) {
  tabnet_nap(engine_fit(object), new_data, ...)
}

#' @export
#' @rdname tabnet_nap
tabnet_nap.workflow <- function(object, new_data, ...) {
  tabnet_nap(engine_fit(object), workflow_data(object, new_data), ...)
}

# RNA per layer and class from the per-class sums (classes x nodes each):
# each class's row divided by its largest node (0 when the layer is silent).
new_tabnet_nap <- function(layers, sums, levels) {
  rows <- lapply(seq_along(layers), function(l) {
    s <- sums[[l]]
    top <- apply(s, 1, max)
    rna <- s / ifelse(top > 0, top, 1)
    tibble::tibble(
      layer = layers[[l]],
      node = rep(seq_len(ncol(s)), each = nrow(s)),
      class = rep(levels, times = ncol(s)),
      rna = as.vector(rna)
    )
  })
  out <- do.call(rbind, rows)
  out$layer <- factor(out$layer, levels = layers)
  out$class <- factor(out$class, levels = levels)
  sparse <- out$rna < 0.2
  by_layer <- stats::aggregate(sparse, list(class = out$class, layer = out$layer), mean)
  overall <- stats::aggregate(sparse, list(class = out$class), mean)
  sparsity <- tibble::tibble(
    class = factor(c(as.character(overall$class), as.character(by_layer$class)), levels = levels),
    layer = c(rep("all", nrow(overall)), as.character(by_layer$layer)),
    sparsity = c(overall$x, by_layer$x)
  )
  out <- out[order(out$layer, out$class, out$node), ]
  structure(out, sparsity = sparsity, class = c("tabnet_nap", class(out)))
}

#' @export
print.tabnet_nap <- function(x, ...) {
  sp <- attr(x, "sparsity")
  all <- sp[sp$layer == "all", ]
  cat(sprintf("TabNet activation patterns: %d layers, %d nodes, %d classes\n",
              nlevels(x$layer), nrow(x) / nlevels(x$class), nlevels(x$class)))
  cat("Sparsity (share of nodes with RNA < 0.2): ",
      paste(sprintf("%s %.2f", all$class, all$sparsity), collapse = ", "), "\n", sep = "")
  print(tibble::as_tibble(unclass_nap(x)), ...)
  invisible(x)
}

unclass_nap <- function(x) {
  attr(x, "sparsity") <- NULL
  class(x) <- setdiff(class(x), "tabnet_nap")
  x
}

#' Plot neural activation patterns
#'
#' `type = "nap"` draws the NAP diagram of Khot, Neubauer & Roy (2023):
#' layers on the y axis (in network order, top to bottom), nodes on the x
#' axis sorted within each layer by the signal class's RNA, the signal's RNA
#' as a positive and the background's as a negative value on a diverging
#' palette. `type = "delta"` draws the map of \eqn{|RNA_{sig} - RNA_{bkg}|}:
#' where the classes' pathways separate.
#'
#' @param object A `tabnet_nap` result.
#' @param type `"nap"` or `"delta"`.
#' @param classes The signal and background classes (two levels); by default
#'   the first level (tidymodels' event) is the signal, the second the
#'   background.
#' @param ... Not used.
#' @return A ggplot object.
#' @method autoplot tabnet_nap
#' @export
autoplot.tabnet_nap <- function(object, type = c("nap", "delta"), classes = NULL, ...) {
  check_dots_unused(...)
  if (identical(type, c("nap", "delta"))) type <- "nap"
  type <- match_choice(type, c("nap", "delta"), "type")
  lv <- levels(object$class)
  if (is.null(classes)) classes <- lv[1:2]
  if (!is.character(classes) || length(classes) != 2 || !all(classes %in% lv) || classes[1] == classes[2]) {
    value <- format_value(classes)
    abort_input("{.arg classes} must be two different levels among {.val {lv}}, not {value}.")
  }
  d <- unclass_nap(object)
  sig <- d[d$class == classes[1], ]
  bkg <- d[d$class == classes[2], ]
  bkg <- bkg[match(paste(sig$layer, sig$node), paste(bkg$layer, bkg$node)), ]
  # each layer's nodes ranked by the signal's RNA (as the study sorts them)
  pos <- stats::ave(-sig$rna, sig$layer, FUN = function(v) rank(v, ties.method = "first"))
  sp <- attr(object, "sparsity")
  sp <- sp[sp$layer == "all", ]
  sub <- paste(sprintf("sparsity %s %.2f", sp$class, sp$sparsity), collapse = ", ")
  layer <- factor(sig$layer, levels = rev(levels(d$layer)))
  if (type == "nap") {
    long <- rbind(
      data.frame(layer = layer, rank = pos, value = sig$rna, class = classes[1]),
      data.frame(layer = layer, rank = pos, value = -bkg$rna, class = classes[2])
    )
    long$class <- factor(long$class, levels = classes)
    ggplot2::ggplot(long, ggplot2::aes(x = .data$rank, y = .data$layer, fill = .data$value)) +
      ggplot2::geom_tile() +
      ggplot2::facet_wrap(~class) +
      ggplot2::scale_fill_distiller(palette = "RdBu", limits = c(-1, 1), direction = 1,
                                    name = sprintf("RNA\n(%s < 0)", classes[2])) +
      ggplot2::labs(x = sprintf("Node (sorted by %s RNA)", classes[1]), y = NULL,
                    title = "Neural activation pattern", subtitle = sub) +
      ggplot2::theme_minimal()
  } else {
    long <- data.frame(layer = layer, rank = pos, value = abs(sig$rna - bkg$rna))
    ggplot2::ggplot(long, ggplot2::aes(x = .data$rank, y = .data$layer, fill = .data$value)) +
      ggplot2::geom_tile() +
      ggplot2::scale_fill_viridis_c(limits = c(0, 1), name = "|\u0394RNA|") +
      ggplot2::labs(x = sprintf("Node (sorted by %s RNA)", classes[1]), y = NULL,
                    title = sprintf("|RNA(%s) - RNA(%s)|", classes[1], classes[2])) +
      ggplot2::theme_minimal()
  }
}
