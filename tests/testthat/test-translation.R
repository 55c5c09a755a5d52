# Translations (po/R-fr.po, compiled to inst/po/fr/LC_MESSAGES/R-tabnetrs.mo):
# messages come out in the user's language, with their classes and values;
# in English they are unchanged; the catalogue covers every message.

# Runs `code` with R's messages in `lang`. withr::local_language() sets
# LANGUAGE and resets LC_MESSAGES, which empties gettext's cache of the
# catalogues already read.
in_language <- function(lang, code) {
  withr::local_language(lang)
  code
}

skip_if_no_nls <- function() {
  skip_if_not(capabilities("NLS"), "R was built without NLS")
  skip_if(identical(Sys.getenv("LANG"), "C") || identical(Sys.getenv("LC_ALL"), "C"),
          "the C locale shows no translations")
}

# The first error, warning or message `expr` signals, in French.
fr_condition <- function(expr) {
  keep <- function(c) c
  in_language("fr", tryCatch(expr, error = keep, warning = keep, message = keep))
}

test_that("errors come out in French, with their class and values", {
  skip_if_no_nls()
  e <- fr_condition(tabnet_config(epochs = -1))
  expect_s3_class(e, "tabnetrs_error_config")
  expect_match(conditionMessage(e), "`epochs` doit être un nombre entier >= 0, et non -1.", fixed = TRUE)

  d <- data.frame(x = c(1, 2, 3), y = c(1, 2, 3))
  e <- fr_condition(tabnet_fit(y ~ ., d[0, ]))
  expect_s3_class(e, "tabnetrs_error_input")
  expect_match(conditionMessage(e), "Les données d'entraînement n'ont aucune ligne.", fixed = TRUE)
  expect_identical(conditionCall(e)[[1]], quote(tabnet_fit))

  # a bullet (i) and a ranged value
  e <- fr_condition(tabnet_config(epochs = 3e9))
  expect_match(conditionMessage(e), "doit valoir au plus 2147483647, et non 3000000000", fixed = TRUE)
  expect_match(conditionMessage(e), "C'est le plus grand entier que R puisse représenter.", fixed = TRUE)
  e <- fr_condition(tabnet_config(momentum = 1.5))
  expect_match(conditionMessage(e), "`momentum` doit être un nombre fini dans (0, 1], et non 1.5.", fixed = TRUE)

  # cli's list words are translated too ("ou", not "or")
  e <- fr_condition(tabnet_config(mask_type = "softmax"))
  expect_s3_class(e, "tabnetrs_error_config")
  expect_match(conditionMessage(e), '"sparsemax", "entmax", "sparsemax15" ou "entmax15", et non "softmax"', fixed = TRUE)
  # format_value()'s words
  e <- fr_condition(tabnet_config(epochs = 1:10))
  expect_match(conditionMessage(e), "et non un vecteur integer de longueur 10.", fixed = TRUE)
})

test_that("a configuration error from an option is in French", {
  skip_if_no_nls()
  withr::local_options(tabnetrs.threads = "many")
  e <- fr_condition(tabnetrs:::resolve_threads())
  expect_s3_class(e, "tabnetrs_error_config")
  expect_match(conditionMessage(e),
               "L'option `tabnetrs.threads` doit être un nombre entier de threads >= 1, et non \"many\".",
               fixed = TRUE)
  expect_match(conditionMessage(e), "Fixez-la par exemple avec `options(tabnetrs.threads = 2)`", fixed = TRUE)
})

test_that("the capped-threads message is in French", {
  skip_if_no_nls()
  cores <- tabnetrs:::machine_cores()
  m <- fr_condition(tabnet_config(num_threads = cores + 1000))
  expect_s3_class(m, "tabnetrs_message")
  expect_match(conditionMessage(m),
               sprintf("`num_threads` = %d est limité à %d cœur", cores + 1000, cores), fixed = TRUE)
  expect_match(conditionMessage(m), "le nombre de cœurs de la machine", fixed = TRUE)
})

test_that("a warning is in French", {
  skip_if_no_nls()
  d <- mixed_data(200)
  fit <- withr::with_seed(1, tabnet_fit(cls ~ num1 + grp, d, epochs = 1))
  new <- d[1:3, ]
  new$grp <- factor(c("a", "zzz", "b"))
  w <- fr_condition(predict(fit, new))
  expect_s3_class(w, "tabnetrs_warning")
  expect_match(conditionMessage(w), "Niveaux de facteur absents lors de l'ajustement dans grp.", fixed = TRUE)
  expect_match(conditionMessage(w), "traités comme des valeurs manquantes", fixed = TRUE)
})

test_that("messages from the Rust core are in French too", {
  skip_if_no_nls()
  d <- syn2_data(50)
  d$V04[2] <- Inf
  e <- fr_condition(tabnet_fit(y ~ ., d, epochs = 1))
  expect_s3_class(e, "tabnetrs_error_input")
  expect_match(conditionMessage(e), "Le prédicteur V04 contient des valeurs infinies.", fixed = TRUE)
  expect_identical(conditionCall(e)[[1]], quote(tabnet_fit))
  # and in English, the core's text
  e <- in_language("en", tryCatch(tabnet_fit(y ~ ., d, epochs = 1), error = function(e) e))
  expect_match(conditionMessage(e), "Predictor V04 contains infinite values.", fixed = TRUE)
})

test_that("in English the messages are unchanged", {
  skip_if_no_nls()
  e <- in_language("en", tryCatch(tabnet_config(epochs = -1), error = function(e) e))
  expect_s3_class(e, "tabnetrs_error_config")
  expect_match(conditionMessage(e), "`epochs` must be a whole number >= 0, not -1.", fixed = TRUE)
  e <- in_language("en", tryCatch(tabnet_config(mask_type = "softmax"), error = function(e) e))
  expect_match(conditionMessage(e), '"sparsemax", "entmax", "sparsemax15", or "entmax15", not "softmax"', fixed = TRUE)
  m <- in_language("en", tryCatch(tabnet_config(num_threads = tabnetrs:::machine_cores() + 1000),
                                  message = function(m) m))
  expect_match(conditionMessage(m), "is capped at the machine's", fixed = TRUE)
  # and French does not stick once the language is back
  expect_match(in_language("fr", tryCatch(tabnet_config(epochs = -1), error = conditionMessage)), "doit")
  expect_match(in_language("en", tryCatch(tabnet_config(epochs = -1), error = conditionMessage)), "must be")
})

# -- the catalogue covers every message -------------------------------------------

po_tool <- function() {
  root <- test_path("..", "..")
  tool <- file.path(root, "tools", "update-po.R")
  # the package sources (R CMD check runs the tests from a copy without them)
  skip_if_not(file.exists(tool) && dir.exists(file.path(root, "po")) && dir.exists(file.path(root, "R")),
              "package sources (R/, po/, tools/) not found")
  env <- new.env()
  sys.source(tool, envir = env)
  env$root <- root
  env
}

fix_hint <- "run `Rscript tools/update-po.R` and translate the new entries in po/R-fr.po"

test_that("every message has a French translation with the same placeholders", {
  po <- po_tool()
  entries <- po$po_extract(file.path(po$root, "R"))
  ids <- unique(entries$msgid)
  expect_gt(length(ids), 100)
  # the Rust core's templates (`msg!()`) are in the same catalogue
  rust <- entries[startsWith(entries$file, "src/rust/"), , drop = FALSE]
  expect_gt(nrow(rust), 50)
  expect_true("Predictor {.field {name}} contains infinite values." %in% rust$msgid)
  assembled <- po$po_assembled(attr(entries, "dynamic"))
  expect(nrow(assembled) == 0,
         paste0("messages assembled at run time cannot be translated; pass complete templates:\n",
                paste0("  ", assembled$file, ":", assembled$line, ": ", assembled$code, collapse = "\n")))
  probs <- po$po_check(po$po_read(file.path(po$root, "po", "R-fr.po")), ids)
  expect(nrow(probs) == 0,
         paste0(nrow(probs), " message(s) without a proper French translation (", fix_hint, "):\n",
                paste0("  ", probs$problem, ": ", encodeString(probs$msgid, quote = "\""), collapse = "\n")))
  pot <- po$po_read(file.path(po$root, "po", "R-tabnetrs.pot"))
  expect(setequal(pot$msgid, ids), paste0("po/R-tabnetrs.pot is out of date: ", fix_hint, "."))
})

test_that("the installed catalogue is the compiled po/R-fr.po", {
  skip_if_no_nls()
  po <- po_tool()
  fr <- po$po_read(file.path(po$root, "po", "R-fr.po"))
  fr <- fr[!fr$fuzzy & nzchar(fr$msgstr), , drop = FALSE]
  got <- in_language("fr", gettext(fr$msgid, domain = "R-tabnetrs", trim = FALSE))
  stale <- fr$msgid[got != fr$msgstr]
  expect(length(stale) == 0,
         paste0(length(stale), " translation(s) not in the installed .mo (", fix_hint,
                ", then reinstall): ", paste(encodeString(utils::head(stale, 5), quote = "\""), collapse = ", ")))
})

test_that("the placeholder check catches a changed placeholder", {
  po <- po_tool()
  fr <- data.frame(msgid = c("{.arg {arg}} must be {value}.", "Column{?s} {.field {x}}.", "No {n}.", "a %s of %d"),
                   msgstr = c("{.arg {argument}} doit être {value}.", "{?La colonne/Les colonnes} {.field {x}}.",
                              "Aucun {n} {?s}.", "un %s de %s"),
                   fuzzy = FALSE, c_format = c(FALSE, FALSE, FALSE, TRUE))
  probs <- po$po_check(fr, fr$msgid)
  expect_setequal(probs$msgid, fr$msgid[c(1, 3, 4)])
  expect_match(probs$problem[probs$msgid == fr$msgid[1]], "{arg}", fixed = TRUE)
  expect_equal(nrow(po$po_check(fr[2, ], fr$msgid[2])), 0)
  expect_equal(po$po_check(fr[0, ], "new message")$problem, "not translated")
})
