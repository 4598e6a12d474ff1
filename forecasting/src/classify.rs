//! Binary classifiers for churn risk and lead scores: logistic regression
//! (several L2 strengths) and a random forest (linfa), the one with the best
//! cross-validated ROC AUC kept, its scores calibrated (Platt scaling on
//! out-of-fold scores), and each score explained by the input columns that
//! move it most.
//!
//! Explanations are model-agnostic: a column's effect on one row is the
//! change in probability when that column alone is replaced by its typical
//! training value (median, or most frequent level). Positive effects push
//! towards the positive class ("churns", "converts").

use linfa::prelude::*;
use linfa_ensemble::EnsembleLearnerParams;
use linfa_logistic::LogisticRegression;
use linfa_trees::DecisionTree;
use ndarray::{Array1, Array2, Axis};
use rand08::SeedableRng;
use rand08::rngs::SmallRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, invalid};
use crate::features::{Column, Encoder, EncoderOptions, Table};

/// Training options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifierOptions {
    /// Cross-validation folds for choosing the model.
    pub folds: usize,
    /// Feature encoding.
    pub encoder: EncoderOptions,
    /// L2 strengths tried for logistic regression (the penalty is
    /// `l2/2 · |w|²` on the summed log-loss: `l2 = 1/C` of scikit-learn).
    pub l2: Vec<f64>,
    /// Trees of the random forest (0 = no forest candidate).
    pub trees: usize,
    /// Depth limit of each tree.
    pub max_depth: usize,
    /// Share of features each tree sees.
    pub feature_proportion: f64,
    /// Seed for the forest.
    pub seed: u64,
}

impl Default for ClassifierOptions {
    fn default() -> Self {
        Self {
            folds: 5,
            encoder: EncoderOptions::default(),
            l2: vec![1.0, 10.0, 30.0],
            // Small on purpose: linfa's trees sort per split, and a forest
            // of vote fractions lost to logistic regression on both
            // evaluation sets (benches/RESULTS.md); it stays a candidate
            // for data where it wins.
            trees: 20,
            max_depth: 6,
            feature_proportion: 0.3,
            seed: 42,
        }
    }
}

/// A candidate model's cross-validated AUC.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CandidateScore {
    /// `logistic(l2=…)` or `forest(…)`.
    pub name: String,
    /// Mean ROC AUC over the folds.
    pub auc: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Fitted {
    Logistic {
        weights: Vec<f64>,
        intercept: f64,
    },
    Forest {
        trees: Vec<(DecisionTree<f64, bool>, Vec<usize>)>,
    },
}

impl Fitted {
    fn score(&self, x: &Array2<f64>) -> Vec<f64> {
        match self {
            Fitted::Logistic { weights, intercept } => {
                let w = Array1::from(weights.clone());
                x.dot(&w).iter().map(|z| sigmoid(z + intercept)).collect()
            }
            Fitted::Forest { trees } => {
                let mut votes = vec![0.0; x.nrows()];
                for (tree, feats) in trees {
                    let sub = x.select(Axis(1), feats);
                    let pred: Array1<bool> = tree.predict(&sub);
                    votes
                        .iter_mut()
                        .zip(pred.iter())
                        .for_each(|(v, p)| *v += f64::from(u8::from(*p)));
                }
                let n = trees.len().max(1) as f64;
                votes.iter().map(|v| v / n).collect()
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Candidate {
    Logistic(f64),
    Forest,
}

impl Candidate {
    fn name(&self, opts: &ClassifierOptions) -> String {
        match self {
            Candidate::Logistic(l2) => format!("logistic(l2={l2})"),
            Candidate::Forest => format!("forest(trees={}, depth={})", opts.trees, opts.max_depth),
        }
    }

    fn fit(&self, x: &Array2<f64>, y: &[bool], opts: &ClassifierOptions) -> Result<Fitted> {
        let targets = Array1::from(y.to_vec());
        let data = Dataset::new(x.clone(), targets);
        match self {
            Candidate::Logistic(l2) => {
                let model = LogisticRegression::default()
                    .alpha(*l2)
                    .max_iterations(300)
                    .fit(&data)
                    .map_err(|e| Error::Model {
                        model: "logistic regression",
                        message: e.to_string(),
                    })?;
                // linfa's probabilities are of its "positive" label.
                let sign = if model.labels().pos.class { 1.0 } else { -1.0 };
                Ok(Fitted::Logistic {
                    weights: model.params().iter().map(|w| sign * w).collect(),
                    intercept: sign * model.intercept(),
                })
            }
            Candidate::Forest => {
                let rng = SmallRng::seed_from_u64(opts.seed);
                let forest = EnsembleLearnerParams::new_fixed_rng(
                    DecisionTree::params()
                        .max_depth(Some(opts.max_depth))
                        .min_weight_leaf(5.0),
                    rng,
                )
                .ensemble_size(opts.trees)
                .bootstrap_proportion(1.0)
                .feature_proportion(opts.feature_proportion)
                .fit(&data)
                .map_err(|e| Error::Model {
                    model: "random forest",
                    message: e.to_string(),
                })?;
                Ok(Fitted::Forest {
                    trees: forest
                        .models
                        .into_iter()
                        .zip(forest.model_features)
                        .collect(),
                })
            }
        }
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// A trained classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Classifier {
    encoder: Encoder,
    fitted: Fitted,
    /// Platt scaling of the raw score: `p = σ(a · logit(score) + b)`.
    platt: (f64, f64),
    /// The `logit(score)` range Platt scaling was fitted on (absent in
    /// models saved before it was kept: no clipping).
    #[serde(default)]
    platt_range: Option<(f64, f64)>,
    /// The typical value of each input column (for explanations).
    typical: Vec<TypicalValue>,
    /// The chosen model.
    pub model: String,
    /// Every candidate's cross-validated AUC, best first.
    pub candidates: Vec<CandidateScore>,
    /// Rows trained on.
    pub rows: usize,
    /// Positive rows trained on.
    pub positives: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum TypicalValue {
    Numeric(Option<f64>),
    Text(Option<String>),
}

/// One column's effect on one score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// The input column.
    pub column: String,
    /// Probability change this column's value causes (positive = towards
    /// the positive class).
    pub effect: f64,
}

/// The deterministic stratified folds Beacon and the scikit-learn
/// comparison both use: within each class, the k-th row (file order) goes
/// to fold `k mod folds`.
pub fn stratified_folds(y: &[bool], folds: usize) -> Vec<usize> {
    let (mut pos, mut neg) = (0usize, 0usize);
    y.iter()
        .map(|&label| {
            let counter = if label { &mut pos } else { &mut neg };
            let f = *counter % folds;
            *counter += 1;
            f
        })
        .collect()
}

/// ROC AUC (the Mann-Whitney statistic, ties counted half).
pub fn roc_auc(scores: &[f64], y: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            if y[idx[k]] {
                rank_sum += avg_rank;
            }
        }
        i = j + 1;
    }
    let p = y.iter().filter(|v| **v).count() as f64;
    let n = y.len() as f64 - p;
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// The ridge penalty on the Platt slope (on standardized `logit(score)`).
const PLATT_RIDGE: f64 = 1.0;

/// Platt scaling: logistic regression of the label on `logit(score)`, by
/// Newton's method, with Platt's (1999) smoothed targets (`(n+ + 1) /
/// (n+ + 2)` and `1 / (n- + 2)` instead of 1 and 0) and a small ridge
/// penalty on the slope, fitted on standardized scores. Returns `(a, b)`
/// of `p = σ(a · logit(score) + b)`.
///
/// Scores without spread (an uninformative model: a forest whose trees
/// all vote for the majority class scores every row 1.0) and a fitted
/// slope below zero (a ranking worse than chance) give the smoothed prior
/// (`a = 0`). Without these guards, nearly constant scores made the 2x2
/// Newton system almost singular and the slope ran away until every
/// probability came out exactly 0 or 1 (seen on the demo workspace's churn
/// model).
fn platt(scores: &[f64], y: &[bool]) -> (f64, f64) {
    let n = scores.len() as f64;
    let pos = y.iter().filter(|v| **v).count() as f64;
    let (t_pos, t_neg) = ((pos + 1.0) / (pos + 2.0), 1.0 / (n - pos + 2.0));
    let target = |t: bool| if t { t_pos } else { t_neg };
    let prior = y.iter().map(|t| target(*t)).sum::<f64>() / n.max(1.0);
    let constant = (0.0, (prior / (1.0 - prior)).ln());
    let x: Vec<f64> = scores.iter().map(|s| logit(*s)).collect();
    let mean = x.iter().sum::<f64>() / n.max(1.0);
    let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n.max(1.0)).sqrt();
    if scores.is_empty() || sd.is_nan() || sd <= 1e-9 {
        return constant;
    }
    let z: Vec<f64> = x.iter().map(|v| (v - mean) / sd).collect();
    let (mut a, mut b) = (1.0, constant.1);
    for _ in 0..100 {
        let (mut ga, mut gb) = (PLATT_RIDGE * a, 0.0);
        let (mut haa, mut hab, mut hbb) = (PLATT_RIDGE, 0.0, 1e-9);
        for (zi, t) in z.iter().zip(y) {
            let p = sigmoid(a * zi + b);
            let r = p - target(*t);
            let w = (p * (1.0 - p)).max(1e-12);
            ga += r * zi;
            gb += r;
            haa += w * zi * zi;
            hab += w * zi;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.is_nan() || det <= 0.0 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if !(a.is_finite() && b.is_finite()) {
            return constant;
        }
        if da.abs() + db.abs() < 1e-10 {
            break;
        }
    }
    if a <= 0.0 {
        return constant;
    }
    (a / sd, b - a * mean / sd)
}

/// The range of `logit(score)` Platt scaling was fitted on; scores are
/// clipped to it before scaling, so a refitted model's more extreme
/// in-sample scores (a forest's unanimous votes) are not extrapolated.
fn score_range(scores: &[f64]) -> Option<(f64, f64)> {
    let x = scores.iter().map(|s| logit(*s));
    let lo = x.clone().fold(f64::INFINITY, f64::min);
    let hi = x.fold(f64::NEG_INFINITY, f64::max);
    (lo <= hi).then_some((lo, hi))
}

/// Out-of-fold raw scores of one candidate.
fn out_of_fold(
    table: &Table,
    y: &[bool],
    folds: &[usize],
    k: usize,
    cand: &Candidate,
    opts: &ClassifierOptions,
) -> Result<Vec<f64>> {
    let parts: Vec<Result<(Vec<usize>, Vec<f64>)>> = (0..k)
        .into_par_iter()
        .map(|f| {
            let train: Vec<usize> = (0..y.len()).filter(|i| folds[*i] != f).collect();
            let test: Vec<usize> = (0..y.len()).filter(|i| folds[*i] == f).collect();
            let t = table.select(&train);
            let enc = Encoder::fit(&t, opts.encoder);
            let x = enc.transform(&t)?;
            let yt: Vec<bool> = train.iter().map(|i| y[*i]).collect();
            let fitted = cand.fit(&x, &yt, opts)?;
            let xs = enc.transform(&table.select(&test))?;
            Ok((test, fitted.score(&xs)))
        })
        .collect();
    let mut oof = vec![0.0; y.len()];
    for part in parts {
        let (test, s) = part?;
        for (i, v) in test.into_iter().zip(s) {
            oof[i] = v;
        }
    }
    Ok(oof)
}

/// Trains a classifier on `table` with labels `y`: cross-validates every
/// candidate, keeps the best by AUC, calibrates it on its out-of-fold
/// scores, and refits it on all rows.
pub fn train(table: &Table, y: &[bool], opts: &ClassifierOptions) -> Result<Classifier> {
    if table.rows() != y.len() {
        return Err(invalid(
            "target",
            format!("{} labels for {} rows", y.len(), table.rows()),
        ));
    }
    let positives = y.iter().filter(|v| **v).count();
    if positives == 0 || positives == y.len() {
        return Err(Error::OneClass(if positives == 0 {
            "all negative".into()
        } else {
            "all positive".into()
        }));
    }
    let k = opts.folds.max(2);
    let minority = positives.min(y.len() - positives);
    if minority < k * 2 {
        return Err(Error::TooLittleHistory {
            what: format!("{k}-fold cross-validation (rows of the rarer class)"),
            needed: k * 2,
            got: minority,
        });
    }
    let folds = stratified_folds(y, k);
    let mut cands: Vec<Candidate> = opts.l2.iter().map(|l| Candidate::Logistic(*l)).collect();
    if opts.trees > 0 {
        cands.push(Candidate::Forest);
    }
    let mut scored: Vec<(Candidate, f64, Vec<f64>)> = Vec::new();
    for c in cands {
        let oof = out_of_fold(table, y, &folds, k, &c, opts)?;
        // Mean per-fold AUC, as the comparison with scikit-learn reports it.
        let auc = (0..k)
            .map(|f| {
                let idx: Vec<usize> = (0..y.len()).filter(|i| folds[*i] == f).collect();
                let s: Vec<f64> = idx.iter().map(|i| oof[*i]).collect();
                let t: Vec<bool> = idx.iter().map(|i| y[*i]).collect();
                roc_auc(&s, &t)
            })
            .sum::<f64>()
            / k as f64;
        scored.push((c, auc, oof));
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let candidates = scored
        .iter()
        .map(|(c, auc, _)| CandidateScore {
            name: c.name(opts),
            auc: *auc,
        })
        .collect();
    let (best, _, oof) = scored.swap_remove(0);
    let calibration = platt(&oof, y);
    let platt_range = score_range(&oof);
    let encoder = Encoder::fit(table, opts.encoder);
    let x = encoder.transform(table)?;
    let fitted = best.fit(&x, y, opts)?;
    let typical = table
        .columns
        .iter()
        .map(|c| match c {
            Column::Numeric(v) => {
                let mut p: Vec<f64> = v
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|x| x.is_finite())
                    .collect();
                p.sort_by(f64::total_cmp);
                TypicalValue::Numeric(p.get(p.len() / 2).copied())
            }
            Column::Text(v) => {
                let mut counts: std::collections::BTreeMap<&Option<String>, usize> =
                    Default::default();
                for x in v {
                    *counts.entry(x).or_default() += 1;
                }
                TypicalValue::Text(
                    counts
                        .into_iter()
                        .max_by_key(|(_, c)| *c)
                        .and_then(|(l, _)| l.clone()),
                )
            }
        })
        .collect();
    Ok(Classifier {
        encoder,
        fitted,
        platt: calibration,
        platt_range,
        typical,
        model: best.name(opts),
        candidates,
        rows: y.len(),
        positives,
    })
}

impl Classifier {
    /// The input columns the classifier expects.
    pub fn columns(&self) -> &[String] {
        self.encoder.columns()
    }

    /// Calibrated probabilities of the positive class, one per row.
    pub fn predict(&self, table: &Table) -> Result<Vec<f64>> {
        let x = self.encoder.transform(table)?;
        Ok(self
            .fitted
            .score(&x)
            .into_iter()
            .map(|s| {
                let x = match self.platt_range {
                    Some((lo, hi)) => logit(s).clamp(lo, hi),
                    None => logit(s),
                };
                sigmoid(self.platt.0 * x + self.platt.1)
            })
            .collect())
    }

    /// The `top` columns with the largest effect on each row's probability.
    pub fn explain(&self, table: &Table, top: usize) -> Result<Vec<Vec<Contribution>>> {
        let base = self.predict(table)?;
        let mut effects = vec![Vec::new(); table.rows()];
        for (ci, name) in self.columns().iter().enumerate() {
            let Some(pos) = table.names.iter().position(|n| n == name) else {
                return Err(Error::MissingColumn(name.clone()));
            };
            let mut swapped = table.clone();
            swapped.columns[pos] = match (&self.typical[ci], &table.columns[pos]) {
                (TypicalValue::Numeric(v), Column::Numeric(c)) => {
                    Column::Numeric(vec![*v; c.len()])
                }
                (TypicalValue::Text(v), Column::Text(c)) => Column::Text(vec![v.clone(); c.len()]),
                _ => return Err(Error::MissingColumn(format!("{name} (of the other type)"))),
            };
            let p = self.predict(&swapped)?;
            for (r, (b, s)) in base.iter().zip(p).enumerate() {
                effects[r].push(Contribution {
                    column: name.clone(),
                    effect: b - s,
                });
            }
        }
        for e in &mut effects {
            e.sort_by(|a, b| b.effect.abs().total_cmp(&a.effect.abs()));
            e.truncate(top);
        }
        Ok(effects)
    }
}

/// Result of an outer cross-validation of the whole training procedure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrossValidation {
    /// ROC AUC per outer fold.
    pub folds: Vec<f64>,
    /// Mean of `folds`.
    pub mean_auc: f64,
    /// The model chosen in each outer fold.
    pub chosen: Vec<String>,
    /// Share of positives among rows with calibrated probability in each
    /// decile band, against the band's mean probability (reliability).
    pub calibration: Vec<(f64, f64)>,
}

/// Cross-validates [`train`] itself on the deterministic stratified folds
/// (the model choice happens inside each training part, so the AUC is
/// measured on data the whole procedure never saw).
pub fn cross_validate(
    table: &Table,
    y: &[bool],
    folds: usize,
    opts: &ClassifierOptions,
) -> Result<CrossValidation> {
    let assignment = stratified_folds(y, folds);
    let mut aucs = Vec::new();
    let mut chosen = Vec::new();
    let mut all: Vec<(f64, bool)> = Vec::new();
    for f in 0..folds {
        let train_idx: Vec<usize> = (0..y.len()).filter(|i| assignment[*i] != f).collect();
        let test_idx: Vec<usize> = (0..y.len()).filter(|i| assignment[*i] == f).collect();
        let yt: Vec<bool> = train_idx.iter().map(|i| y[*i]).collect();
        let model = train(&table.select(&train_idx), &yt, opts)?;
        let p = model.predict(&table.select(&test_idx))?;
        let ys: Vec<bool> = test_idx.iter().map(|i| y[*i]).collect();
        aucs.push(roc_auc(&p, &ys));
        chosen.push(model.model.clone());
        all.extend(p.into_iter().zip(ys));
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let calibration = all
        .chunks(all.len().div_ceil(10).max(1))
        .map(|c| {
            let mp = c.iter().map(|v| v.0).sum::<f64>() / c.len() as f64;
            let rate = c.iter().filter(|v| v.1).count() as f64 / c.len() as f64;
            (mp, rate)
        })
        .collect();
    Ok(CrossValidation {
        mean_auc: aucs.iter().sum::<f64>() / aucs.len() as f64,
        folds: aucs,
        chosen,
        calibration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_by_hand_and_fold_rule() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            0.75
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), 0.5);
        assert_eq!(
            stratified_folds(&[true, false, true, true, false], 2),
            vec![0, 0, 1, 0, 1]
        );
    }

    #[test]
    fn platt_recovers_a_known_scaling() {
        // Labels drawn as sigmoid(2 * logit(s) - 1), deterministically.
        let mut scores = Vec::new();
        let mut y = Vec::new();
        for i in 1..200 {
            let s = i as f64 / 200.0;
            let p = sigmoid(2.0 * logit(s) - 1.0);
            for k in 0..20 {
                scores.push(s);
                y.push((k as f64 + 0.5) / 20.0 < p);
            }
        }
        let (a, b) = platt(&scores, &y);
        assert!((a - 2.0).abs() < 0.15 && (b + 1.0).abs() < 0.15, "{a} {b}");
    }

    #[test]
    fn platt_without_signal_gives_the_prior() {
        // 80 positives, 20 negatives. Every score the same (a forest whose
        // trees all vote for the majority class): the smoothed prior.
        let y: Vec<bool> = (0..100).map(|i| i % 5 != 0).collect();
        let (a, b) = platt(&[1.0; 100], &y);
        assert_eq!(a, 0.0);
        // The mean of the smoothed targets, 81/82 and 1/22.
        let prior = (80.0 * 81.0 / 82.0 + 20.0 / 22.0) / 100.0;
        assert!((sigmoid(b) - prior).abs() < 1e-9, "{}", sigmoid(b));
        // Scores that rank backwards: the prior too, not an inverted ranking.
        let s: Vec<f64> = y.iter().map(|t| if *t { 0.3 } else { 0.7 }).collect();
        assert_eq!(platt(&s, &y).0, 0.0);
    }

    #[test]
    fn platt_stays_finite_on_separating_scores() {
        // Nearly every score is a unanimous 1.0; the few 0.95s are all
        // negatives, which separates the classes completely. The unguarded
        // fit gave probabilities of exactly 0 and 1; the smoothed targets
        // and the ridge keep both inside (0, 1).
        let mut scores = vec![1.0; 95];
        let mut y = vec![true; 95];
        scores.extend([0.95; 5]);
        y.extend([false; 5]);
        let (a, b) = platt(&scores, &y);
        assert!(a.is_finite() && a > 0.0, "{a} {b}");
        for s in [0.95, 1.0] {
            let p = sigmoid(a * logit(s) + b);
            assert!(p > 0.001 && p < 0.999, "{s}: {p}");
        }
        // The lower score still means a lower probability.
        assert!(sigmoid(a * logit(0.95) + b) < sigmoid(a * logit(1.0) + b));
    }
}
