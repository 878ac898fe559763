//! The figures a run produced, each with its target and its baseline, printed as one
//! Markdown table (the format of `docs/benchmarks.md`) and kept as JSON.
//!
//! The report only reports: a missed target is a row marked "missed", never an error.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// How a figure is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    PerSecond,
    Millis,
    MiB,
    KiB,
    Count,
    Seconds,
    /// Instructions executed (callgrind), shown in millions.
    Instructions,
}

impl Unit {
    fn format(self, v: f64) -> String {
        match self {
            Unit::PerSecond => format!("{v:.1}/s"),
            Unit::Millis if v < 10.0 => format!("{v:.2} ms"),
            Unit::Millis => format!("{v:.1} ms"),
            Unit::MiB => format!("{v:.1} MiB"),
            Unit::KiB => format!("{v:.1} KiB"),
            Unit::Count => format!("{v:.0}"),
            Unit::Seconds if v < 10.0 => format!("{v:.2} s"),
            Unit::Seconds => format!("{v:.1} s"),
            Unit::Instructions => format!("{:.2} M instructions", v / 1e6),
        }
    }
}

/// A bound the issue sets for a figure: on its value, or on its ratio to its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
    RatioAtLeast(f64),
}

/// A baseline figure measured in the same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    pub name: String,
    pub value: f64,
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub scenario: String,
    pub metric: String,
    pub value: f64,
    pub unit: Unit,
    /// Whether more is better (throughput) or less (latency, memory).
    pub higher_is_better: bool,
    pub target: Option<Target>,
    /// How the target reads in the issue, e.g. "≥ 20× per-image".
    pub target_text: Option<String>,
    pub baseline: Option<Baseline>,
    /// Anything the reader needs to read the number right.
    pub note: String,
    /// How many samples the figure is made of, when it is made of samples: a latency of
    /// no samples (every request failed) is 0 ms and must not meet its target.
    pub samples: Option<u64>,
    /// Whether dividing by the baseline means anything: not for memory added against
    /// the memory of an empty process, which the baseline is only the context of.
    pub no_ratio: bool,
}

impl Figure {
    pub fn new(scenario: &str, metric: &str, value: f64, unit: Unit) -> Self {
        Self {
            scenario: scenario.to_owned(),
            metric: metric.to_owned(),
            value,
            unit,
            higher_is_better: matches!(unit, Unit::PerSecond),
            target: None,
            target_text: None,
            baseline: None,
            note: String::new(),
            samples: None,
            no_ratio: false,
        }
    }

    pub fn latency(scenario: &str, metric: &str, d: Duration) -> Self {
        Self::new(scenario, metric, d.as_secs_f64() * 1e3, Unit::Millis)
    }

    pub fn target(mut self, target: Target, text: &str) -> Self {
        self.target = Some(target);
        self.target_text = Some(text.to_owned());
        self
    }

    pub fn baseline(mut self, name: &str, value: f64) -> Self {
        self.baseline = Some(Baseline {
            name: name.to_owned(),
            value,
        });
        self
    }

    /// The number of samples behind the figure; with none it misses its target.
    pub fn samples(mut self, n: u64) -> Self {
        self.samples = Some(n);
        self
    }

    /// The baseline is shown beside the figure, without a ratio.
    pub fn no_ratio(mut self) -> Self {
        self.no_ratio = true;
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// How many times better than the baseline (above 1: signet is better).
    pub fn ratio(&self) -> Option<f64> {
        if self.no_ratio {
            return None;
        }
        let b = self.baseline.as_ref()?;
        let (num, den) = if self.higher_is_better {
            (self.value, b.value)
        } else {
            (b.value, self.value)
        };
        (den > 0.0).then(|| num / den)
    }

    /// Whether the target is met; `None` without a target (or a ratio target without a
    /// baseline).
    pub fn met(&self) -> Option<bool> {
        if self.target.is_some() && self.samples == Some(0) {
            return Some(false);
        }
        match self.target? {
            Target::AtLeast(t) => Some(self.value >= t),
            Target::AtMost(t) => Some(self.value <= t),
            Target::RatioAtLeast(t) => self.ratio().map(|r| r >= t),
        }
    }
}

/// Every figure of a run, and where the run happened.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub profile: String,
    pub machine: String,
    pub started: String,
    pub figures: Vec<Figure>,
    /// Scenarios that could not run, with why.
    pub skipped: Vec<String>,
}

impl Report {
    pub fn push(&mut self, f: Figure) {
        println!("  {}", line(&f));
        self.figures.push(f);
    }

    pub fn skip(&mut self, what: &str, why: &anyhow::Error) {
        let text = format!("{what}: {why:#}");
        println!("  NOT MEASURED {text}");
        self.skipped.push(text);
    }

    /// The Markdown table of `docs/benchmarks.md`.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "profile `{}`, started {}, on {}\n",
            self.profile, self.started, self.machine
        );
        out.push_str("| scenario | figure | measured | target | met | baseline | ratio | note |\n");
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for f in &self.figures {
            let baseline = f
                .baseline
                .as_ref()
                .map(|b| format!("{}: {}", b.name, f.unit.format(b.value)))
                .unwrap_or_default();
            let ratio = f.ratio().map(times).unwrap_or_default();
            let met = match f.met() {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                f.scenario,
                f.metric,
                f.unit.format(f.value),
                f.target_text.as_deref().unwrap_or(""),
                met,
                baseline,
                ratio,
                f.note
            );
        }
        for s in &self.skipped {
            let _ = writeln!(out, "\nnot measured: {s}");
        }
        out
    }
}

fn times(r: f64) -> String {
    if r < 1.0 {
        format!("{r:.2}×")
    } else {
        format!("{r:.1}×")
    }
}

fn line(f: &Figure) -> String {
    let mut s = format!("{} / {}: {}", f.scenario, f.metric, f.unit.format(f.value));
    if let Some(r) = f.ratio() {
        let _ = write!(s, " ({} the baseline)", times(r));
    }
    match f.met() {
        Some(true) => s.push_str(" [target met]"),
        Some(false) => s.push_str(" [target MISSED]"),
        None => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_say_how_many_times_better() {
        let t = Figure::new("storm", "throughput", 200.0, Unit::PerSecond).baseline("one", 10.0);
        assert_eq!(t.ratio(), Some(20.0));
        // For a latency, lower is better: the baseline's over ours.
        let l = Figure::latency("cold", "p99", Duration::from_millis(5)).baseline("uncached", 20.0);
        assert_eq!(l.ratio(), Some(4.0));
        assert_eq!(
            Figure::new("x", "y", 1.0, Unit::PerSecond)
                .baseline("zero", 0.0)
                .ratio(),
            None
        );
        let added = Figure::new("inventory", "RSS added", 30.0, Unit::MiB)
            .baseline("empty", 20.0)
            .no_ratio()
            .target(Target::AtMost(50.0), "≤ 50 MiB");
        assert_eq!(added.ratio(), None);
        assert_eq!(added.met(), Some(true));
    }

    #[test]
    fn targets_on_values_and_on_ratios() {
        let p99 = Figure::latency("warm", "p99", Duration::from_micros(2500))
            .target(Target::AtMost(2.0), "< 2 ms");
        assert_eq!(p99.met(), Some(false));
        let mem = Figure::new("verifier", "RSS", 40.0, Unit::MiB)
            .target(Target::AtMost(64.0), "< 64 MiB");
        assert_eq!(mem.met(), Some(true));
        let ratio = Figure::new("storm", "throughput", 150.0, Unit::PerSecond)
            .baseline("per-image", 10.0)
            .target(Target::RatioAtLeast(20.0), "≥ 20× per-image");
        assert_eq!(ratio.met(), Some(false), "15× is not 20×");
        let nothing = Figure::latency("cold", "p99", Duration::ZERO)
            .target(Target::AtMost(20.0), "< 20 ms")
            .samples(0);
        assert_eq!(nothing.met(), Some(false), "every request failed");
        let share = Figure::new("storm", "throughput", 90.0, Unit::PerSecond)
            .baseline("registry ceiling", 100.0)
            .target(Target::RatioAtLeast(0.8), "≥ 80% of the ceiling");
        assert_eq!(share.met(), Some(true));
        assert_eq!(Figure::new("a", "b", 1.0, Unit::Count).met(), None);
    }

    #[test]
    fn the_table_has_one_row_per_figure() {
        let mut r = Report {
            profile: "quick".into(),
            ..Report::default()
        };
        r.figures.push(
            Figure::new("storm (nats)", "throughput", 123.4, Unit::PerSecond)
                .baseline("per-image", 10.0)
                .target(Target::RatioAtLeast(20.0), "≥ 20× per-image"),
        );
        r.figures.push(
            Figure::latency("warm", "p99", Duration::from_micros(850))
                .target(Target::AtMost(2.0), "< 2 ms"),
        );
        let md = r.markdown();
        assert!(md.contains("| storm (nats) | throughput | 123.4/s | ≥ 20× per-image | **missed** | per-image: 10.0/s | 12.3× |"), "{md}");
        assert!(
            md.contains("| warm | p99 | 0.85 ms | < 2 ms | met |"),
            "{md}"
        );
    }
}
