# Hierarchical outcomes: a data.tree `Node` whose leaves are the rows (their
# attributes the predictors) and whose levels between the root and the leaves
# are the outcomes. The model is C-HMCNN (Giunchiglia & Lukasiewicz, 2020):
# one sigmoid output per node of every outcome level, the max constraint
# (MCM) in training and prediction, so a node is never less probable than
# any of its descendants.

#' Turn a data.tree Node into predictors and hierarchical outcomes
#'
#' Every leaf of `x` is one row. Its attributes (`x$attributesAll`) are the
#' predictors (character attributes become factors; an attribute holding
#' several values, such as starwars' `films`, becomes one string `"u, v"`, a
#' factor level, as `data.tree::ToDataFrameTypeCol()` gives it); the levels of its path
#' below the root are the outcomes `level_2`, `level_3`, ...: one factor per
#' level, whose levels are the nodes of that depth. The root (`level_1`, one
#' value) is never an outcome; the leaves (the row identifiers) are not one
#' either unless `drop_last_level = FALSE`.
#'
#' A node's class label is its name, or, when several nodes of the same depth
#' have that name (say `Tatooine` under both `Human` and `Droid`), its path
#' below the root (`Human/Tatooine`): the outcome levels name the nodes of the
#' tree, so each class of a level has exactly one parent class at the level
#' above.
#'
#' All leaves must be at the same depth (the tabnet package gives a missing
#' outcome for the levels a shallower leaf lacks); extend shallower paths, for
#' instance by repeating their last node's name, so that every leaf sits at
#' the same depth.
#'
#' @param x A `data.tree` `Node`, checked with [check_compliant_node()].
#' @param drop_last_level `TRUE` (the default) to leave the leaf level out of
#'   the outcomes; `FALSE` keeps it as the last outcome level.
#' @return A list of two tibbles with one row per leaf: `x`, the predictors,
#'   and `y`, the outcomes `level_2`, ... (factors).
#' @seealso [tabnet_fit()] (the `Node` method fits them).
#' @examplesIf rlang::is_installed("data.tree")
#' library(data.tree)
#' data(acme, package = "data.tree")
#' node_to_df(acme)
#' @export
node_to_df <- function(x, drop_last_level = TRUE) {
  rlang::check_installed("data.tree", reason = "for hierarchical outcomes.")
  if (!inherits(x, "Node")) {
    abort_input("{.arg x} must be a {.cls Node} of the {.pkg data.tree} package, not {.obj_type_friendly {x}}.")
  }
  if (!rlang::is_bool(drop_last_level)) {
    abort_input("{.arg drop_last_level} must be {.val TRUE} or {.val FALSE}.")
  }
  check_compliant_node(x)
  tree <- node_paths(x)
  first <- 2L
  last <- if (drop_last_level) tree$depth - 1L else tree$depth
  y <- lapply(first:last, function(k) factor(tree$labels[, k]))
  names(y) <- paste0("level_", first:last)
  list(x = tibble::as_tibble(node_attributes(x, tree$leaves)), y = tibble::as_tibble(y))
}

#' Check that a data.tree Node can be used as a hierarchical outcome
#'
#' The names `level_1` ... `level_<depth>` (one per level of the tree) are
#' those of the outcomes [node_to_df()] makes (a `level_<N>` attribute with
#' `N` beyond the tree's depth is a predictor like any other), and
#' data.tree reserves names such as `name` and `height` for its own fields
#' (`data.tree::NODE_RESERVED_NAMES_CONST`): no attribute may use them. The
#' tree needs a root, at least one outcome level and the leaves (the rows),
#' so a depth of at least 3, with every leaf at the same depth.
#'
#' @param node A `data.tree` `Node`, or a data frame with a `pathString`
#'   column, ready for `data.tree::as.Node()` (its other column names are
#'   checked).
#' @return `node`, invisibly, when it is compliant; otherwise an error (class
#'   `tabnetrs_error_input`) naming what to change.
#' @examplesIf rlang::is_installed("data.tree") && rlang::is_installed("dplyr")
#' library(data.tree)
#' data(starwars, package = "dplyr")
#' sw <- dplyr::mutate(starwars, pathString = paste("tree", species, homeworld, name, sep = "/"))
#' # `name` and `height` are data.tree's own names
#' try(check_compliant_node(sw[c("name", "height", "mass", "pathString")]))
#' check_compliant_node(data.tree::as.Node(sw[c("mass", "pathString")]))
#' @export
check_compliant_node <- function(node) {
  rlang::check_installed("data.tree", reason = "for hierarchical outcomes.")
  if (inherits(node, "Node")) {
    attrs <- node$attributesAll
    depth <- node_paths(node)$depth
  } else if (is.data.frame(node) && "pathString" %in% names(node)) {
    attrs <- setdiff(names(node), "pathString")
    depth <- max(lengths(strsplit(as.character(node$pathString), "/", fixed = TRUE)))
  } else {
    abort_input(c("{.arg node} must be a {.cls Node} of the {.pkg data.tree} package or a data frame with a {.field pathString} column, not {.obj_type_friendly {node}}."))
  }
  # only the levels the tree has clash with the outcomes (`level_4` on a tree
  # of depth 3 is a predictor)
  reserved <- attrs[attrs %in% paste0("level_", seq_len(depth)) | attrs %in% data.tree::NODE_RESERVED_NAMES_CONST]
  if (length(reserved)) {
    abort_input(c("{cli::qty(length(reserved))}The attribute{?s} {.field {reserved}} {?uses a/use} reserved name{?s}.",
                  i = "Names {.field level_1} to {.field level_{depth}} are those of the levels of this tree (the hierarchical outcomes), and {.pkg data.tree} reserves names such as {.field name} and {.field height} (see {.code data.tree::NODE_RESERVED_NAMES_CONST}).",
                  i = "{cli::qty(length(reserved))}Rename {?it/them} before building the tree."))
  }
  needed <- 3L
  if (depth < needed) {
    abort_input(c("The tree has {depth} level{?s}; hierarchical outcomes need at least {needed}.",
                  i = "Its levels are the root, the outcome levels and the leaves (one per row), so the leaves must be at depth {needed} or more."))
  }
  invisible(node)
}

# The leaves of `node` and their paths: list(leaves, depth, labels), labels
# being a (leaves x depth) character matrix of class labels (see node_to_df()).
node_paths <- function(node) {
  leaves <- if (node$isLeaf) list(node) else node$leaves
  paths <- lapply(leaves, function(l) as.character(l$path))
  depths <- lengths(paths)
  if (length(unique(depths)) > 1L) {
    deepest <- max(depths)
    short <- vapply(leaves[depths < deepest], function(l) l$name, character(1))
    n_short <- length(short)
    short <- utils::head(short, 5L)
    abort_input(c("All leaves of the tree must be at the same depth.",
                  x = "{n_short} lea{?f is/ves are} above depth {deepest}, such as {.val {short}}.",
                  i = "Extend the shorter paths (for instance by repeating their last node's name) so that every leaf is at depth {deepest}."))
  }
  depth <- depths[[1L]]
  m <- matrix(unlist(paths, use.names = FALSE), ncol = depth, byrow = TRUE)
  labels <- m
  for (k in seq_len(depth)[-1L]) {
    key <- if (k == 2L) m[, 2L] else apply(m[, 2:k, drop = FALSE], 1L, paste, collapse = "/")
    # a name shared by several nodes of this depth: those nodes get their path
    shared <- tapply(key, m[, k], function(v) length(unique(v)) > 1L)
    labels[, k] <- ifelse(as.vector(shared[m[, k]]), key, m[, k])
  }
  list(leaves = leaves, depth = depth, labels = labels)
}

# The attributes of the leaves, one column each (characters as factors). An
# attribute holding several values (starwars' `films`) becomes one string
# "u, v", as `data.tree::ToDataFrameTypeCol()` and the tabnet package give it
# (so a factor level), an empty one NA.
node_attributes <- function(node, leaves) {
  cols <- lapply(stats::setNames(nm = node$attributesAll), function(a) {
    v <- lapply(leaves, function(l) {
      x <- l[[a]]
      # (a list column of as.Node()'s data frame arrives as a list of one vector)
      if (is.list(x) && !is.object(x)) x <- unlist(x, use.names = FALSE)
      if (is.null(x) || !length(x)) return(NA)
      if (is.atomic(x) && length(x) > 1L) x <- toString(x)
      x
    })
    if (all(vapply(v, function(x) is.atomic(x) && length(x) == 1L, logical(1)))) {
      v <- unlist(v, use.names = FALSE)
      if (is.character(v)) v <- factor(v)
    }
    v
  })
  if (!length(cols)) {
    abort_input(c("The leaves of the tree have no attributes, so there is no predictor.",
                  i = "Predictors are the leaves' attributes, e.g. the columns other than {.field pathString} given to {.code data.tree::as.Node()}."))
  }
  cols
}

# The hierarchy of node_to_df()'s outcomes: for every class of every level
# (concatenated in level order), the 0-based index of its parent class at the
# level above, NA for the top level.
outcome_hierarchy <- function(outcomes) {
  levels <- lapply(outcomes, levels)
  offsets <- c(0L, cumsum(lengths(levels, use.names = FALSE)))
  parent <- rep(NA_integer_, offsets[[length(offsets)]])
  for (k in seq_along(outcomes)[-1L]) {
    child <- as.integer(outcomes[[k]])
    above <- as.integer(outcomes[[k - 1L]])
    for (c in seq_along(levels[[k]])) {
      p <- unique(above[child == c])
      if (length(p) != 1L) {
        abort_input(c("The outcome {.field {names(outcomes)[[k]]}} is not a level of a tree: its class {.val {levels[[k]][[c]]}} has {length(p)} parent classes in {.field {names(outcomes)[[k - 1L]]}}.",
                      i = "Fit hierarchical outcomes through the {.cls Node} method of {.fn tabnet_fit}."))
      }
      parent[offsets[[k]] + c] <- offsets[[k - 1L]] + p - 1L
    }
  }
  parent
}

# Prediction of a hierarchical model: the class of each level chosen
# top-down (the most probable class of the top level, then the most probable
# child of the class chosen above), so that every predicted path is a path of
# the tree. `prob` is the n x nodes matrix of MCM probabilities.
top_down_classes <- function(prob, outcome) {
  offsets <- c(0L, cumsum(outcome$dims))
  chosen <- NULL
  classes <- vector("list", length(outcome$dims))
  for (k in seq_along(outcome$dims)) {
    idx <- offsets[[k]] + seq_len(outcome$dims[[k]])
    p <- prob[, idx, drop = FALSE]
    if (!is.null(chosen)) {
      allowed <- outer(chosen, outcome$parent[idx], "==")
      allowed[is.na(allowed)] <- FALSE
      # (a class without children only comes from a hand-made hierarchy)
      none <- rowSums(allowed) == 0
      allowed[none, ] <- TRUE
      p[!allowed] <- -Inf
    }
    pick <- max.col(p, ties.method = "first")
    chosen <- offsets[[k]] + pick - 1L
    lv <- outcome$levels[[k]]
    classes[[k]] <- factor(lv[pick], levels = lv)
  }
  names(classes) <- outcome$names
  classes
}

# A Node given as `new_data` (prediction, explanation, importance): its leaves
# as one data frame of predictors and outcome levels (node_to_df()).
node_new_data <- function(new_data) {
  # Arrow data (tabnet_arrow()) is read into a data frame (R/arrow.R)
  if (inherits(new_data, "tabnet_arrow")) return(arrow_as_data_frame(new_data))
  if (!inherits(new_data, "Node")) return(new_data)
  xy <- node_to_df(new_data)
  vctrs::vec_cbind(xy$x, xy$y)
}
