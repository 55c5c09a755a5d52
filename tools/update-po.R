# Message catalogue of tabnetrs's R layer (gettext domain "R-tabnetrs").
#
# Usage, from the package root (needs GNU gettext: msgmerge, msgfmt):
#
#   Rscript tools/update-po.R           extract, update po/, compile the .mo
#   Rscript tools/update-po.R --check   only check: fails if a message has no
#                                       (or a broken) French translation
#
# After adding or rewording a message in R/*.R, run `Rscript tools/update-po.R`,
# translate the new entries (empty `msgstr ""` or marked `#, fuzzy`) in
# po/R-fr.po, and run it again: it compiles inst/po/fr/LC_MESSAGES/R-tabnetrs.mo,
# which the installed package loads. Commit the three files (.pot, .po, .mo).
#
# What is extracted (see R/errors.R): the message templates passed to
# abort_input(), abort_config(), abort_model(), tabnetrs_abort(),
# tabnetrs_warn() and tabnetrs_inform() -- the first argument, each element of
# a c(...) there, both branches of an if/else, the cases of a switch(), and the
# values assigned to a variable that is passed as (an element of) a message in
# the same function -- plus the literal given to tr() or N_() anywhere. The
# msgid is the template exactly as written (glue placeholders and cli markup
# included); tabnetrs translates a template before cli interpolates it, so a
# message must reach those functions as a literal template, never assembled
# with paste() (the extraction reports such messages; tests fail on them).
#
# Messages of the Rust core (src/rust/): the template literal of every
# `msg!("...", name = value)` (see src/rust/core/src/error.rs). They use the
# same cli syntax; the R layer translates them as its own (rust_result() in
# R/errors.R), so they are in the same catalogue. Unit tests
# (`#[cfg(test)] mod tests`) and comments are not extracted.
#
# Checks (an error stops the update, before the .mo is written): every msgstr
# keeps exactly the msgid's `{...}` expressions (placeholders, cli markup such
# as `{.arg {arg}}`, `{cli::qty(n)}`), byte for byte, in any order; cli
# pluralisations (`{?s}`, `{?is/are}`) are free, but only in a msgstr whose
# msgid has one; a c-format entry (tr("... %s ...") with sprintf()) keeps its
# `%` conversions.
#
# `source("tools/update-po.R")` defines the functions without running anything
# (tests/testthat/test-translation.R uses them).

po_message_functions <- c("abort_input", "abort_config", "abort_model", "tabnetrs_abort",
                          "tabnetrs_warn", "tabnetrs_inform")
po_marker_functions <- c("tr", "N_")

# -- extraction ---------------------------------------------------------------

# All msgids of the R files in `r_dir`: a data frame (msgid, file, line,
# c_format), one row per occurrence, with attribute "dynamic": messages (or
# elements) that are not literal templates (file, line, code).
po_extract <- function(r_dir = "R", rust_dir = file.path(dirname(r_dir), "src", "rust")) {
  files <- sort(list.files(r_dir, pattern = "\\.[Rr]$", full.names = TRUE))
  found <- new.env()
  found$rows <- list()
  found$dynamic <- list()
  for (f in files) {
    rel <- file.path(basename(r_dir), basename(f))
    exprs <- parse(f, keep.source = TRUE, encoding = "UTF-8")
    refs <- attr(exprs, "srcref")
    for (i in seq_along(exprs)) {
      po_walk(exprs[[i]], refs[[i]][[1L]], ctx = list(file = rel, assigns = list(), formals = character()),
              found = found)
    }
  }
  rows <- found$rows
  out <- if (length(rows)) do.call(rbind, lapply(rows, as.data.frame, stringsAsFactors = FALSE)) else
    data.frame(msgid = character(), file = character(), line = integer(), c_format = logical())
  out <- rbind(out, po_extract_rust(rust_dir))
  out <- unique(out)
  out <- out[order(out$file, out$line), , drop = FALSE]
  rownames(out) <- NULL
  dyn <- found$dynamic
  attr(out, "dynamic") <- if (length(dyn)) unique(do.call(rbind, lapply(dyn, as.data.frame, stringsAsFactors = FALSE))) else
    data.frame(file = character(), line = integer(), code = character())
  out
}

# The templates of `msg!()` in the Rust sources under `rust_dir` (none when
# the directory is absent): a data frame as po_extract()'s.
po_extract_rust <- function(rust_dir) {
  none <- data.frame(msgid = character(), file = character(), line = integer(), c_format = logical())
  if (!dir.exists(rust_dir)) return(none)
  files <- list.files(rust_dir, pattern = "\\.rs$", recursive = TRUE, full.names = TRUE)
  files <- sort(files[!grepl("(^|/)(target|vendor|tests|examples|benches)/", files)])
  rows <- list()
  for (f in files) {
    src <- paste(readLines(f, encoding = "UTF-8", warn = FALSE), collapse = "\n")
    cut <- regexpr("#[cfg(test)]\nmod tests", src, fixed = TRUE)
    if (cut > 0) src <- substr(src, 1L, cut - 1L)
    at <- gregexpr("msg!\\(\\s*(r#)?\"", src, perl = TRUE)[[1L]]
    if (at[[1L]] < 0) next
    rel <- sub(paste0("^", normalizePath(dirname(dirname(rust_dir)), mustWork = FALSE), "/"), "",
               normalizePath(f, mustWork = FALSE))
    for (k in seq_along(at)) {
      start <- at[[k]]
      line_start <- max(c(0L, gregexpr("\n", substr(src, 1L, start), fixed = TRUE)[[1L]]))
      if (grepl("^\\s*//", substr(src, line_start + 1L, start))) next
      lit <- po_rust_string(src, start + attr(at, "match.length")[[k]] - 1L)
      line <- length(gregexpr("\n", substr(src, 1L, start), fixed = TRUE)[[1L]]) + 1L
      if (!grepl("\n", substr(src, 1L, start), fixed = TRUE)) line <- 1L
      rows[[length(rows) + 1L]] <- data.frame(msgid = lit, file = rel, line = line, c_format = FALSE,
                                              stringsAsFactors = FALSE)
    }
  }
  if (length(rows)) do.call(rbind, rows) else none
}

# The value of the Rust string literal whose opening quote is at `quote` in
# `src`: "..." with escapes (\\", \\\\, \\n, \\t, a line continuation) or r#"..."#.
po_rust_string <- function(src, quote) {
  if (substr(src, quote - 2L, quote - 1L) == "r#") {
    end <- regexpr("\"#", substring(src, quote + 1L), fixed = TRUE)
    return(substr(src, quote + 1L, quote + end - 1L))
  }
  chars <- strsplit(substring(src, quote + 1L), "")[[1L]]
  out <- character()
  i <- 1L
  while (i <= length(chars)) {
    ch <- chars[[i]]
    if (ch == "\"") break
    if (ch == "\\") {
      nx <- chars[[i + 1L]]
      if (nx == "\n") {
        i <- i + 2L
        while (i <= length(chars) && chars[[i]] %in% c(" ", "\t", "\n")) i <- i + 1L
        next
      }
      out <- c(out, switch(nx, n = "\n", t = "\t", nx))
      i <- i + 2L
      next
    }
    out <- c(out, ch)
    i <- i + 1L
  }
  paste(out, collapse = "")
}

po_call_name <- function(e) {
  h <- e[[1L]]
  if (is.call(h) && identical(h[[1L]], quote(`::`)) || is.call(h) && identical(h[[1L]], quote(`:::`))) h <- h[[3L]]
  if (is.name(h)) as.character(h) else ""
}

po_is_missing <- function(x) is.name(x) && !nzchar(as.character(x))

# Arguments of a call, without the function.
po_args <- function(e) {
  a <- as.list(e)[-1L]
  a[!vapply(a, po_is_missing, logical(1))]
}

po_add <- function(found, msgid, ctx, line, c_format = FALSE) {
  found$rows[[length(found$rows) + 1L]] <- list(msgid = msgid, file = ctx$file, line = as.integer(line),
                                                c_format = c_format)
}

po_walk <- function(e, line, ctx, found) {
  if (!is.call(e)) return(invisible())
  fn <- po_call_name(e)
  if (fn == "{") {
    refs <- attr(e, "srcref")
    for (i in seq_along(e)[-1L]) {
      l <- if (!is.null(refs) && length(refs) >= i) refs[[i]][[1L]] else line
      po_walk(e[[i]], l, ctx, found)
    }
    return(invisible())
  }
  if (fn == "function") {
    body <- e[[3L]]
    ctx$formals <- names(e[[2L]])
    ctx$assigns <- po_assigns(body, line)
    po_walk(body, line, ctx, found)
    return(invisible())
  }
  args <- po_args(e)
  if (fn %in% po_message_functions) {
    translate <- args[["translate"]] %||% args[[".translate"]]
    if (!isFALSE(translate)) {
      nm <- names(args) %||% rep("", length(args))
      msg <- if ("message" %in% nm) args[["message"]] else args[!nzchar(nm)][1L][[1L]]
      po_templates(msg, line, ctx, found, seen = character())
    }
  }
  if (fn %in% po_marker_functions && length(args) && is.character(args[[1L]])) {
    po_add(found, args[[1L]], ctx, line, c_format = fn == "tr" && grepl("%", args[[1L]], fixed = TRUE))
  }
  for (a in args) po_walk(a, line, ctx, found)
  invisible()
}

# Assignments `name <- value` in a function body (not in nested functions),
# with the line of their statement.
po_assigns <- function(e, line, acc = list()) {
  if (!is.call(e)) return(acc)
  fn <- po_call_name(e)
  if (fn == "function") return(acc)
  if (fn == "{") {
    refs <- attr(e, "srcref")
    for (i in seq_along(e)[-1L]) {
      l <- if (!is.null(refs) && length(refs) >= i) refs[[i]][[1L]] else line
      acc <- po_assigns(e[[i]], l, acc)
    }
    return(acc)
  }
  if (fn %in% c("<-", "=") && is.name(e[[2L]])) {
    acc[[length(acc) + 1L]] <- list(name = as.character(e[[2L]]), value = e[[3L]], line = line)
  }
  for (a in po_args(e)) acc <- po_assigns(a, line, acc)
  acc
}

# The templates a message expression can evaluate to.
po_templates <- function(x, line, ctx, found, seen) {
  if (is.null(x)) return(invisible())
  if (is.character(x)) {
    for (s in x) po_add(found, s, ctx, line)
    return(invisible())
  }
  if (is.name(x)) {
    nm <- as.character(x)
    hits <- Filter(function(a) identical(a$name, nm), ctx$assigns)
    if (length(hits) && !nm %in% seen) {
      for (h in hits) po_templates(h$value, h$line, ctx, found, c(seen, nm))
    } else if (!length(hits) && !nm %in% ctx$formals) {
      po_dynamic(found, ctx, line, nm)
    }
    return(invisible())
  }
  if (is.call(x)) {
    fn <- po_call_name(x)
    args <- po_args(x)
    if (fn %in% c("c", "(")) {
      for (a in args) po_templates(a, line, ctx, found, seen)
    } else if (fn == "if") {
      for (a in args[-1L]) po_templates(a, line, ctx, found, seen)
    } else if (fn == "switch") {
      for (a in args[-1L]) po_templates(a, line, ctx, found, seen)
    } else if (fn == "{") {
      if (length(args)) po_templates(args[[length(args)]], line, ctx, found, seen)
    } else if (fn %in% po_marker_functions) {
      # extracted by po_walk()
    } else {
      po_dynamic(found, ctx, line, paste(deparse(x, width.cutoff = 500L), collapse = " "))
    }
    return(invisible())
  }
  invisible()
}

po_dynamic <- function(found, ctx, line, code) {
  found$dynamic[[length(found$dynamic) + 1L]] <- list(file = ctx$file, line = as.integer(line), code = code)
}

# Messages built from pieces at run time cannot be looked up: assembled with
# paste()/sprintf()/glue(), they are errors. (A condition's own message, e.g.
# `conditionMessage(e)`, is passed on as it is.)
po_assembled <- function(dynamic) {
  dynamic[grepl("^(paste0?|sprintf|glue::glue|glue|format|gettextf)\\(", dynamic$code), , drop = FALSE]
}

# -- .pot / .po files -----------------------------------------------------------

po_escape <- function(x) {
  x <- gsub("\\", "\\\\", x, fixed = TRUE)
  x <- gsub("\"", "\\\"", x, fixed = TRUE)
  x <- gsub("\n", "\\n", x, fixed = TRUE)
  gsub("\t", "\\t", x, fixed = TRUE)
}

po_unescape <- function(x) {
  vapply(x, function(s) eval(parse(text = paste0("\"", s, "\""), keep.source = FALSE, encoding = "UTF-8")[[1L]]),
         character(1), USE.NAMES = FALSE)
}

# One entry per msgid, in order of first occurrence (files alphabetically).
po_write_pot <- function(entries, path, version = po_version()) {
  ids <- unique(entries$msgid)
  header <- c(
    "# Message catalogue of tabnetrs (R layer). Generated by tools/update-po.R: do not edit.",
    "msgid \"\"",
    "msgstr \"\"",
    sprintf("\"Project-Id-Version: tabnetrs %s\\n\"", version),
    "\"Report-Msgid-Bugs-To: \\n\"",
    "\"MIME-Version: 1.0\\n\"",
    "\"Content-Type: text/plain; charset=UTF-8\\n\"",
    "\"Content-Transfer-Encoding: 8bit\\n\"",
    ""
  )
  body <- unlist(lapply(ids, function(id) {
    occ <- entries[entries$msgid == id, , drop = FALSE]
    refs <- unique(paste0(occ$file, ":", occ$line))
    c(paste("#:", refs),
      if (any(occ$c_format)) "#, c-format",
      sprintf("msgid \"%s\"", po_escape(id)),
      "msgstr \"\"",
      "")
  }))
  con <- file(path, open = "w", encoding = "UTF-8")
  on.exit(close(con))
  writeLines(c(header, body), con, useBytes = TRUE)
  invisible(ids)
}

po_version <- function(desc = "DESCRIPTION") {
  if (file.exists(desc)) unname(read.dcf(desc, fields = "Version")[1L, 1L]) else "0"
}

# A .po file as a data frame (msgid, msgstr, fuzzy, c_format); the header and
# obsolete (#~) entries left out.
po_read <- function(path) {
  lines <- readLines(path, encoding = "UTF-8", warn = FALSE)
  out <- list()
  cur <- NULL
  field <- NULL
  flush <- function() {
    if (!is.null(cur) && !is.null(cur$msgid) && nzchar(cur$msgid)) {
      out[[length(out) + 1L]] <<- data.frame(msgid = cur$msgid, msgstr = cur$msgstr %||% "",
                                             fuzzy = "fuzzy" %in% cur$flags,
                                             c_format = "c-format" %in% cur$flags,
                                             stringsAsFactors = FALSE)
    }
    cur <<- list(flags = character())
    field <<- NULL
  }
  cur <- list(flags = character())
  for (ln in lines) {
    if (!nzchar(trimws(ln))) {
      flush()
    } else if (startsWith(ln, "#~")) {
      next
    } else if (startsWith(ln, "#,")) {
      if (!is.null(field)) flush()
      cur$flags <- c(cur$flags, trimws(strsplit(substring(ln, 3L), ",", fixed = TRUE)[[1L]]))
    } else if (startsWith(ln, "#")) {
      if (!is.null(field)) flush()
    } else if (grepl("^(msgid|msgstr|msgctxt|msgid_plural|msgstr\\[[0-9]+\\]) \"", ln)) {
      key <- sub(" .*", "", ln)
      if (key == "msgid" && !is.null(field)) flush()
      field <- key
      cur[[field]] <- po_unescape(sub("^[^ ]+ \"(.*)\"\\s*$", "\\1", ln))
    } else if (startsWith(ln, "\"") && !is.null(field)) {
      cur[[field]] <- paste0(cur[[field]], po_unescape(sub("^\"(.*)\"\\s*$", "\\1", ln)))
    }
  }
  flush()
  if (length(out)) do.call(rbind, out) else
    data.frame(msgid = character(), msgstr = character(), fuzzy = logical(), c_format = logical())
}

# -- checks ---------------------------------------------------------------------

# The top-level `{...}` expressions of a cli template (`{{` and `}}` are
# literal braces); NULL if the braces do not balance.
po_braces <- function(x) {
  ch <- strsplit(x, "", fixed = TRUE)[[1L]]
  out <- character()
  depth <- 0L
  start <- 0L
  i <- 1L
  n <- length(ch)
  while (i <= n) {
    c1 <- ch[[i]]
    c2 <- if (i < n) ch[[i + 1L]] else ""
    if (depth == 0L && c1 == "{" && c2 == "{") { i <- i + 2L; next }
    if (depth == 0L && c1 == "}" && c2 == "}") { i <- i + 2L; next }
    if (c1 == "{") {
      if (depth == 0L) start <- i
      depth <- depth + 1L
    } else if (c1 == "}") {
      if (depth == 0L) return(NULL)
      depth <- depth - 1L
      if (depth == 0L) out <- c(out, paste(ch[start:i], collapse = ""))
    }
    i <- i + 1L
  }
  if (depth != 0L) return(NULL)
  out
}

# What a translation must keep of a template: its expressions, except cli
# pluralisations (`{?s}`, `{?is/are}`), which a language words its own way
# (French may need more or fewer): only their presence counts, since cli can
# pluralise only in a message that has a quantity.
po_signature <- function(x, c_format = FALSE) {
  b <- po_braces(x)
  if (is.null(b)) return(NULL)
  plural <- startsWith(b, "{?")
  b <- c(b[!plural], if (any(plural)) "{?...}")
  if (c_format) b <- c(b, regmatches(x, gregexpr("%[-#0 +]*[0-9]*(\\.[0-9]+)?[sdifgexX%]", x))[[1L]])
  sort(b)
}

# Problems of a .po file against the msgids `ids`: a data frame (msgid,
# problem); zero rows when every msgid has a well-formed translation.
po_check <- function(po, ids) {
  probs <- list()
  add <- function(id, p) probs[[length(probs) + 1L]] <<- data.frame(msgid = id, problem = p, stringsAsFactors = FALSE)
  for (id in unique(ids)) {
    hit <- po[po$msgid == id, , drop = FALSE]
    if (!nrow(hit) || !nzchar(hit$msgstr[[1L]])) { add(id, "not translated"); next }
    if (hit$fuzzy[[1L]]) { add(id, "fuzzy (check the translation and remove the `#, fuzzy` line)"); next }
    want <- po_signature(id, hit$c_format[[1L]])
    got <- po_signature(hit$msgstr[[1L]], hit$c_format[[1L]])
    if (is.null(got)) { add(id, "the braces of the translation do not balance"); next }
    if (!identical(want[want != "{?...}"], got[got != "{?...}"]) ||
        ("{?...}" %in% got && !"{?...}" %in% want)) {
      add(id, sprintf("placeholders differ: msgid has %s, msgstr has %s",
                      paste(setdiff_multi(want, got), collapse = " "), paste(setdiff_multi(got, want), collapse = " ")))
    }
  }
  if (length(probs)) do.call(rbind, probs) else data.frame(msgid = character(), problem = character())
}

setdiff_multi <- function(a, b) {
  for (x in b) {
    k <- match(x, a)
    if (!is.na(k)) a <- a[-k]
  }
  if (length(a)) a else "nothing more"
}

`%||%` <- function(x, y) if (is.null(x)) y else x

# -- main -------------------------------------------------------------------------

po_main <- function(args = commandArgs(trailingOnly = TRUE)) {
  if (!file.exists("DESCRIPTION") || !dir.exists("R")) stop("run from the package root: Rscript tools/update-po.R")
  check_only <- "--check" %in% args
  pot <- file.path("po", "R-tabnetrs.pot")
  po <- file.path("po", "R-fr.po")
  mo <- file.path("inst", "po", "fr", "LC_MESSAGES", "R-tabnetrs.mo")
  entries <- po_extract("R")
  ids <- unique(entries$msgid)
  cat(sprintf("%d msgids in R/*.R and src/rust/ (msg!)\n", length(ids)))
  assembled <- po_assembled(attr(entries, "dynamic"))
  if (nrow(assembled)) {
    cat("Messages assembled at run time (pass complete templates instead):\n")
    cat(sprintf("  %s:%d: %s\n", assembled$file, assembled$line, assembled$code), sep = "")
    quit(status = 1)
  }
  if (!check_only) {
    dir.create("po", showWarnings = FALSE)
    po_write_pot(entries, pot)
    if (file.exists(po)) {
      status <- system2("msgmerge", c("--update", "--quiet", "--no-wrap", "--backup=none", po, pot))
    } else {
      status <- system2("msginit", c("--no-translator", "--no-wrap", "--locale=fr", "-i", pot, "-o", po))
    }
    if (status != 0) stop("msgmerge/msginit failed")
  }
  probs <- po_check(po_read(po), ids)
  broken <- probs[probs$problem != "not translated" & !startsWith(probs$problem, "fuzzy"), , drop = FALSE]
  todo <- probs[!probs$msgid %in% broken$msgid, , drop = FALSE]
  if (nrow(todo)) {
    cat(sprintf("%d entries of %s to translate:\n", nrow(todo), po))
    cat(sprintf("  %s: %s\n", todo$problem, encodeString(todo$msgid, quote = "\"")), sep = "")
  }
  if (nrow(broken)) {
    cat(sprintf("Broken translations in %s:\n", po))
    cat(sprintf("  %s\n    %s\n", encodeString(broken$msgid, quote = "\""), broken$problem), sep = "")
    quit(status = 1)
  }
  if (check_only) {
    if (nrow(todo)) quit(status = 1)
    cat("po/R-fr.po is complete\n")
    return(invisible())
  }
  dir.create(dirname(mo), recursive = TRUE, showWarnings = FALSE)
  status <- system2("msgfmt", c("--check", "--statistics", "-o", mo, po))
  if (status != 0) stop("msgfmt failed")
  cat("wrote", pot, po, mo, "\n")
  invisible()
}

if (sys.nframe() == 0L) po_main()
