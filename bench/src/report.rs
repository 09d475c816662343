//! Results: each figure is the median of several runs with min and max, printed as a table and
//! written as JSON.

use serde::Serialize;

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// The benchmark it belongs to (`decision`, `scale`, ...).
    pub bench: String,
    /// What was measured, like `decision-to-run p99`.
    pub metric: String,
    pub unit: String,
    /// One value per run.
    pub runs: Vec<f64>,
    /// The floor measured in the same run (same unit), when the figure has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<Vec<f64>>,
    /// The target, as text (`< 1 ms`), when the issue sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether the median meets the target, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

impl Figure {
    pub fn new(bench: &str, metric: &str, unit: &str, runs: Vec<f64>) -> Self {
        Figure {
            bench: bench.into(),
            metric: metric.into(),
            unit: unit.into(),
            runs,
            floor: None,
            target: None,
            met: None,
        }
    }

    pub fn with_floor(mut self, floor: Vec<f64>) -> Self {
        self.floor = Some(floor);
        self
    }

    /// A target with its check on the median (and floor median, when there is a floor).
    pub fn with_target(mut self, target: &str, check: impl Fn(f64, Option<f64>) -> bool) -> Self {
        let floor = self.floor.as_deref().map(median);
        self.met = Some(check(median(&self.runs), floor));
        self.target = Some(target.into());
        self
    }
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `p`-th percentile (0..=100) of unsorted samples, nearest-rank.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn span(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The table printed at the end of a run.
pub fn table(figures: &[Figure]) -> String {
    let mut out = format!(
        "{:<10} {:<44} {:>10} {:>21} {:>10} {:<14} {}\n",
        "bench", "metric", "median", "[min, max]", "floor", "target", "met"
    );
    for f in figures {
        let (min, max) = span(&f.runs);
        let floor = f.floor.as_deref().map(median).map(fmt).unwrap_or_default();
        out.push_str(&format!(
            "{:<10} {:<44} {:>10} {:>21} {:>10} {:<14} {}\n",
            f.bench,
            format!("{} ({})", f.metric, f.unit),
            fmt(median(&f.runs)),
            format!("[{}, {}]", fmt(min), fmt(max)),
            floor,
            f.target.as_deref().unwrap_or(""),
            match f.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), 50.0);
        assert_eq!(percentile(&samples, 99.0), 99.0);
        assert_eq!(percentile(&samples, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn targets_are_checked_on_medians() {
        let f = Figure::new("b", "m", "ms", vec![1.0, 5.0, 2.0])
            .with_floor(vec![1.0, 1.0, 1.5])
            .with_target("within 5 ms of floor", |v, floor| v - floor.unwrap() <= 5.0);
        assert_eq!(f.met, Some(true));
        assert!(table(&[f]).contains("yes"));
    }
}
