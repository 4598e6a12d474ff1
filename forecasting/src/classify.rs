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

/// Platt scaling: logistic regression of the label on `logit(score)`, by
/// Newton's method.
fn platt(scores: &[f64], y: &[bool]) -> (f64, f64) {
    let (mut a, mut b) = (1.0, 0.0);
    for _ in 0..50 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for (s, t) in scores.iter().zip(y) {
            let x = logit(*s);
            let p = sigmoid(a * x + b);
            let r = p - f64::from(u8::from(*t));
            let w = p * (1.0 - p);
            ga += r * x;
            gb += r;
            haa += w * x * x;
            hab += w * x;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-12 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() + db.abs() < 1e-9 {
            break;
        }
    }
    (a, b)
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
            .map(|s| sigmoid(self.platt.0 * logit(s) + self.platt.1))
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
}
