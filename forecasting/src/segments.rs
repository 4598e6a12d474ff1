//! Customer segments: k-means (linfa-clustering) on recency, frequency and
//! monetary value, with readable names.
//!
//! Features are `ln(1 + x)` of recency (days since the last order),
//! frequency (orders) and monetary value (revenue), standardised. Names come
//! from each centroid's position against the average customer (above or
//! below on each of "recent", "frequent", "spends"):
//!
//! | recent | frequent or spends | name |
//! |---|---|---|
//! | yes | both | champions |
//! | yes | one | loyal |
//! | yes | neither | new or promising |
//! | no | at least one | at risk |
//! | no | neither | hibernating |
//!
//! Two segments with the same name are told apart by their rank in value
//! ("at risk (2)").

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand08::SeedableRng;
use rand08::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, invalid};

/// One customer's RFM values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rfm {
    /// Days since the last order.
    pub recency_days: f64,
    /// Number of orders.
    pub frequency: f64,
    /// Revenue.
    pub monetary: f64,
}

/// One segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Readable name.
    pub name: String,
    /// Customers in it.
    pub size: usize,
    /// Mean recency (days), frequency and monetary value of its customers.
    pub mean: Rfm,
}

/// Segments and each customer's segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segmentation {
    /// Segments, most valuable first.
    pub segments: Vec<Segment>,
    /// Index into `segments` per input customer.
    pub assignment: Vec<usize>,
}

/// Splits customers into `k` segments (2..=8).
pub fn segment(customers: &[Rfm], k: usize, seed: u64) -> Result<Segmentation> {
    if !(2..=8).contains(&k) {
        return Err(invalid("k", format!("{k} is not in 2..=8")));
    }
    if customers.len() < k * 5 {
        return Err(Error::TooLittleHistory {
            what: format!("{k} segments (customers)"),
            needed: k * 5,
            got: customers.len(),
        });
    }
    let raw: Vec<[f64; 3]> = customers
        .iter()
        .map(|c| {
            [
                c.recency_days.max(0.0).ln_1p(),
                c.frequency.max(0.0).ln_1p(),
                c.monetary.max(0.0).ln_1p(),
            ]
        })
        .collect();
    let n = raw.len() as f64;
    let mut mean = [0.0; 3];
    let mut std = [0.0; 3];
    for j in 0..3 {
        mean[j] = raw.iter().map(|r| r[j]).sum::<f64>() / n;
        std[j] = (raw.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n)
            .sqrt()
            .max(1e-9);
    }
    let x = Array2::from_shape_fn((raw.len(), 3), |(i, j)| (raw[i][j] - mean[j]) / std[j]);
    let data = DatasetBase::from(x.clone());
    let model = KMeans::params_with_rng(k, SmallRng::seed_from_u64(seed))
        .n_runs(5)
        .max_n_iterations(200)
        .tolerance(1e-6)
        .fit(&data)
        .map_err(|e| Error::Model {
            model: "k-means",
            message: e.to_string(),
        })?;
    let labels = model.predict(&x);
    // Per-cluster sizes and means in original units.
    let mut size = vec![0usize; k];
    let mut sums = vec![[0.0; 3]; k];
    let mut zsum = vec![[0.0; 3]; k];
    for (i, l) in labels.iter().enumerate() {
        size[*l] += 1;
        let c = customers[i];
        for (j, v) in [c.recency_days, c.frequency, c.monetary]
            .into_iter()
            .enumerate()
        {
            sums[*l][j] += v;
            zsum[*l][j] += x[[i, j]];
        }
    }
    let mut order: Vec<usize> = (0..k).filter(|c| size[*c] > 0).collect();
    // Most valuable first: frequent and spending, recent.
    let value = |c: usize| (-zsum[c][0] + zsum[c][1] + zsum[c][2]) / size[c] as f64;
    order.sort_by(|a, b| value(*b).total_cmp(&value(*a)));
    let mut names: Vec<String> = Vec::new();
    let mut segments = Vec::new();
    let mut remap = vec![0usize; k];
    for (rank, c) in order.iter().enumerate() {
        let z = |j: usize| zsum[*c][j] / size[*c] as f64;
        let recent = z(0) < 0.0;
        let ups = usize::from(z(1) > 0.0) + usize::from(z(2) > 0.0);
        let base = match (recent, ups) {
            (true, 2) => "champions",
            (true, 1) => "loyal",
            (true, _) => "new or promising",
            (false, 0) => "hibernating",
            (false, _) => "at risk",
        };
        let same = names.iter().filter(|n| n.starts_with(base)).count();
        let name = if same == 0 {
            base.to_string()
        } else {
            format!("{base} ({})", same + 1)
        };
        names.push(name.clone());
        remap[*c] = rank;
        let s = size[*c] as f64;
        segments.push(Segment {
            name,
            size: size[*c],
            mean: Rfm {
                recency_days: sums[*c][0] / s,
                frequency: sums[*c][1] / s,
                monetary: sums[*c][2] / s,
            },
        });
    }
    Ok(Segmentation {
        segments,
        assignment: labels.iter().map(|l| remap[*l]).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_obvious_groups_get_their_names() {
        let mut c = Vec::new();
        for i in 0..50 {
            let j = i as f64 / 50.0;
            c.push(Rfm {
                recency_days: 2.0 + j,
                frequency: 20.0 + j,
                monetary: 2000.0 + 10.0 * j,
            });
            c.push(Rfm {
                recency_days: 300.0 + j,
                frequency: 1.0,
                monetary: 20.0 + j,
            });
            c.push(Rfm {
                recency_days: 200.0 + j,
                frequency: 15.0 + j,
                monetary: 1500.0 + j,
            });
        }
        let s = segment(&c, 3, 7).unwrap();
        let names: Vec<&str> = s.segments.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["champions", "at risk", "hibernating"], "{s:?}");
        assert!(s.segments.iter().all(|s| s.size == 50));
        assert_eq!(s.segments[s.assignment[0]].name, "champions");
        assert!(segment(&c[..5], 3, 7).is_err());
        assert!(segment(&c, 1, 7).is_err());
    }
}
