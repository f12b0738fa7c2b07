//! Medians, ratios to the floor, targets; printed as a table or one JSON
//! object.

use serde_json::{Map, Value, json};

use super::suite::RunResult;
use super::workloads::{Latencies, Sizes, Transfer};

/// A performance target (from the issues), checked against a figure.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// The ratio to the floor is at least this.
    RatioAtLeast(f64),
    /// The ratio to the floor is at most this.
    RatioAtMost(f64),
    /// The value itself is at most this.
    AtMost(f64),
}

impl Goal {
    fn describe(self) -> String {
        match self {
            Goal::RatioAtLeast(r) => format!("ratio >= {r}"),
            Goal::RatioAtMost(r) => format!("ratio <= {r}"),
            Goal::AtMost(v) => format!("<= {v}"),
        }
    }
}

/// One figure: its per-run values, their median, the floor's median and
/// the ratio between them.
#[derive(Debug, Clone)]
pub struct Row {
    /// Workload id, e.g. `B1-down`.
    pub workload: &'static str,
    /// Figure as printed, e.g. `MB/s`.
    pub figure: &'static str,
    /// Figure as a JSON key, e.g. `mb_per_s`.
    pub key: &'static str,
    /// One value per run.
    pub runs: Vec<f64>,
    /// Median of `runs`.
    pub value: f64,
    /// The floor's corresponding median, if the floor ran.
    pub floor: Option<f64>,
    /// The target, if the issues set one.
    pub goal: Option<Goal>,
}

impl Row {
    /// `value / floor`.
    pub fn ratio(&self) -> Option<f64> {
        self.floor.filter(|f| *f > 0.0).map(|f| self.value / f)
    }

    /// Whether the target is met; `None` without a target (or a floor).
    pub fn met(&self) -> Option<bool> {
        match self.goal? {
            Goal::RatioAtLeast(r) => self.ratio().map(|x| x >= r),
            Goal::RatioAtMost(r) => self.ratio().map(|x| x <= r),
            Goal::AtMost(v) => Some(self.value <= v),
        }
    }
}

/// The median (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(f64::NAN),
        n => {
            let a = v.get(n / 2 - 1).copied().unwrap_or(f64::NAN);
            let b = v.get(n / 2).copied().unwrap_or(f64::NAN);
            (a + b) / 2.0
        }
    }
}

struct Builder<'a> {
    results: &'a [RunResult],
    rows: Vec<Row>,
}

impl Builder<'_> {
    fn collect<T>(
        &self,
        pick: impl Fn(&RunResult) -> Option<&T>,
        f: impl Fn(&T) -> f64,
    ) -> Vec<f64> {
        self.results
            .iter()
            .filter_map(|r| pick(r).map(&f))
            .collect()
    }

    fn floor_of<T>(
        &self,
        pick: impl Fn(&RunResult) -> Option<&T>,
        f: impl Fn(&T) -> f64,
    ) -> Option<f64> {
        let v = self.collect(pick, f);
        (!v.is_empty()).then(|| median(&v))
    }

    #[allow(clippy::too_many_arguments)]
    fn push<T>(
        &mut self,
        workload: &'static str,
        figure: &'static str,
        key: &'static str,
        pick: impl Fn(&RunResult) -> Option<&T>,
        f: impl Fn(&T) -> f64,
        floor: Option<f64>,
        goal: Option<Goal>,
    ) {
        let runs = self.collect(pick, f);
        if runs.is_empty() {
            return;
        }
        self.rows.push(Row {
            workload,
            figure,
            key,
            value: median(&runs),
            runs,
            floor,
            goal,
        });
    }

    fn transfer(
        &mut self,
        workload: &'static str,
        pick: impl Fn(&RunResult) -> Option<&Transfer> + Copy,
        mb_goal: Option<Goal>,
        cpu_goal: Option<Goal>,
    ) {
        let floor_mb = self.floor_of(|r| r.floor_b1.as_ref(), Transfer::mb_per_s);
        let floor_cpu = self.floor_of(|r| r.floor_b1.as_ref(), Transfer::cpu_s_per_gib);
        self.push(
            workload,
            "MB/s",
            "mb_per_s",
            pick,
            Transfer::mb_per_s,
            floor_mb,
            mb_goal,
        );
        self.push(
            workload,
            "CPU s/GiB",
            "cpu_s_per_gib",
            pick,
            Transfer::cpu_s_per_gib,
            floor_cpu,
            cpu_goal,
        );
    }

    fn latency(
        &mut self,
        workload: &'static str,
        pick: impl Fn(&RunResult) -> Option<&Latencies> + Copy,
        dials_goal: Option<Goal>,
        p99_goal: Option<Goal>,
    ) {
        let floor = |b: &Self, f: fn(&Latencies) -> f64| b.floor_of(|r| r.floor_b3.as_ref(), f);
        let (fd, f50, f99) = (
            floor(self, Latencies::dials_per_s),
            floor(self, |l| l.quantile_us(0.5)),
            floor(self, |l| l.quantile_us(0.99)),
        );
        self.push(
            workload,
            "dials/s",
            "dials_per_s",
            pick,
            Latencies::dials_per_s,
            fd,
            dials_goal,
        );
        self.push(
            workload,
            "p50 µs",
            "p50_us",
            pick,
            |l| l.quantile_us(0.5),
            f50,
            None,
        );
        self.push(
            workload,
            "p99 µs",
            "p99_us",
            pick,
            |l| l.quantile_us(0.99),
            f99,
            p99_goal,
        );
    }
}

/// The rows of the report, in BENCHMARKS.md order, floor first.
pub fn rows(results: &[RunResult]) -> Vec<Row> {
    let mut b = Builder {
        results,
        rows: Vec::new(),
    };
    b.transfer("floor B1-down", |r| r.floor_b1.as_ref(), None, None);
    b.latency("floor B3-seq", |r| r.floor_b3.as_ref(), None, None);
    b.transfer(
        "B1-down",
        |r| r.b1_down.as_ref(),
        Some(Goal::RatioAtLeast(0.45)),
        Some(Goal::AtMost(0.8)),
    );
    b.transfer(
        "B1-up",
        |r| r.b1_up.as_ref(),
        Some(Goal::RatioAtLeast(0.45)),
        Some(Goal::AtMost(0.8)),
    );
    b.transfer("B2", |r| r.b2.as_ref(), Some(Goal::RatioAtLeast(0.5)), None);
    b.latency(
        "B3-seq",
        |r| r.b3_seq.as_ref(),
        Some(Goal::RatioAtLeast(0.8)),
        Some(Goal::RatioAtMost(2.0)),
    );
    b.latency("B3-par", |r| r.b3_par.as_ref(), None, None);
    let mib = |v: u64| v as f64 / (1 << 20) as f64;
    b.push(
        "B4",
        "RSS before MiB",
        "rss_before_mib",
        |r| r.b4.as_ref(),
        |i| mib(i.rss_before),
        None,
        None,
    );
    b.push(
        "B4",
        "RSS after MiB",
        "rss_after_mib",
        |r| r.b4.as_ref(),
        |i| mib(i.rss_after),
        None,
        None,
    );
    b.push(
        "B4",
        "bytes/conn",
        "bytes_per_conn",
        |r| r.b4.as_ref(),
        |i| i.bytes_per_conn(),
        None,
        Some(Goal::AtMost(4096.0)),
    );
    b.rows
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Run conditions printed with the figures.
#[derive(Debug, Clone)]
pub struct Context {
    /// `tokio` or `async-std`.
    pub runtime: &'static str,
    /// `--quick`.
    pub quick: bool,
    /// Repetitions.
    pub runs: usize,
    /// Sizes and counts.
    pub sizes: Sizes,
    /// Load average when the benchmark started.
    pub load_start: String,
    /// Load average when it ended.
    pub load_end: String,
    /// Largest Data payload per message (proto `max_data_message`).
    pub max_data_message: usize,
}

/// The default output: one line per figure.
pub fn table(ctx: &Context, rows: &[Row]) -> String {
    let mut out = format!(
        "tunnel-bench: runtime {}, {} (median of {} runs), max_data_message {} B, load avg {} -> {}\n",
        ctx.runtime,
        if ctx.quick {
            "quick (sizes / 16)"
        } else {
            "full sizes"
        },
        ctx.runs,
        ctx.max_data_message,
        ctx.load_start,
        ctx.load_end,
    );
    out.push_str(&format!(
        "{:<14} {:<15} {:>10} {:>10} {:>7}  {:<14} {}\n",
        "workload", "figure", "value", "floor", "ratio", "target", "met"
    ));
    for r in rows {
        let floor = r.floor.map_or("-".into(), fmt_num);
        let ratio = r.ratio().map_or("-".into(), |x| format!("{x:.2}"));
        let goal = r.goal.map_or(String::new(), Goal::describe);
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        out.push_str(&format!(
            "{:<14} {:<15} {:>10} {:>10} {:>7}  {:<14} {}\n",
            r.workload,
            r.figure,
            fmt_num(r.value),
            floor,
            ratio,
            goal,
            met
        ));
    }
    out
}

/// The `--json` output: one object.
pub fn json(ctx: &Context, rows: &[Row]) -> Value {
    let mut figures = Map::new();
    for r in rows {
        let entry = figures
            .entry(r.workload.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(
                r.key.to_owned(),
                json!({
                    "value": r.value,
                    "runs": r.runs,
                    "floor": r.floor,
                    "ratio": r.ratio(),
                    "target": r.goal.map(Goal::describe),
                    "met": r.met(),
                }),
            );
        }
    }
    let s = ctx.sizes;
    json!({
        "runtime": ctx.runtime,
        "quick": ctx.quick,
        "runs": ctx.runs,
        "max_data_message": ctx.max_data_message,
        "load_average": { "start": ctx.load_start, "end": ctx.load_end },
        "sizes": {
            "b1_bytes": s.b1_bytes,
            "b2_conns": s.b2_conns,
            "b2_bytes": s.b2_bytes,
            "b3_seq": s.b3_seq,
            "b3_par": s.b3_par,
            "b3_workers": s.b3_workers,
            "b4_conns": s.b4_conns,
        },
        "figures": figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
