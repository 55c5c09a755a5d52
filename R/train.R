# The epoch loop, driven from R so that progress output and interrupts stay
# in R; every batch runs in Rust (`rs_trainer_run()` processes a chunk of
# batches per call and never syncs with the host per batch).

# Batches per call into Rust: small enough for a responsive progress bar and
# Ctrl-C, large enough that the call overhead is nil.
batches_per_call <- 8L

is_knitting <- function() isTRUE(getOption("knitr.in.progress"))

# The learning-rate schedule lives in the Rust core (`schedule.rs`): the
# trainer steps it after each optimizer step and each epoch. Its state after
# an epoch -- the rate the next epoch starts with, optimizer steps and epochs
# taken, the reduce-on-plateau bookkeeping -- is kept per epoch
# (`fit$fit$schedule`: list(lr, steps, epochs, best, wait, settings)), so that
# resuming, also `from_epoch`, continues the schedule. A resumed fit continues
# it only if its settings are unchanged; otherwise it restarts at
# `learn_rate`.
schedule_settings <- function(config) {
  unclass(config)[c("learn_rate", "lr_scheduler", "lr_decay", "step_size")]
}

# The training options as the core's `TrainOptions` reads them (one JSON
# object). Numbers are written with 17 significant digits, so that they
# reach Rust exactly.
train_options_json <- function(config) {
  schedule <- switch(config$lr_scheduler %||% "constant",
    constant = '{"kind":"constant"}',
    step = sprintf('{"kind":"step","decay":%s,"every_epochs":%d}', json_num(config$lr_decay),
                   as.integer(config$step_size)),
    reduce_on_plateau = sprintf('{"kind":"reduce_on_plateau","decay":%s,"patience":%d}',
                                json_num(config$lr_decay), as.integer(config$step_size)),
    exponential = sprintf('{"kind":"exponential","decay":%s,"every_steps":%d}', json_num(config$lr_decay),
                          as.integer(config$step_size))
  )
  sprintf('{"batch_size":%d,"drop_last":%s,"lambda_sparse":%s,"clip_value":%s,"learn_rate":%s,"schedule":%s}',
          as.integer(config$batch_size), if (isTRUE(config$drop_last)) "true" else "false",
          json_num(config$lambda_sparse), json_num(config$clip_value), json_num(config$learn_rate), schedule)
}

# A schedule state (as stored per epoch) for the core, "" for a fresh start.
schedule_state_json <- function(state) {
  if (is.null(state)) return("")
  sprintf('{"lr":%s,"steps":%.0f,"epochs":%.0f,"best":%s,"wait":%.0f}', json_num(state$lr), state$steps,
          as.numeric(state$epochs), json_num(state$best), as.numeric(state$wait))
}

# The core's state after an epoch as stored with the fit (`best` is Inf
# before a finite best exists, as fits saved before the schedule moved to
# Rust have it).
schedule_state <- function(json, settings) {
  x <- jsonlite::fromJSON(json)
  list(lr = x$lr, steps = x$steps, epochs = as.integer(x$epochs), best = x$best %||% Inf,
       wait = as.integer(x$wait), settings = settings)
}

# A finite number with 17 significant digits (exact), or JSON null.
json_num <- function(x) {
  if (is.null(x) || !is.finite(x)) "null" else sprintf("%.17g", x)
}

# Trains `model` (a live pointer) for config$epochs epochs.
# `history` holds earlier epochs (resuming) and `schedule` their schedule
# states (`NULL`: a fresh schedule). Returns list(metrics, schedule,
# checkpoints, checkpoint_digests, best_epoch, stopped_early, interrupted,
# nonfinite). `nonfinite` is list(epoch, loss) when an epoch's loss was not
# finite: training stopped there and the model keeps the weights before it.
#
# Each metrics entry is list(train, valid, checkpoint, learn_rate, seconds): the mean
# training loss of the epoch, the validation loss after it (NULL without
# `valid_split`), whether its weights were checkpointed, the learning rate
# its first optimizer step used, and the seconds its training pass took.
train_epochs <- function(model, train_ds, valid_ds, config, history = list(), checkpoints = list(),
                         schedule = NULL, checkpoint_digests = list(), digest_of = function(w) NULL) {
  states <- schedule %||% list()
  if (length(states) != length(history)) states <- vector("list", length(history))
  state <- if (length(history)) states[[length(history)]]
  settings <- schedule_settings(config)
  if (!is.null(state) && !identical(state$settings, settings)) state <- NULL
  trainer <- rs_trainer_new(model, train_options_json(config), schedule_state_json(state))
  first <- length(history) + 1L
  metrics <- history
  monitor <- config$early_stopping_monitor
  best <- list(loss = Inf, epoch = NA_integer_, weights = NULL, wait = 0L)
  stopped_early <- FALSE
  interrupted <- FALSE
  nonfinite <- NULL
  show_bar <- config$verbose && !is_knitting() && interactive()
  status <- ""
  if (show_bar) {
    cli::cli_progress_bar("Training", total = config$epochs,
                          format = "{cli::pb_bar} {cli::pb_current}/{cli::pb_total} epochs | {status} | ETA {cli::pb_eta}",
                          .envir = environment())
  }
  epoch <- first - 1L
  # an interrupted epoch gives back the thread/allocator settings it took
  on.exit(rs_trainer_release(trainer), add = TRUE)
  tryCatch({
    for (epoch in seq.int(first, length.out = config$epochs)) {
      learn_rate <- rs_trainer_lr(trainer)
      last_finite <- rs_model_weights(model)
      started <- proc.time()[["elapsed"]]
      # (an in-memory data set or an Arrow feed: R/arrow.R)
      remaining <- epoch_begin(trainer, train_ds)
      while (remaining > 0) {
        remaining <- epoch_run(trainer, model, train_ds, batches_per_call)
        # Ctrl-C seen by Rust between two batches
        if (remaining < 0) rlang::interrupt()
      }
      train_loss <- rs_trainer_end(trainer)
      if (!is.finite(train_loss) || !rs_model_is_finite(model)) {
        # a NaN/Inf loss spreads to every weight (and the last step of an epoch
        # can break the weights with a finite loss): keep the epoch before
        rs_model_set_weights(model, last_finite)
        nonfinite <- list(epoch = epoch, loss = train_loss)
        break
      }
      seconds <- proc.time()[["elapsed"]] - started
      valid_loss <- if (is.null(valid_ds)) NULL else rs_eval_loss(model, valid_ds, inference_batch_size)
      entry <- list(train = train_loss, valid = valid_loss, checkpoint = FALSE, learn_rate = learn_rate,
                    seconds = seconds)
      if (config$checkpoint_epochs > 0 && epoch %% config$checkpoint_epochs == 0) {
        key <- paste0("epoch_", epoch)
        checkpoints[[key]] <- rs_model_weights(model)
        checkpoint_digests[[key]] <- digest_of(checkpoints[[key]])
        entry$checkpoint <- TRUE
      }
      current <- if (monitor == "valid_loss") valid_loss else train_loss

      # the schedule's epoch step (the exponential one steps per optimizer step)
      state <- schedule_state(rs_trainer_schedule_epoch(trainer, current %||% NaN), settings)
      # metrics and schedule state are recorded together, so an interrupt
      # never leaves them out of step
      metrics[[epoch]] <- entry
      states[[epoch]] <- state

      status <- sprintf("loss %.4f%s", train_loss,
                        if (is.null(valid_loss)) "" else sprintf(", valid %.4f", valid_loss))
      if (config$verbose) {
        line <- sprintf("[Epoch %03d] Loss: %.6f%s", epoch, train_loss,
                        if (is.null(valid_loss)) "" else sprintf(" Valid loss: %.6f", valid_loss))
        if (show_bar) cli::cli_progress_update(.envir = environment()) else message(line)
      }
      if (config$early_stopping) {
        # relative improvement, without dividing (a best loss of 0 is possible);
        # a NaN loss never counts as an improvement
        improved <- !is.na(current) &&
          (is.null(best$weights) || best$loss - current > config$early_stopping_tolerance * abs(best$loss))
        if (improved) {
          best <- list(loss = current, epoch = epoch, weights = rs_model_weights(model), wait = 0L)
        } else {
          best$wait <- best$wait + 1L
          if (best$wait >= config$early_stopping_patience) {
            stopped_early <- TRUE
            if (config$verbose) {
              message(sprintf(tr("Early stopping at epoch %03d; restoring the weights of epoch %03d (%s %.6f)."),
                              epoch, best$epoch, monitor, best$loss))
            }
            break
          }
        }
      }
    }
  }, interrupt = function(e) {
    interrupted <<- TRUE
    done <- length(metrics)
    tabnetrs_warn(c(
      "Training was interrupted after {done} completed epoch{?s}.",
      i = if (config$early_stopping && !is.null(best$weights)) {
        "The model keeps the weights of its best epoch ({best$epoch})."
      } else {
        "The model keeps the weights trained so far."
      }
    ))
  })
  if (show_bar) cli::cli_progress_done(.envir = environment())
  # the best epoch's weights, unless they are the last ones
  if (config$early_stopping && !is.null(best$weights) &&
      (interrupted || !is.null(nonfinite) || !identical(best$epoch, length(metrics)))) {
    rs_model_set_weights(model, best$weights)
  }
  list(metrics = metrics, schedule = states, checkpoints = checkpoints,
       checkpoint_digests = checkpoint_digests, best_epoch = best$epoch,
       stopped_early = stopped_early, interrupted = interrupted, nonfinite = nonfinite)
}

