//! End-to-end checks of the core on real (synthetic) data: parameter counts,
//! training on Syn2, eval-mode independence, save/load identity, seeding.
use std::sync::Mutex;
use tabnet_core::data::{Dataset, Targets};
use tabnet_core::importance::{mask_importance, model_agnostic, Method};
use tabnet_core::inference::{explain, predict};
use tabnet_core::metrics::auc;
use tabnet_core::trainer::{evaluate_loss, TrainOptions, Trainer};
use tabnet_core::{Backend, Model, NetConfig, Task};
use tch::{Device, Kind, Tensor};

/// libtorch's RNG is process-global: tests that seed it run one at a time.
static RNG: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Syn2 of the interpretation vignette: 10 standard normals, y = 1 if V3+..+V6 > 0.
fn syn2(n: usize, seed: i64) -> (Vec<Vec<f64>>, Vec<i32>) {
    tch::manual_seed(seed);
    let x = Tensor::randn(&[10, n as i64], (Kind::Double, Device::Cpu));
    let cols: Vec<Vec<f64>> = (0..10).map(|j| Vec::<f64>::from(&x.get(j))).collect();
    let y = (0..n)
        .map(|r| ((cols[2][r] + cols[3][r] + cols[4][r] + cols[5][r]) > 0.0) as i32)
        .collect();
    (cols, y)
}

fn names(p: usize) -> Vec<String> {
    (1..=p).map(|j| format!("V{j:02}")).collect()
}

fn dataset(cfg: &NetConfig, cols: &[Vec<f64>], y: &[i32]) -> Dataset {
    let refs: Vec<&[f64]> = cols.iter().map(|c| c.as_slice()).collect();
    Dataset::from_columns(
        cfg,
        &refs,
        &[],
        &names(cols.len()),
        Some(Targets::Classes(vec![y])),
        None,
        Device::Cpu,
    )
    .unwrap()
}

fn opts() -> TrainOptions {
    TrainOptions::example(256)
}

fn train(model: &Model, data: &Dataset, epochs: usize) -> Vec<f64> {
    let mut t = Trainer::new(model, opts()).unwrap();
    (0..epochs)
        .map(|_| {
            t.begin_epoch(data).unwrap();
            t.run(model, data, i64::MAX).unwrap();
            t.end_epoch()
        })
        .collect()
}

#[test]
fn parameter_count_matches_the_spec_formula() {
    let _guard = serial();
    for (n_shared, n_ind, cats) in [
        (2usize, 2usize, false),
        (1, 3, true),
        (0, 2, false),
        (3, 0, true),
    ] {
        let mut cfg = NetConfig::example(6, vec![3], Task::Classification);
        cfg.n_shared = n_shared;
        cfg.n_independent = n_ind;
        cfg.n_d = 8;
        cfg.n_a = 5;
        if cats {
            cfg.num_cols = vec![0, 1, 3, 4, 5, 6];
            cfg.cat_cols = vec![2, 7];
            cfg.cat_levels = vec![4, 9];
            cfg.cat_emb_dims = vec![3, 1];
        }
        let m = Model::new(cfg.clone(), Device::Cpu).unwrap();
        let (d, h, g, n) = (
            cfg.embedded_dim(),
            cfg.n_d + cfg.n_a,
            cfg.n_features(),
            cfg.n_steps,
        );
        let shared = if n_shared > 0 {
            d * 2 * h + (n_shared - 1) * 2 * h * h
        } else {
            0
        };
        // independent layers: the first takes D when there is no shared block
        let ind = if n_ind == 0 {
            0
        } else if n_shared == 0 {
            d * 2 * h + (n_ind - 1) * 2 * h * h
        } else {
            n_ind * 2 * h * h
        };
        let per_ft = ind + (n_shared + n_ind) * 4 * h;
        let att = cfg.n_a * g + 2 * g;
        let emb: usize = cfg
            .cat_levels
            .iter()
            .zip(&cfg.cat_emb_dims)
            .map(|(l, e)| (l + 1) * e)
            .sum();
        let want = shared + (n + 1) * per_ft + n * att + cfg.n_d * 3 + 2 * d + emb;
        assert_eq!(
            m.n_parameters() as usize,
            want,
            "n_shared {n_shared}, n_ind {n_ind}, cats {cats}"
        );
    }
}

#[test]
fn learns_syn2_and_ranks_the_true_features_first() {
    let _guard = serial();
    tch::set_num_threads(2);
    let cfg = NetConfig::example(10, vec![2], Task::Classification);
    let (cols, y) = syn2(6000, 11);
    let train_cols: Vec<Vec<f64>> = cols.iter().map(|c| c[..5000].to_vec()).collect();
    let test_cols: Vec<Vec<f64>> = cols.iter().map(|c| c[5000..].to_vec()).collect();
    let data = dataset(&cfg, &train_cols, &y[..5000]);
    let test = dataset(&cfg, &test_cols, &y[5000..]);
    tch::manual_seed(1);
    let model = Model::new(cfg, Device::Cpu).unwrap();
    let losses = train(&model, &data, 10);
    assert!(losses[9] < losses[0], "loss should fall: {losses:?}");
    let p = predict(&model, &test, 4096).unwrap();
    let score: Vec<f64> = Vec::from(&p.select(1, 1).to_kind(Kind::Double));
    let labels: Vec<bool> = y[5000..].iter().map(|&v| v == 1).collect();
    let a = auc(&score, &labels);
    assert!(a > 0.9, "holdout AUC {a}");
    let valid = evaluate_loss(&model, &test, 4096).unwrap();
    assert!(valid.is_finite() && valid < 0.6);
    let imp = mask_importance(&model, &test, 4096).unwrap();
    assert!((imp.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let mut order: Vec<usize> = (0..10).collect();
    order.sort_by(|&a, &b| imp[b].partial_cmp(&imp[a]).unwrap());
    let mut top4 = order[..4].to_vec();
    top4.sort();
    assert_eq!(top4, vec![2, 3, 4, 5], "mask importance {imp:?}");
    for method in [Method::Permutation, Method::Occlusion, Method::Mad] {
        let r = model_agnostic(&model, &test, method, 2, 4096).unwrap();
        let means: Vec<f64> = r
            .values
            .iter()
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
            .collect();
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by(|&a, &b| means[b].partial_cmp(&means[a]).unwrap());
        let mut top4 = order[..4].to_vec();
        top4.sort();
        assert_eq!(top4, vec![2, 3, 4, 5], "{method:?} importance {means:?}");
    }
}

#[test]
fn eval_mode_rows_do_not_depend_on_their_batch() {
    let _guard = serial();
    let cfg = NetConfig::example(10, vec![2], Task::Classification);
    let (cols, y) = syn2(600, 3);
    let data = dataset(&cfg, &cols, &y);
    tch::manual_seed(2);
    let model = Model::new(cfg, Device::Cpu).unwrap();
    train(&model, &data, 1);
    // Each row goes through the same kernels whatever its batch; only the BLAS
    // product's blocking changes with the number of rows (and a one-row batch
    // becomes a matrix-vector product), and OpenBLAS picks those kernels per CPU.
    // Two summation orders of a K-term product differ by at most
    // 2·γ_K·Σ|x_k w_k| with γ_K ≈ K·2⁻²⁴: 7.6e-6 relative for K = 64. Through
    // the ~15 products in sequence (3 steps of 4 GLU layers and an attentive
    // transformer) and the 1-Lipschitz sparsemax projection, values of order
    // one move by less than 1e-4 (measured: 1e-5 with OpenBLAS's Prescott and
    // Haswell kernels).
    const TOL: f64 = 1e-4;
    let close = |a: &Tensor, b: &Tensor| {
        let scale = a.abs().max().double_value(&[]).max(1.0);
        (a - b).abs().max().double_value(&[]) / scale
    };
    let all = predict(&model, &data, 600).unwrap();
    let small = predict(&model, &data, 7).unwrap();
    assert!(close(&all, &small) < TOL, "{}", close(&all, &small));
    let (m_all, s_all) = explain(&model, &data, 600).unwrap();
    let (m_one, s_one) = explain(&model, &data, 1).unwrap();
    assert!(close(&m_all, &m_one) < TOL, "{}", close(&m_all, &m_one));
    for (a, b) in s_all.iter().zip(&s_one) {
        assert!(close(a, b) < TOL, "{}", close(a, b));
    }
    // each step's mask is a distribution over the columns
    let sums = s_all[0].sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float);
    assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-5);
    // training mode differs from eval mode (batch statistics)
    let b = data.slice(0, 64);
    let net = model.supervised().unwrap();
    let (t_out, _, _) = tch::no_grad(|| net.forward(&b, true, Backend::Autograd));
    let (e_out, _, _) = tch::no_grad(|| net.forward(&b, false, model.backend()));
    assert!((t_out - e_out).abs().max().double_value(&[]) > 1e-4);
}

#[test]
fn save_load_and_seed_give_identical_results() {
    let _guard = serial();
    let cfg = NetConfig::example(10, vec![2], Task::Classification);
    let (cols, y) = syn2(800, 5);
    let data = dataset(&cfg, &cols, &y);
    let run = || {
        tch::manual_seed(42);
        let m = Model::new(cfg.clone(), Device::Cpu).unwrap();
        train(&m, &data, 2);
        m
    };
    let a = run();
    let b = run();
    let pa = predict(&a, &data, 1000).unwrap();
    let pb = predict(&b, &data, 1000).unwrap();
    assert!(pa.equal(&pb), "two seeded fits must be bit-identical");
    let bytes = a.to_bytes().unwrap();
    let cfg2: NetConfig = serde_json::from_str(&a.config_json()).unwrap();
    let c = Model::load(cfg2, None, &bytes, Device::Cpu).unwrap();
    assert!(
        predict(&c, &data, 1000).unwrap().equal(&pa),
        "predictions identical after save/load"
    );
}

#[test]
fn pretraining_loss_is_positive_and_the_encoder_transfers() {
    let _guard = serial();
    let cfg = NetConfig::example(10, vec![2], Task::Classification);
    let (cols, y) = syn2(1000, 8);
    let data = dataset(&cfg, &cols, &y);
    tch::manual_seed(9);
    let pre = Model::new_pretrainer(cfg.clone(), 0.5, Device::Cpu).unwrap();
    pre.prepare(&data);
    let losses = train(&pre, &data, 3);
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
    assert!(losses[2] < losses[0], "{losses:?}");
    let mut sup = Model::new(cfg, Device::Cpu).unwrap();
    let copied = sup.copy_encoder_from(&pre).unwrap();
    assert!(copied > 10);
    let w = "encoder.att0.fc";
    assert!(sup.vs.variables()[w].equal(&pre.vs.variables()[w]));
    assert!(predict(&pre, &data, 100).is_err());
}

#[test]
fn a_seed_gives_bit_identical_weights_on_1_2_and_4_threads() {
    let _guard = serial();
    let cfg = NetConfig::example(10, vec![2], Task::Classification);
    // batches of 256 split into several virtual batches and tasks, and a
    // short last batch; 40,000 rows, so that building the data runs libtorch
    // ops large enough to start its per-thread OpenMP setting on the pool's
    // threads (with 1,000 the run below could not fail)
    let (cols, y) = syn2(40_000, 7);
    let run = |threads: usize| {
        tabnet_core::runtime::set_threads(threads);
        // the data built on the kernels' pool after the thread count is set,
        // as in a session: a pool thread's libtorch ops then first see that
        // count (libtorch's OpenMP setting is per thread), and training on
        // that thread must still run libtorch on one
        let data = dataset(&cfg, &cols, &y);
        tch::manual_seed(3);
        let m = Model::new(cfg.clone(), Device::Cpu).unwrap();
        let losses = train(&m, &data, 2);
        let p = predict(&m, &data, 1000).unwrap();
        let (e, masks) = explain(&m, &data, 1000).unwrap();
        (m.to_bytes().unwrap(), losses, p, e, masks)
    };
    let (w1, l1, p1, e1, k1) = run(1);
    for threads in [2, 4] {
        let (w, l, p, e, k) = run(threads);
        assert_eq!(l, l1, "losses on {threads} threads");
        assert!(w == w1, "weights on {threads} threads differ from 1 thread");
        assert!(p.equal(&p1), "predictions on {threads} threads");
        assert!(e.equal(&e1), "M_explain on {threads} threads");
        for (a, b) in k.iter().zip(&k1) {
            assert!(a.equal(b), "step masks on {threads} threads");
        }
    }
    tabnet_core::runtime::set_threads(1);
}

/// A two-level hierarchy on Syn2's predictors: A / B by the sign of V1, then
/// A1 / A2 under A and B1 / B2 under B by the sign of V2 (C = 6 nodes).
#[test]
fn a_hierarchy_is_learned_and_its_predictions_respect_it() {
    let _guard = serial();
    let (cols, _) = syn2(3000, 21);
    let top: Vec<i32> = cols[0].iter().map(|&v| (v > 0.0) as i32).collect();
    let low: Vec<i32> = cols[1].iter().map(|&v| (v > 0.0) as i32).collect();
    let mut cfg = NetConfig::example(10, vec![2, 4], Task::Hierarchical);
    cfg.parent = vec![None, None, Some(0), Some(0), Some(1), Some(1)];
    // level 2 codes: A1 A2 B1 B2 = 2·top + low
    let second: Vec<i32> = top.iter().zip(&low).map(|(t, l)| 2 * t + l).collect();
    let refs: Vec<&[f64]> = cols.iter().map(|c| c.as_slice()).collect();
    let make = |y1: &[i32], y2: &[i32]| {
        Dataset::from_columns(
            &cfg,
            &refs,
            &[],
            &names(10),
            Some(Targets::Classes(vec![y1, y2])),
            None,
            Device::Cpu,
        )
    };
    // a row whose second level is not a child of its first is an error
    let mut wrong = second.clone();
    wrong[0] = if top[0] == 1 { 0 } else { 2 };
    let err = make(&top, &wrong).unwrap_err();
    assert!(err.to_string().contains("row 1"), "{err}");
    let data = make(&top, &second).unwrap();
    tch::manual_seed(2);
    let model = Model::new(cfg.clone(), Device::Cpu).unwrap();
    let losses = train(&model, &data, 15);
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[14] < losses[0] * 0.6, "{losses:?}");
    assert!(evaluate_loss(&model, &data, 4096).unwrap().is_finite());
    let p = predict(&model, &data, 1000).unwrap();
    assert_eq!(p.size(), vec![3000, 6]);
    let rows: Vec<f64> = Vec::from(&p.to_kind(Kind::Double).view([-1]));
    let mut hits = [0usize; 2];
    for r in 0..3000 {
        let row = &rows[r * 6..(r + 1) * 6];
        for (c, parent) in cfg.parent.iter().enumerate() {
            if let Some(a) = *parent {
                assert!(row[a] >= row[c]);
            }
        }
        let path = tabnet_core::metrics::top_down_path(row, &cfg.output_dims, &cfg.parent);
        hits[0] += (path[0] as i32 == top[r]) as usize;
        hits[1] += (path[1] as i32 == second[r]) as usize;
    }
    assert!(hits[0] > 2700 && hits[1] > 2400, "{hits:?}");
    // the hierarchy is part of the saved configuration
    let back: NetConfig = serde_json::from_str(&model.config_json()).unwrap();
    assert_eq!(back.parent, cfg.parent);
    let again = Model::load(back, None, &model.to_bytes().unwrap(), Device::Cpu).unwrap();
    let q = predict(&again, &data, 1000).unwrap();
    assert_eq!((p - q).abs().max().double_value(&[]), 0.0);
    // accuracy-based importance works on the hierarchy
    let imp = model_agnostic(&model, &data, Method::Permutation, 1, 4096).unwrap();
    assert_eq!(imp.metric, "accuracy");
}

/// Feature groups on Syn2 after a short training: the attention runs over the
/// groups on the default (fused) backend, every column-level step mask sums
/// to 1 over the columns and the columns of a group carry equal masks.
#[test]
fn grouped_masks_are_shared_within_groups_and_sum_to_one() {
    let _guard = serial();
    let mut cfg = NetConfig::example(10, vec![2], Task::Classification);
    cfg.grouped_features = vec![vec![2, 3, 4, 5], vec![9, 0]];
    let (cols, y) = syn2(1200, 4);
    let data = dataset(&cfg, &cols, &y);
    tch::manual_seed(2);
    let model = Model::new(cfg.clone(), Device::Cpu).unwrap();
    assert_eq!(model.backend(), Backend::Fused);
    // 2 groups + 4 singletons
    let att: Vec<i64> = model
        .vs
        .variables()
        .iter()
        .filter(|(k, _)| k.ends_with("att0.fc"))
        .map(|(_, t)| t.size()[0])
        .collect();
    assert_eq!(att, vec![6]);
    train(&model, &data, 3);
    let (m_explain, masks) = explain(&model, &data, 500).unwrap();
    assert_eq!(m_explain.size(), vec![1200, 10]);
    for m in &masks {
        assert_eq!(m.size(), vec![1200, 10]);
        let sums = m
            .to_kind(Kind::Double)
            .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Double);
        // float32 masks: sparsemax sums to 1 within ~G·2⁻²⁴, and the 1/|g|
        // split rounds once more per column (10 columns · 6e-8)
        let dev = (sums - 1.0).abs().max().double_value(&[]);
        assert!(dev < 1e-5, "masks sum to 1 up to {dev}");
        for group in &cfg.grouped_features {
            let first = m.select(1, group[0] as i64);
            for &c in &group[1..] {
                // the same f32 product M_g · (1/|g|) for every member: exact
                assert!(m.select(1, c as i64).equal(&first), "group {group:?}");
            }
        }
    }
    for group in &cfg.grouped_features {
        let first = m_explain.select(1, group[0] as i64);
        for &c in &group[1..] {
            assert!(m_explain.select(1, c as i64).equal(&first));
        }
    }
    let imp = mask_importance(&model, &data, 500).unwrap();
    assert!((imp.iter().sum::<f64>() - 1.0).abs() < 1e-9);
}

/// The folded inference plan is cached on the model and must follow its
/// weights: after further training, and after `load_bytes` of other weights,
/// a prediction equals a fresh model's with the same weights bit for bit
/// (a stale plan would still give the first predictions).
#[test]
fn the_cached_inference_plan_follows_the_weights() {
    let _guard = serial();
    let cfg = NetConfig::example(10, vec![2], Task::Classification);
    let (cols, y) = syn2(3_000, 5);
    let data = dataset(&cfg, &cols, &y);
    let fresh = |bytes: &[u8]| {
        let m = Model::load(cfg.clone(), None, bytes, Device::Cpu).unwrap();
        predict(&m, &data, 4096).unwrap()
    };
    tch::manual_seed(8);
    let mut m = Model::new(cfg.clone(), Device::Cpu).unwrap();
    let before = predict(&m, &data, 4096).unwrap();
    assert!(before.equal(&fresh(&m.to_bytes().unwrap())));
    train(&m, &data, 1);
    let trained = predict(&m, &data, 4096).unwrap();
    assert!(!trained.equal(&before), "training changed nothing");
    assert!(
        trained.equal(&fresh(&m.to_bytes().unwrap())),
        "a stale plan after training"
    );
    tch::manual_seed(9);
    let other = Model::new(cfg.clone(), Device::Cpu)
        .unwrap()
        .to_bytes()
        .unwrap();
    m.load_bytes(&other).unwrap();
    assert!(
        predict(&m, &data, 4096).unwrap().equal(&fresh(&other)),
        "a stale plan after load_bytes"
    );
}
