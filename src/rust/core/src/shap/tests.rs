//! SHAP against independent computations on a small network with a factor
//! and a missing value: the coalition values rebuilt here from the raw
//! columns and re-predicted, the Shapley values from all p! orderings.
//!
//! (Index loops mirror the formulas.)
#![allow(clippy::needless_range_loop)]
use super::exact;
use super::kernel::{self, KernelOptions};
use super::{Explainer, Output};
use crate::config::{NetConfig, Task};
use crate::data::{Dataset, Targets};
use crate::inference;
use crate::model::Model;
use tch::Device;

struct Setup {
    cfg: NetConfig,
    model: Model,
    /// raw columns in original order: a (num), f (factor codes), b (num)
    x: (Vec<f64>, Vec<i32>, Vec<f64>),
    bg: (Vec<f64>, Vec<i32>, Vec<f64>),
}

fn columns(n: usize, seed: u64) -> (Vec<f64>, Vec<i32>, Vec<f64>) {
    let z = Vec::<f64>::from(&crate::test_data::normal(&[3 * n as i64], seed));
    let a = z[..n].to_vec();
    let f = (0..n)
        .map(|i| ((z[n + i].abs() * 7.0) as i32) % 3 + 1)
        .collect();
    let mut b = z[2 * n..].to_vec();
    b[1] = f64::NAN; // a missing value: its presence flag moves with `b`
    (a, f, b)
}

fn setup(output_dims: Vec<usize>, task: Task) -> Setup {
    let mut cfg = NetConfig::example(2, output_dims, task);
    cfg.num_cols = vec![0, 2, 3];
    cfg.cat_cols = vec![1];
    cfg.cat_levels = vec![3];
    cfg.cat_emb_dims = vec![2];
    tch::manual_seed(11);
    let model = Model::new(cfg.clone(), Device::Cpu).unwrap();
    Setup {
        cfg,
        model,
        x: columns(5, 1),
        bg: columns(7, 2),
    }
}

/// 4 players: a, f, b, c (c = a² as a fourth numeric).
fn dataset(cfg: &NetConfig, c: &(Vec<f64>, Vec<i32>, Vec<f64>)) -> Dataset {
    let sq: Vec<f64> = c.0.iter().map(|v| v * v - 1.0).collect();
    let names: Vec<String> = ["a", "f", "b", "c"].iter().map(|s| s.to_string()).collect();
    Dataset::from_columns(
        cfg,
        &[&c.0, &c.2, &sq],
        &[&c.1],
        &names,
        None::<Targets>,
        None,
        Device::Cpu,
    )
    .unwrap()
}

/// v(S) for row i, rebuilt from the raw columns: player j from the row when
/// bit j of `code` is set, else from each background row; mean of predict().
fn reference_value(s: &Setup, i: usize, code: usize, raw: bool) -> Vec<f64> {
    let m = s.bg.0.len();
    let pick = |j: usize, b: usize| code & (1 << j) != 0 || b == usize::MAX;
    let mut a = vec![];
    let mut f = vec![];
    let mut bb = vec![];
    let mut c = vec![];
    for b in 0..m {
        a.push(if pick(0, b) { s.x.0[i] } else { s.bg.0[b] });
        f.push(if pick(1, b) { s.x.1[i] } else { s.bg.1[b] });
        bb.push(if pick(2, b) { s.x.2[i] } else { s.bg.2[b] });
        // c is derived from a in `dataset`, so it is mixed separately here
        c.push(if pick(3, b) { s.x.0[i] } else { s.bg.0[b] });
    }
    let sq: Vec<f64> = c.iter().map(|v| v * v - 1.0).collect();
    let names: Vec<String> = ["a", "f", "b", "c"].iter().map(|s| s.to_string()).collect();
    let d = Dataset::from_columns(
        &s.cfg,
        &[&a, &bb, &sq],
        &[&f],
        &names,
        None,
        None,
        Device::Cpu,
    )
    .unwrap();
    let out = if raw {
        inference::predict_raw(&s.model, &d, 1024).unwrap()
    } else {
        inference::predict(&s.model, &d, 1024).unwrap()
    };
    let k = out.size()[1] as usize;
    let v = Vec::<f64>::from(&out.to_kind(tch::Kind::Double).contiguous().view([-1]));
    (0..k)
        .map(|col| (0..m).map(|b| v[b * k + col]).sum::<f64>() / m as f64)
        .collect()
}

/// Shapley values of row i as the mean marginal contribution over all 4!
/// orderings of the players.
fn reference_shap(s: &Setup, i: usize, raw: bool) -> Vec<Vec<f64>> {
    let p = 4;
    let vals: Vec<Vec<f64>> = (0..16)
        .map(|code| reference_value(s, i, code, raw))
        .collect();
    let k = vals[0].len();
    let mut phi = vec![vec![0.0; k]; p];
    let mut perms = vec![];
    permutations(&mut (0..p).collect(), 0, &mut perms);
    for perm in &perms {
        let mut code = 0;
        for &j in perm {
            for c in 0..k {
                phi[j][c] += vals[code | (1 << j)][c] - vals[code][c];
            }
            code |= 1 << j;
        }
    }
    for row in &mut phi {
        for v in row.iter_mut() {
            *v /= perms.len() as f64;
        }
    }
    phi
}

fn permutations(v: &mut Vec<usize>, k: usize, out: &mut Vec<Vec<usize>>) {
    if k == v.len() {
        out.push(v.clone());
        return;
    }
    for i in k..v.len() {
        v.swap(k, i);
        permutations(v, k + 1, out);
        v.swap(k, i);
    }
}

fn explainer(s: &Setup, output: Output, chunk: usize) -> Explainer {
    let players = vec![vec![0], vec![1], vec![2], vec![3]];
    Explainer::new(
        &s.model,
        &dataset(&s.cfg, &s.x),
        &dataset(&s.cfg, &s.bg),
        None,
        players,
        output,
        chunk,
    )
    .unwrap()
}

// Tolerance: every v(S) is a mean of float32 network outputs (|out| <= a few
// units), which agree between the two computations to a few float32 ulps
// (about 1e-6 absolute: the batches differ in size, so the products may
// round differently); φ is a weighted sum of differences of v with weights
// summing to 1 per term, so |Δφ| <= 2 · 1e-6 · (number of terms' weight) <=
// 1e-5. The efficiency identity holds to double rounding of those sums.
const TOL: f64 = 1e-5;

#[test]
fn exact_shap_matches_the_orderings_and_adds_up() {
    for (dims, task, output) in [
        (vec![3], Task::Classification, Output::Prob),
        (vec![3], Task::Classification, Output::Raw),
        (vec![1], Task::Regression, Output::Prob),
    ] {
        let s = setup(dims, task);
        // a chunk of 10 mixed rows: jobs span several forward passes
        let ex = explainer(&s, output, 10);
        let k = ex.k;
        let block = exact::shap(&ex, &s.model, 0, 5, &mut || false)
            .unwrap()
            .unwrap();
        for i in 0..5 {
            let reference = reference_shap(&s, i, output == Output::Raw);
            let mut sums = vec![0.0; k];
            for j in 0..4 {
                for c in 0..k {
                    let got = block.values[(i * 4 + j) * k + c];
                    assert!(
                        (got - reference[j][c]).abs() < TOL,
                        "row {i} player {j} output {c}: {got} vs {}",
                        reference[j][c]
                    );
                    sums[c] += got;
                }
            }
            for c in 0..k {
                let pred = ex.predictions[i * k + c];
                assert!(
                    (sums[c] + ex.baseline[c] - pred).abs() < 1e-9,
                    "efficiency: {} + {} vs {pred}",
                    sums[c],
                    ex.baseline[c]
                );
            }
        }
    }
}

#[test]
fn a_poll_that_says_stop_stops_between_chunks() {
    let s = setup(vec![2], Task::Classification);
    let ex = explainer(&s, Output::Prob, 7);
    let mut calls = 0;
    let res = exact::shap(&ex, &s.model, 0, 5, &mut || {
        calls += 1;
        true
    })
    .unwrap();
    assert!(res.is_none());
    assert_eq!(calls, 1);
}

#[test]
fn kernel_designs_follow_kernelshap() {
    // p = 10, degree 2: 10 + 10 + 45 + 45 coalitions, weight share prop_exact
    let d = kernel::partly_exact(10, 2);
    assert_eq!(d.z.len() / 10, 110);
    let total: f64 = d.w.iter().sum();
    assert!((total - kernel::prop_exact(10, 2)).abs() < 1e-12);
    // sizes {1, 9} and {2, 8}: per-size weights 1/(s(p-s)) normalised
    let ws = kernel::weights_per_size(10, &(1..10).collect::<Vec<_>>());
    assert!((kernel::prop_exact(10, 2) - 2.0 * (ws[0] + ws[1])).abs() < 1e-12);
    // p = 2 deg: the middle size counts once; everything exact
    assert!((kernel::prop_exact(4, 2) - 1.0).abs() < 1e-12);
    // sampled designs are paired, with sizes strictly inside
    let mut rng = crate::rng::Rng::new(3);
    let s = kernel::sampling(10, 20, 2, &mut rng);
    for r in 0..10 {
        let size = s.z[r * 10..(r + 1) * 10].iter().filter(|&&b| b).count();
        assert!((3..=7).contains(&size));
        for c in 0..10 {
            assert_ne!(s.z[r * 10 + c], s.z[(r + 10) * 10 + c]);
        }
    }
    let wsum: f64 = s.w.iter().sum();
    assert!((wsum - (1.0 - kernel::prop_exact(10, 2))).abs() < 1e-12);
}

#[test]
fn kernel_shap_exact_degree_and_sampling_match_exact_shap() {
    let s = setup(vec![3], Task::Classification);
    let ex = explainer(&s, Output::Raw, 64);
    let k = ex.k;
    let exact_values = exact::shap(&ex, &s.model, 0, 5, &mut || false)
        .unwrap()
        .unwrap()
        .values;
    // degree p/2 = 2: all coalitions with the kernel weights (no sampling):
    // the regression solution is the Shapley value
    let opts = KernelOptions {
        hybrid_degree: 2,
        m: 8,
        tol: 0.005,
        max_iter: 100,
        seed: 1,
    };
    let full = kernel::shap(&ex, &s.model, 0, 5, &opts, &mut || false)
        .unwrap()
        .unwrap();
    for (a, b) in full.values.iter().zip(&exact_values) {
        // the same coalitions, but forwarded in chunks of other sizes, so
        // each v(S) may differ in its last float32 bits (OpenBLAS's Prescott
        // kernels block by size): the exact test's TOL
        assert!((a - b).abs() < TOL, "{a} vs {b}");
    }
    // degree 1 (sizes 1 and 3 exact), size 2 by paired sampling: within 6
    // standard errors (+ 1e-6). tol = 0 runs all 60 iterations: with p = 4
    // there are only 3 complementary pairs of size 2, so two iterations can
    // draw them in the same proportions, give equal estimates and a standard
    // error of 0 (kernelshap's criterion would stop there too).
    let opts = KernelOptions {
        hybrid_degree: 1,
        m: 16,
        tol: 0.0,
        max_iter: 60,
        seed: 7,
    };
    let sampled = kernel::shap(&ex, &s.model, 0, 5, &opts, &mut || false)
        .unwrap()
        .unwrap();
    let mut worst = 0.0f64;
    for i in 0..5 * 4 * k {
        let z = (sampled.values[i] - exact_values[i]).abs() / (sampled.se[i] + 1e-6);
        worst = worst.max(z);
    }
    assert!(worst < 6.0, "largest deviation {worst} standard errors");
    assert!(sampled.n_iter.iter().all(|&n| n == 60));
    assert!(sampled.converged.iter().all(|&c| !c));
    // efficiency holds exactly for the constrained regression
    for i in 0..5 {
        for c in 0..k {
            let sum: f64 = (0..4).map(|j| sampled.values[(i * 4 + j) * k + c]).sum();
            assert!((sum + ex.baseline[c] - ex.predictions[i * k + c]).abs() < 1e-9);
        }
    }
}
