//! TorchScript export of a supervised network, for evaluation without tabnetrs.
//!
//! The module is traced (`CModule::create_by_tracing`) through the reference
//! layers (libtorch ops, [`Backend::Autograd`], batch norm on its running
//! statistics), never the fused CPU kernels, whose work is invisible to the
//! tracer. Its `forward(x)` takes one float32 tensor (n, F) of the predictors
//! in the original column order, factors as their 1-based level codes, NaN
//! where a value is missing, and returns what `predict()` returns: the
//! probabilities (softmax per outcome) or the values, (n, output_dim).
//!
//! The graph reproduces the data preparation of [`crate::data`] and
//! [`crate::network`] row by row:
//! * numeric NaN → 0, and the column is absent from the row's prior;
//! * a factor code in 1..=levels is that level; NaN (R's NA) and any other
//!   value (0, a code beyond the levels, a fraction: a level unseen at fit
//!   time) is missing: the unknown slot 0, absent from the prior. This is what
//!   `predict()` does, where hardhat turns an unseen level into NA;
//! * the initial prior is the row's presence, pooled over attention groups.
//!
//! (The core builds the presence mask only when a data set has a missing
//! value, and uses ones otherwise: for a row, ones is its presence when
//! nothing in it is missing, so computing it always gives the same rows.)
//!
//! Nothing in the traced graph depends on the tracing example's values or
//! row count: the sparsemax / entmax supports come from sort + cumsum +
//! comparisons ([`mask::traceable`]), where the Rust per-row sort would be a
//! frozen constant, and no row count is read from a tensor.
//!
//! The file is libtorch's zip archive; `metadata` (JSON, written by the
//! caller) is added to it as the extra file `extra/tabnetrs.json`, which
//! Python reads with `torch.jit.load(path, _extra_files={"tabnetrs.json": ""})`.
use crate::config::{NetConfig, Task};
use crate::data::Batch;
use crate::encoder::Backend;
use crate::error::{invalid, torch_message, Error, Result};
use crate::loss;
use crate::mask;
use crate::model::Model;
use crate::msg;
use std::path::Path;
use tch::{CModule, Device, Kind, Tensor};

/// Name of the metadata entry (under the archive's `extra/`).
pub(crate) const METADATA_FILE: &str = "tabnetrs.json";

/// The constant tensors of the input preparation. They are made before
/// tracing starts: a tensor made from Rust data while tracing is recorded as
/// an uninitialised allocation (the copy of the data is invisible to the
/// tracer), so it would reach the module as zeros.
struct InputMaps {
    /// Input columns of the numeric predictors, in tensor order.
    num: Tensor,
    /// Input columns of the factors, in tensor order.
    cat: Tensor,
    /// (1, n_cat) number of levels of each factor.
    levels: Tensor,
}

impl InputMaps {
    fn new(cfg: &NetConfig) -> InputMaps {
        let index =
            |cols: &[usize]| Tensor::of_slice(&cols.iter().map(|&c| c as i64).collect::<Vec<_>>());
        let levels: Vec<f32> = cfg.cat_levels.iter().map(|&l| l as f32).collect();
        InputMaps {
            num: index(&cfg.num_cols),
            cat: index(&cfg.cat_cols),
            levels: Tensor::of_slice(&levels).view([1, -1]),
        }
    }
}

/// The evaluation function the module records: (n, F) float32 → outputs.
/// `model` must be a supervised CPU model whose weights need no gradient.
fn evaluate(model: &Model, maps: &InputMaps, x: &Tensor) -> Result<Tensor> {
    let net = model.supervised()?;
    let cfg = &model.cfg;
    let mut present = x.isnan().logical_not().to_kind(Kind::Float);
    let x_num = x.index_select(1, &maps.num);
    let x_num = x_num.masked_fill(&x_num.isnan(), 0.0);
    let x_cat = if cfg.cat_cols.is_empty() {
        None
    } else {
        let codes = x.index_select(1, &maps.cat);
        // NaN fails every comparison, so it is not a known code either
        let known = codes
            .ge(1.0)
            .logical_and(&codes.le_tensor(&maps.levels))
            .logical_and(&codes.eq_tensor(&codes.floor()));
        // a factor is present only with a known level (unseen = missing)
        present = present.index_copy(1, &maps.cat, &known.to_kind(Kind::Float));
        Some(codes.where_scalarother(&known, 0.0).to_kind(Kind::Int64))
    };
    let batch = Batch {
        x_num,
        x_cat,
        present: Some(present),
        y: None,
        w: None,
    };
    let (out, _, _) = mask::traceable(|| net.forward(&batch, false, Backend::Autograd));
    Ok(loss::activate(cfg, &out))
}

/// A copy of `model` on the CPU whose weights are plain constants (a traced
/// graph can only hold tensors that need no gradient).
fn frozen_copy(model: &Model) -> Result<Model> {
    let bytes = model.to_bytes()?;
    let mut copy = Model::load(model.cfg.clone(), None, &bytes, Device::Cpu)?;
    copy.vs.freeze();
    Ok(copy)
}

/// A deterministic input of `rows` rows (no use of libtorch's RNG, which
/// belongs to the session): spread numeric values, every factor code from 0
/// to levels + 1 in turn, a NaN in each column and a row of zeros.
pub(crate) fn example_input(cfg: &NetConfig, rows: usize, salt: u64) -> Tensor {
    let f = cfg.n_features();
    let mut state = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        // xorshift64*: uniform in [-3, 3)
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        (6.0 * u - 3.0) as f32
    };
    let mut x: Vec<f32> = (0..rows * f).map(|_| next()).collect();
    for (k, &c) in cfg.cat_cols.iter().enumerate() {
        let span = cfg.cat_levels[k] + 2;
        for r in 0..rows {
            x[r * f + c] = ((r + k) % span) as f32;
        }
    }
    for j in 0..f {
        x[(j % rows) * f + j] = f32::NAN;
    }
    if rows > f + 1 {
        for v in &mut x[(rows - 1) * f..] {
            *v = 0.0;
        }
    }
    Tensor::of_slice(&x).view([rows as i64, f as i64])
}

/// Traces `model` (a supervised network) and writes the TorchScript module to
/// `path`, with `metadata` as the archive's extra file [`METADATA_FILE`].
/// The written file is loaded back and checked against the model's own
/// inference on fresh inputs (other values and row counts than the trace's).
pub fn export(model: &Model, path: &Path, metadata: &str) -> Result<()> {
    model.supervised()?;
    if model.cfg.task == Task::Hierarchical {
        return invalid(msg!(
            "A hierarchical model (fitted on a data.tree {.cls Node}) cannot be exported: its constrained probabilities are not traced."
        ));
    }
    let copy = frozen_copy(model)?;
    let cfg = &copy.cfg;
    let example = example_input(cfg, 5, 0);
    let maps = InputMaps::new(cfg);
    let mut failure = None;
    let module = tch::no_grad(|| {
        CModule::create_by_tracing(
            "TabNet",
            "forward",
            &[example],
            &mut |inputs| match evaluate(&copy, &maps, &inputs[0]) {
                Ok(out) => vec![out],
                Err(e) => {
                    failure = Some(e);
                    vec![inputs[0].shallow_clone()]
                }
            },
        )
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    module.save(path).map_err(|e| {
        Error::Invalid(msg!(
            "The module cannot be written to {.file {path}} ({reason}).",
            path = path.display().to_string(),
            reason = torch_message(&e)
        ))
    })?;
    add_metadata(path, metadata)?;
    verify(&copy, path)
}

/// Appends `extra/<METADATA_FILE>` under the archive's own prefix (libtorch
/// reads every record as `<prefix>/<name>`), stored uncompressed like the rest.
fn add_metadata(path: &Path, metadata: &str) -> Result<()> {
    use std::io::Write;
    let zip_err = |e: zip::result::ZipError| Error::Io(std::io::Error::other(e.to_string()));
    let prefix = {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(path)?).map_err(zip_err)?;
        let first = archive.by_index_raw(0).map_err(zip_err)?.name().to_string();
        match first.split_once('/') {
            Some((p, _)) => p.to_string(),
            None => {
                return Err(Error::Io(std::io::Error::other(
                    "unexpected TorchScript archive layout",
                )))
            }
        }
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut w = zip::ZipWriter::new_append(file).map_err(zip_err)?;
    let options =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file(format!("{prefix}/extra/{METADATA_FILE}"), options)
        .map_err(zip_err)?;
    w.write_all(metadata.as_bytes())?;
    w.finish().map_err(zip_err)?;
    Ok(())
}

/// Loads the written module and compares it with the model's inference
/// (the default backend: fused kernels, Rust supports) on rows the trace
/// never saw. Both compute in float32 from the same weights, in different
/// orders of summation: 1e-4 on probabilities and values of order one leaves
/// a margin of ~100 over the float32 differences seen (~1e-6).
fn verify(model: &Model, path: &Path) -> Result<()> {
    let loaded = CModule::load(path).map_err(|e| {
        Error::Invalid(msg!(
            "The written module cannot be read back from {.file {path}} ({reason}).",
            path = path.display().to_string(),
            reason = torch_message(&e)
        ))
    })?;
    let cfg = &model.cfg;
    let x = example_input(cfg, 37, 1);
    let got = tch::no_grad(|| loaded.forward_ts(&[&x]))?;
    let want = tch::no_grad(|| evaluate_reference(model, &x))?;
    let diff = (&got - &want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]).max(1.0);
    if diff.is_nan() || diff > 1e-4 * scale {
        // a defect of the export (an internal error for R), never the user's
        return Err(Error::Torch(tch::TchError::Torch(format!(
            "the exported module does not reproduce the network (largest difference {diff:e})"
        ))));
    }
    Ok(())
}

/// The model's own prediction of `x` (same input convention as the module),
/// through the core's data preparation and inference.
fn evaluate_reference(model: &Model, x: &Tensor) -> Result<Tensor> {
    let cfg = &model.cfg;
    let n = x.size()[0] as usize;
    let cols: Vec<Vec<f64>> = (0..cfg.n_features())
        .map(|j| Vec::<f64>::from(&x.select(1, j as i64).to_kind(Kind::Double)))
        .collect();
    let num: Vec<&[f64]> = cfg.num_cols.iter().map(|&j| cols[j].as_slice()).collect();
    // as R's predict() gets them: an unknown code (an unseen level) is NA
    let cat_codes: Vec<Vec<i32>> = cfg
        .cat_cols
        .iter()
        .zip(&cfg.cat_levels)
        .map(|(&j, &levels)| {
            cols[j]
                .iter()
                .map(|&v| {
                    if v >= 1.0 && v <= levels as f64 && v == v.floor() {
                        v as i32
                    } else {
                        crate::data::NA_INTEGER
                    }
                })
                .collect()
        })
        .collect();
    let cat: Vec<&[i32]> = cat_codes.iter().map(|c| c.as_slice()).collect();
    let names: Vec<String> = (0..cfg.n_features()).map(|j| format!("V{j}")).collect();
    let data =
        crate::data::Dataset::from_columns(cfg, &num, &cat, &names, None, None, Device::Cpu)?;
    debug_assert_eq!(data.n as usize, n);
    crate::inference::predict(model, &data, 1 << 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MaskType;

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tabnetrs-export-{}-{name}.pt", std::process::id()))
    }

    /// Rows the tracing example never had: ties (all equal, two equal maxima,
    /// equal entries at the threshold), one dominant entry, supports of every size.
    fn mask_rows() -> Tensor {
        let rows: Vec<[f64; 6]> = vec![
            [0.0; 6],
            [1.0, 1.0, 0.0, 0.0, -1.0, -1.0],
            [2.0, 2.0, 2.0, -5.0, -5.0, -5.0],
            [9.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
            [3.0, -1.0, 2.9, 0.7, 0.7, 0.7],
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            [-2.0, 4.0, 1.0, 1.0, 3.5, 3.5],
        ];
        let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        Tensor::of_slice(&flat).view([rows.len() as i64, 6])
    }

    fn trace_mask(kind: MaskType, traced_support: bool) -> CModule {
        // the example: a single row with a support of one
        let example = Tensor::of_slice(&[5.0f32, 0.0, 0.0, 0.0, 0.0, 0.0]).view([1, 6]);
        tch::no_grad(|| {
            CModule::create_by_tracing("M", "forward", &[example], &mut |x| {
                if traced_support {
                    vec![mask::traceable(|| mask::apply(kind, &x[0]))]
                } else {
                    vec![mask::apply(kind, &x[0])]
                }
            })
        })
        .unwrap()
    }

    /// The traced sparsemax / entmax equal the Rust-support ones on rows with
    /// other supports than the tracing example's, ties included. Both compute
    /// the same float32 formula over the same support: differences are a few
    /// ulps of values ≤ 1 (1e-6 is ~16 ulps of 1).
    #[test]
    fn traced_masks_hold_for_any_input() {
        let z = mask_rows();
        for kind in [MaskType::Sparsemax, MaskType::Entmax] {
            let want = tch::no_grad(|| mask::apply(kind, &z));
            let got = trace_mask(kind, true).forward_ts(&[&z]).unwrap();
            let diff = (&got - &want).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{kind:?}: traced mask differs by {diff}");
            // the Rust support would be frozen at the example's: the test
            // above can fail (this is the defect `traceable` removes)
            let frozen = trace_mask(kind, false).forward_ts(&[&z]).unwrap();
            let frozen_diff = (&frozen - &want).abs().max().double_value(&[]);
            assert!(
                frozen_diff.is_nan() || frozen_diff > 0.1,
                "{kind:?}: {frozen_diff}"
            );
        }
    }

    /// numeric 0, 2, 3; factors 1 (4 levels, width 3) and 4 (3 levels).
    fn cfg(task: Task, mask_type: MaskType, groups: bool) -> NetConfig {
        let dims = if task == Task::Regression {
            vec![1, 1]
        } else {
            vec![3, 2]
        };
        let mut c = NetConfig::example(3, dims, task);
        c.num_cols = vec![0, 2, 3];
        c.cat_cols = vec![1, 4];
        c.cat_levels = vec![4, 3];
        c.cat_emb_dims = vec![3, 1];
        c.mask_type = mask_type;
        if groups {
            c.grouped_features = vec![vec![0, 1], vec![3, 4]];
        }
        c
    }

    /// A network whose batch-norm statistics are not the initial 0 / 1, so
    /// that evaluation with running statistics is what is tested. Every
    /// value comes from the crate's own generator, seeded per variable name:
    /// libtorch's generator is shared by the tests running beside this one,
    /// so a manual seed did not fix the weights (a rare draw failed the
    /// export's own check by 5 %).
    fn model(c: NetConfig) -> Model {
        let m = Model::new(c, Device::Cpu).unwrap();
        tch::no_grad(|| {
            for (name, t) in m.vs.variables() {
                let mut t = t;
                let seed = name
                    .bytes()
                    .fold(42u64, |h, b| h.wrapping_mul(31) ^ b as u64);
                let mut rng = crate::rng::Rng::new(seed);
                let size = t.size();
                // uniform draws in [a, b), as float32 values
                let mut draw = |a: f64, b: f64| -> Tensor {
                    let v: Vec<f32> = (0..t.numel())
                        .map(|_| (a + (b - a) * rng.uniform()) as f32)
                        .collect();
                    Tensor::of_slice(&v).view(size.as_slice())
                };
                // statistics (mean 0 ± 0.87, variance 0.5 to 2), batch-norm
                // scales near 1 and shifts near 0, and weights with a
                // standard deviation of 1 / √fan-in
                let values = if name.ends_with("running_mean") {
                    draw(-0.87, 0.87)
                } else if name.ends_with("running_var") {
                    draw(0.5, 2.0)
                } else if name.ends_with("num_batches_tracked") {
                    continue;
                } else if size.len() == 1 && name.ends_with("weight") {
                    draw(0.9, 1.1)
                } else if size.len() == 1 {
                    draw(-0.1, 0.1)
                } else {
                    let a = (3.0 / size[1] as f64).sqrt();
                    draw(-a, a)
                };
                t.copy_(&values.to_kind(t.kind()));
            }
        });
        m
    }

    /// The saved module against the core's inference (fused kernels, Rust
    /// supports, the data preparation of `Dataset::from_columns`) on rows
    /// with NaN in every column, factor codes 0 / in range / beyond the
    /// levels, and a row of zeros. Both compute in float32 with different
    /// orders of summation (libtorch's matmul vs the fused kernels), so
    /// neither is exact: each is compared with the same network evaluated in
    /// float64, and the export must be as accurate as predict(). (Random
    /// weights with random batch-norm statistics are worse conditioned than
    /// a trained network: regression outputs up to ~20 carry float32 errors
    /// up to 5e-5 in both paths.)
    #[test]
    fn exported_network_matches_inference() {
        for (task, kind, groups) in [
            (Task::Classification, MaskType::Sparsemax, false),
            (Task::Classification, MaskType::Entmax, true),
            (Task::Regression, MaskType::Sparsemax, true),
            (Task::Regression, MaskType::Entmax, false),
        ] {
            let m = model(cfg(task, kind, groups));
            let path = temp_path(&format!("{task:?}-{kind:?}-{groups}"));
            export(&m, &path, r#"{"k": 1}"#).unwrap();
            let loaded = CModule::load(&path).unwrap();
            let mut m64 = frozen_copy(&m).unwrap();
            m64.vs.double();
            let maps = InputMaps::new(&m.cfg);
            for (rows, salt) in [(1usize, 7u64), (64, 8)] {
                let x = example_input(&m.cfg, rows, salt);
                let got = tch::no_grad(|| loaded.forward_ts(&[&x])).unwrap();
                let want = evaluate_reference(&m, &x).unwrap();
                assert_eq!(got.size(), want.size());
                let truth =
                    tch::no_grad(|| evaluate(&m64, &maps, &x.to_kind(Kind::Double))).unwrap();
                let err = |t: &Tensor| {
                    (t.to_kind(Kind::Double) - &truth)
                        .abs()
                        .max()
                        .double_value(&[])
                };
                let (err_export, err_predict) = (err(&got), err(&want));
                let scale = want.abs().max().double_value(&[]).max(1.0);
                // as accurate as float32 allows: within 2x predict()'s own
                // error, or 512 u of the output scale (u = 2^-24): the export
                // runs libtorch's float32 ops in another order than the fused
                // pass, through about 20 sequential products of width <= 16
                // (3 steps x (4 GLU layers + attention) + head), each adding at
                // most 16 u relative error: <= 320 u. Seen: up to 176 u
                // (Prescott kernels), predict()'s folded pass 4e-8 to 5e-5.
                let u = f64::from(f32::EPSILON) / 2.0;
                assert!(
                    err_export <= (2.0 * err_predict).max(512.0 * u * scale),
                    "{task:?} {kind:?} {groups} {rows}: export {err_export:e}, predict {err_predict:e}"
                );
                if task == Task::Classification {
                    let sums =
                        got.narrow(1, 0, 3)
                            .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float);
                    assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-6);
                }
            }
            // the metadata is an extra file of the archive
            let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
            let names: Vec<String> = archive.file_names().map(String::from).collect();
            let entry = names
                .iter()
                .find(|n| n.ends_with("/extra/tabnetrs.json"))
                .unwrap()
                .clone();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut archive.by_name(&entry).unwrap(), &mut text)
                .unwrap();
            assert_eq!(text, r#"{"k": 1}"#);
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn a_pretrained_model_is_refused() {
        let p = Model::new_pretrainer(
            cfg(Task::Classification, MaskType::Sparsemax, false),
            0.5,
            Device::Cpu,
        )
        .unwrap();
        let path = temp_path("pretrain");
        assert!(matches!(export(&p, &path, "{}"), Err(Error::Invalid(_))));
        assert!(!path.exists());
    }

    #[test]
    fn an_unwritable_path_is_an_input_error() {
        let m = model(cfg(Task::Classification, MaskType::Sparsemax, false));
        let path = std::path::Path::new("/nonexistent-dir/sub/model.pt");
        match export(&m, path, "{}") {
            Err(Error::Invalid(msg)) => {
                assert!(msg.to_string().contains("cannot be written"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
    }
}
