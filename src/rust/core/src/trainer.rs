//! The mini-batch loop. Data stays in device tensors; each epoch draws one
//! permutation and slices batches by index; losses accumulate on the device
//! and are read once per call, so there is no host sync per batch.
//! The R layer drives epochs (and calls [`Trainer::run`] in chunks of batches),
//! which keeps interrupts and progress output on R's side.
use crate::adam::Adam;
use crate::data::Dataset;
use crate::encoder::Backend;
use crate::error::{invalid, Result};
use crate::model::Model;
use crate::msg;
use crate::runtime::RunSettings;
use crate::schedule::{Schedule, ScheduleState};
use serde::Deserialize;
use tch::{Kind, Tensor};

/// How a fit trains; crosses from R as one JSON object (like `NetConfig`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOptions {
    pub batch_size: i64,
    pub drop_last: bool,
    pub lambda_sparse: f64,
    /// Clip the global gradient norm at this value.
    pub clip_value: Option<f64>,
    pub learn_rate: f64,
    /// the learning-rate schedule (see [`crate::schedule`])
    pub schedule: Schedule,
}

impl TrainOptions {
    /// The options of tests and examples: batches of `batch_size` (last one
    /// kept), λ = 1e-3, learning rate 0.02, no clipping, no decay.
    pub fn example(batch_size: i64) -> TrainOptions {
        TrainOptions {
            batch_size,
            drop_last: false,
            lambda_sparse: 1e-3,
            clip_value: None,
            learn_rate: 0.02,
            schedule: Schedule::Constant,
        }
    }
}

pub struct Trainer {
    pub opts: TrainOptions,
    /// the encoder backend of every batch (the model's, [`Model::backend`])
    backend: Backend,
    opt: Adam,
    /// the schedule's state: the current rate and the steps and epochs taken
    state: ScheduleState,
    perm: Option<Tensor>,
    cursor: i64,
    n_batches: i64,
    loss_sum: Option<Tensor>,
    rows_seen: i64,
    /// process settings held from `begin_epoch` to `end_epoch` / `release`
    settings: Option<RunSettings>,
    /// the model's training-tape buffers, emptied with `release`
    tape_buffers: std::sync::Arc<crate::encoder::TapeBuffers>,
}

/// Sizes of the batches of one epoch: a last batch of fewer than two rows (or
/// any short one with `drop_last`) is left out, so batch norm never sees one row.
pub(crate) fn batch_sizes(n: i64, batch_size: i64, drop_last: bool) -> Vec<i64> {
    let b = batch_size.min(n).max(1);
    let mut sizes = vec![b; (n / b) as usize];
    let r = n % b;
    if r >= 2 && !drop_last {
        sizes.push(r);
    }
    sizes
}

impl Trainer {
    pub fn new(model: &Model, opts: TrainOptions) -> Result<Trainer> {
        if opts.batch_size < 2 {
            return invalid(msg!("{.arg batch_size} must be at least 2."));
        }
        if opts.learn_rate.is_nan() || opts.learn_rate <= 0.0 {
            return invalid(msg!("{.arg learn_rate} must be positive."));
        }
        let opt = Adam::new(&model.vs, opts.learn_rate);
        let state = ScheduleState::start(opts.learn_rate);
        Ok(Trainer {
            opts,
            backend: model.backend(),
            opt,
            state,
            perm: None,
            cursor: 0,
            n_batches: 0,
            loss_sum: None,
            rows_seen: 0,
            settings: None,
            tape_buffers: model.tape_buffers(),
        })
    }

    /// Restores the process settings taken for the epoch (see
    /// `runtime::RunSettings`) and frees the training tape's recycled
    /// buffers (see `encoder::fused::TapeBuffers`); when training ends or is
    /// abandoned half-way (an interrupt).
    pub fn release(&mut self) {
        self.settings = None;
        self.tape_buffers.clear();
    }

    /// Continues a schedule from its state after an earlier epoch (a resumed
    /// fit): the rate, and the steps and epochs it has counted.
    pub fn resume(&mut self, state: ScheduleState) -> Result<()> {
        if !(state.lr.is_finite() && state.lr > 0.0) || state.steps < 0 || state.epochs < 0 {
            return invalid(msg!("The saved learning-rate schedule state is not valid."));
        }
        self.state = state;
        self.opt.set_lr(state.lr);
        Ok(())
    }

    /// Ends an epoch for the schedule, `monitored` being the loss it watches
    /// (reduce-on-plateau); returns the state after it.
    pub fn schedule_epoch(&mut self, monitored: f64) -> ScheduleState {
        if self.opts.schedule.after_epoch(&mut self.state, monitored) {
            self.opt.set_lr(self.state.lr);
        }
        self.state
    }

    pub fn lr(&self) -> f64 {
        self.state.lr
    }

    /// Draws the epoch's permutation. Returns the number of batches.
    pub fn begin_epoch(&mut self, data: &Dataset) -> Result<i64> {
        self.start_epoch();
        self.begin_part(data)
    }

    /// Starts an epoch whose rows come in parts ([`Trainer::begin_part`] for
    /// each, e.g. the chunks of an Arrow stream): the loss accumulates over
    /// all its parts until [`Trainer::end_epoch`].
    pub(crate) fn start_epoch(&mut self) {
        self.perm = None;
        self.cursor = 0;
        self.n_batches = 0;
        self.loss_sum = None;
        self.rows_seen = 0;
    }

    /// The next part of the epoch: draws its permutation; its batches are
    /// those of a whole epoch on `data`. Returns their number.
    pub(crate) fn begin_part(&mut self, data: &Dataset) -> Result<i64> {
        if data.n < 2 {
            return invalid(msg!("Training needs at least 2 rows."));
        }
        self.perm = Some(Tensor::randperm(data.n, (Kind::Int64, data.device())));
        self.cursor = 0;
        self.n_batches =
            batch_sizes(data.n, self.opts.batch_size, self.opts.drop_last).len() as i64;
        if self.settings.is_none()
            && data.device() == tch::Device::Cpu
            && self.backend == Backend::Fused
        {
            self.settings = Some(RunSettings::enter());
        }
        Ok(self.n_batches)
    }

    /// Runs up to `max_batches` batches of the current epoch; returns how many
    /// batches remain.
    pub fn run(&mut self, model: &Model, data: &Dataset, max_batches: i64) -> Result<i64> {
        self.run_within(model, data, max_batches, None)
    }

    /// [`Trainer::run`] that also stops after the batch during which `budget`
    /// ran out (at least one batch runs): a caller that must look at something
    /// between batches on its own thread (R's interrupts) still hands the
    /// batches to the kernels' pool in one go. Returns how many batches remain.
    pub fn run_within(
        &mut self,
        model: &Model,
        data: &Dataset,
        max_batches: i64,
        budget: Option<std::time::Duration>,
    ) -> Result<i64> {
        let deadline = budget.map(|b| std::time::Instant::now() + b);
        if self.settings.is_some() {
            // the fused CPU pass: the batches on a thread of the kernels'
            // pool, so that each pass's parallel tasks start in-pool instead of
            // handing the pass to the pool and back twice per batch (measured:
            // 0.17 ms per hand-off, a tenth of a default batch at 2 threads);
            // `in_pool` puts libtorch on one thread there, as the run does
            crate::runtime::in_pool(|| {
                tch::with_grad(|| self.run_batches(model, data, max_batches, deadline))
            })
        } else {
            self.run_batches(model, data, max_batches, deadline)
        }
    }

    fn run_batches(
        &mut self,
        model: &Model,
        data: &Dataset,
        max_batches: i64,
        deadline: Option<std::time::Instant>,
    ) -> Result<i64> {
        let perm = match &self.perm {
            Some(p) => p.shallow_clone(),
            None => return invalid("begin_epoch() must be called first"),
        };
        let bs = self.opts.batch_size.min(data.n);
        let stop = (self.cursor + max_batches).min(self.n_batches);
        let first = self.cursor;
        while self.cursor < stop {
            if self.cursor > first && deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                break;
            }
            let start = self.cursor * bs;
            let len = bs.min(data.n - start);
            let batch = data.batch(&perm.narrow(0, start, len));
            let bl = model.batch_loss(&batch, true, self.opts.lambda_sparse, self.backend)?;
            let task = bl.task.shallow_clone();
            self.opt.zero_grad();
            bl.backward();
            if let Some(c) = self.opts.clip_value {
                self.opt.clip_grad_norm(c);
            }
            self.opt.step();
            let weighted = task.detach() * len as f64;
            self.loss_sum = Some(match self.loss_sum.take() {
                None => weighted,
                Some(s) => s + weighted,
            });
            self.rows_seen += len;
            self.cursor += 1;
            if self.opts.schedule.after_step(&mut self.state) {
                self.opt.set_lr(self.state.lr);
            }
        }
        Ok(self.n_batches - self.cursor)
    }

    /// Batches of the current epoch not run yet.
    pub fn remaining(&self) -> i64 {
        self.n_batches - self.cursor
    }

    /// Mean training loss of the epoch (row-weighted over batches).
    pub fn end_epoch(&mut self) -> f64 {
        self.perm = None;
        self.settings = None;
        match self.loss_sum.take() {
            Some(s) if self.rows_seen > 0 => s.double_value(&[]) / self.rows_seen as f64,
            _ => f64::NAN,
        }
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        self.tape_buffers.clear();
    }
}

/// Eval-mode loss over a whole dataset (validation), in large batches.
pub fn evaluate_loss(model: &Model, data: &Dataset, batch_size: i64) -> Result<f64> {
    tch::no_grad(|| {
        let mut total = 0.0;
        let mut weight = 0.0;
        let mut start = 0;
        while start < data.n {
            let len = batch_size.min(data.n - start);
            let b = data.slice(start, len);
            let task = model.batch_loss(&b, false, 0.0, model.backend())?.task;
            let wsum = match &b.w {
                Some(w) => w.sum(Kind::Float).double_value(&[]),
                None => len as f64,
            };
            total += task.double_value(&[]) * wsum;
            weight += wsum;
            start += len;
        }
        Ok(total / weight)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tape's recycled buffers hold whatever the last batch left: a pass
    /// must write every value before it reads it. Training from the same
    /// weights on the same batches with the store first filled with NaN
    /// buffers (any value read before written would spread NaN) gives the same
    /// bits, over two epochs whose short last batch (88 rows) views larger
    /// buffers; and the trainer frees the store on `release`.
    #[test]
    fn recycled_tape_buffers_never_change_a_step() {
        use crate::config::{NetConfig, Task};
        use tch::Device;
        let n = 600usize;
        let cfg = NetConfig::example(6, vec![2], Task::Classification);
        let x = crate::test_data::normal(&[6, n as i64], 11);
        let cols: Vec<Vec<f64>> = (0..6).map(|j| Vec::<f64>::from(&x.get(j))).collect();
        let y: Vec<i32> = (0..n)
            .map(|r| (cols[0][r] + cols[1][r] > 0.0) as i32)
            .collect();
        let data = Dataset::classes_example(&cfg, &cols, &y).unwrap();
        let start = Model::new(cfg.clone(), Device::Cpu)
            .unwrap()
            .to_bytes()
            .unwrap();
        let opts = TrainOptions::example(256);
        // a new model each time (a parameter's existing .grad() is added to
        // in place, a first one comes through autograd: other roundings)
        let run = |poison: bool| {
            let mut model = Model::new(cfg.clone(), Device::Cpu).unwrap();
            model.load_bytes(&start).unwrap();
            assert_eq!(model.backend(), Backend::Fused);
            let mut t = Trainer::new(&model, opts.clone()).unwrap();
            if poison {
                let nan = || Tensor::full(&[256 * 64], f64::NAN, (Kind::Float, Device::Cpu));
                t.tape_buffers.give((0..200).map(|_| nan()).collect());
            }
            let mut losses = Vec::new();
            for _ in 0..2 {
                t.begin_epoch(&data).unwrap();
                // the same batches in both runs (no draw from libtorch's
                // process-wide RNG, which parallel tests share)
                t.perm = Some(Tensor::arange(n as i64, (Kind::Int64, Device::Cpu)).flip(&[0]));
                t.run(&model, &data, i64::MAX).unwrap();
                losses.push(t.end_epoch());
            }
            assert!(
                t.tape_buffers.held() > 0,
                "the store keeps buffers between epochs"
            );
            t.release();
            assert_eq!(t.tape_buffers.held(), 0);
            (model.to_bytes().unwrap(), losses)
        };
        let (clean, clean_losses) = run(false);
        let (poisoned, poisoned_losses) = run(true);
        assert!(clean_losses.iter().all(|l| l.is_finite()));
        assert_eq!(clean_losses, poisoned_losses);
        assert!(clean == poisoned, "weights differ with recycled buffers");
    }

    #[test]
    fn no_batch_of_one_row() {
        assert_eq!(batch_sizes(10, 3, false), vec![3, 3, 3]);
        assert_eq!(batch_sizes(11, 3, false), vec![3, 3, 3, 2]);
        assert_eq!(batch_sizes(11, 3, true), vec![3, 3, 3]);
        assert_eq!(batch_sizes(5, 1024, false), vec![5]);
    }
}
