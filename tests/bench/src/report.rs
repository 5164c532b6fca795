//! The harness's output: a table for the terminal, JSON for machines and an SVG chart (forwarded
//! rate and relay CPU per packet against offered rate or sessions, one line per mode).
//!
//! The chart is a few polylines and labels, written directly: a plotting crate would bring a font
//! stack to measure text for what is a handful of SVG elements.

use std::fmt::Write as _;

use serde_json::json;

use crate::{Mode, Outcome, Summary, loss_free_max, median};

/// What a run varied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every mode at one rate and session count, repeated and interleaved.
    Compare,
    /// Offered rate stepped up until loss passes the threshold, per mode.
    Rate,
    /// Session counts at one rate, per mode.
    Sessions,
}

impl Plan {
    pub fn name(self) -> &'static str {
        match self {
            Plan::Compare => "compare",
            Plan::Rate => "rate",
            Plan::Sessions => "sessions",
        }
    }
}

/// Groups runs by (mode, sessions, asked rate), in first-seen order.
pub fn groups(runs: &[Outcome]) -> Vec<Summary> {
    let mut out: Vec<Summary> = Vec::new();
    for r in runs {
        match out.iter_mut().find(|s| {
            s.mode == r.mode && s.runs[0].sessions == r.sessions && s.runs[0].rate == r.rate
        }) {
            Some(s) => s.runs.push(r.clone()),
            None => out.push(Summary {
                mode: r.mode,
                runs: vec![r.clone()],
            }),
        }
    }
    out
}

/// A group's floor: the same sessions and rate, the mode's floor mode.
fn floor_of<'a>(s: &Summary, all: &'a [Summary]) -> Option<&'a Summary> {
    let f = s.mode.floor()?;
    all.iter().find(|x| {
        x.mode == f && x.runs[0].sessions == s.runs[0].sessions && x.runs[0].rate == s.runs[0].rate
    })
}

fn us(ns: f64) -> f64 {
    ns / 1000.0
}

/// The terminal table: one line per group with medians, then per-mode findings.
pub fn table(plan: Plan, runs: &[Outcome], threshold: f64) -> String {
    let all = groups(runs);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>8} {:>10} {:>11} {:>8} {:>9} {:>9} {:>9} {:>8} {:>10} {:>5}  vs floor",
        "mode",
        "sessions",
        "offered/s",
        "forwarded/s",
        "loss %",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "jit us",
        "CPU/pkt ns",
        "runs"
    );
    for s in &all {
        let ratio = floor_of(s, &all)
            .map(|f| format!("{:.2}x {}", s.median_ns() / f.median_ns(), f.mode.name()))
            .unwrap_or_else(|| {
                if s.mode.floor().is_none() {
                    "(floor)".into()
                } else {
                    "-".into()
                }
            });
        let muted: usize = s.runs.iter().filter_map(|r| r.muted).sum();
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>10.0} {:>11.0} {:>8.4} {:>9.1} {:>9.1} {:>9.1} {:>8.2} {:>10.0} {:>5}  {}{}",
            s.mode.name(),
            s.runs[0].sessions,
            s.median_of(Outcome::offered_pps),
            s.median_of(Outcome::forwarded_pps),
            s.median_of(Outcome::loss) * 100.0,
            us(s.median_of(|r| r.report.latency_p50_ns as f64)),
            us(s.median_of(|r| r.report.latency_p99_ns as f64)),
            us(s.median_of(|r| r.report.latency_p999_ns as f64)),
            us(s.median_of(|r| r.report.jitter_ns)),
            s.median_ns(),
            s.runs.len(),
            ratio,
            if s.runs.iter().any(|r| r.muted.is_some()) {
                format!("  overload: {muted} muted")
            } else {
                String::new()
            }
        );
    }
    match plan {
        Plan::Rate => {
            let _ = writeln!(
                out,
                "\nhighest rate with loss <= {:.4} %:",
                threshold * 100.0
            );
            for m in modes(runs) {
                let rs: Vec<Outcome> = runs.iter().filter(|r| r.mode == m).cloned().collect();
                let _ = writeln!(
                    out,
                    "  {:<12} {}",
                    m.name(),
                    loss_free_max(&rs, threshold)
                        .map_or("none of the rates tried".into(), |r| format!(
                            "{r:.0} packets/s"
                        ))
                );
            }
        }
        Plan::Sessions => {
            let _ = writeln!(
                out,
                "\nCPU per packet at the most sessions / at the fewest:"
            );
            for m in modes(runs) {
                if let Some((lo, hi, ratio)) = growth(&all, m) {
                    let _ = writeln!(
                        out,
                        "  {:<12} {ratio:.2}x ({hi} vs {lo} sessions)",
                        m.name()
                    );
                }
            }
        }
        Plan::Compare => {}
    }
    out
}

fn modes(runs: &[Outcome]) -> Vec<Mode> {
    let mut m: Vec<Mode> = Vec::new();
    for r in runs {
        if !m.contains(&r.mode) {
            m.push(r.mode);
        }
    }
    m
}

/// A mode's CPU per packet at its most sessions over its fewest.
fn growth(all: &[Summary], mode: Mode) -> Option<(usize, usize, f64)> {
    let mine: Vec<&Summary> = all.iter().filter(|s| s.mode == mode).collect();
    let lo = mine.iter().min_by_key(|s| s.runs[0].sessions)?;
    let hi = mine.iter().max_by_key(|s| s.runs[0].sessions)?;
    if lo.runs[0].sessions == hi.runs[0].sessions {
        return None;
    }
    Some((
        lo.runs[0].sessions,
        hi.runs[0].sessions,
        hi.median_ns() / lo.median_ns(),
    ))
}

fn finite(x: f64) -> serde_json::Value {
    if x.is_finite() {
        json!(x)
    } else {
        serde_json::Value::Null
    }
}

/// Everything, for machines: settings, every run, and per group the medians and ratios.
pub fn json(
    plan: Plan,
    settings: serde_json::Value,
    runs: &[Outcome],
    threshold: f64,
    notes: &[String],
) -> String {
    let all = groups(runs);
    let run = |r: &Outcome| {
        json!({
            "mode": r.mode.name(),
            "generator": r.generator.name(),
            "sessions": r.sessions,
            "rate_asked_pps": r.rate,
            "offered": r.offered,
            "forwarded": r.forwarded,
            "seconds": r.seconds,
            "offered_pps": finite(r.offered_pps()),
            "forwarded_pps": finite(r.forwarded_pps()),
            "loss_ratio": r.report.loss_ratio,
            "lost": r.report.lost,
            "duplicates": r.report.duplicates,
            "reordered": r.report.reordered,
            "latency_ns": {
                "p50": r.report.latency_p50_ns,
                "p99": r.report.latency_p99_ns,
                "p999": r.report.latency_p999_ns,
                "max": r.report.latency_max_ns,
            },
            "jitter_ns": finite(r.report.jitter_ns),
            "relay_cpu_ns": r.relay_cpu_ns,
            "ns_per_packet": finite(r.ns_per_packet()),
            "muted_after_overload": r.muted,
        })
    };
    let summaries: Vec<serde_json::Value> = all
        .iter()
        .map(|s| {
            let floor = floor_of(s, &all);
            json!({
                "mode": s.mode.name(),
                "sessions": s.runs[0].sessions,
                "rate_asked_pps": s.runs[0].rate,
                "runs": s.runs.len(),
                "median_ns_per_packet": finite(s.median_ns()),
                "median_forwarded_pps": finite(s.median_of(Outcome::forwarded_pps)),
                "median_loss_ratio": finite(s.median_of(Outcome::loss)),
                "floor": s.mode.floor().map(Mode::name),
                "ratio_to_floor": floor.map(|f| finite(s.median_ns() / f.median_ns())),
            })
        })
        .collect();
    let per_mode: Vec<serde_json::Value> = modes(runs)
        .into_iter()
        .map(|m| {
            let rs: Vec<Outcome> = runs.iter().filter(|r| r.mode == m).cloned().collect();
            json!({
                "mode": m.name(),
                "loss_free_max_pps": loss_free_max(&rs, threshold).map(finite),
                "median_ns_per_packet": finite(median(rs.iter().map(Outcome::ns_per_packet).collect())),
                "cost_growth": growth(&all, m).map(|(lo, hi, r)| json!({"from_sessions": lo, "to_sessions": hi, "ratio": finite(r)})),
            })
        })
        .collect();
    let doc = json!({
        "harness": "mediator-bench",
        "plan": plan.name(),
        "settings": settings,
        "loss_threshold": threshold,
        "modes": per_mode,
        "groups": summaries,
        "runs": runs.iter().map(run).collect::<Vec<_>>(),
        "notes": notes,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Round tick values covering [0, max].
fn ticks(max: f64) -> Vec<f64> {
    if !(max.is_finite() && max > 0.0) {
        return vec![0.0, 1.0];
    }
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (0..=((max / step).ceil() as usize))
        .map(|i| i as f64 * step)
        .collect()
}

fn label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

/// One panel: a line per mode of `y(run)` against `x(run)` (medians per group).
#[allow(clippy::too_many_arguments)]
fn panel(
    svg: &mut String,
    left: f64,
    title: &str,
    xlabel: &str,
    log_x: bool,
    all: &[Summary],
    mode_list: &[Mode],
    x: &dyn Fn(&Summary) -> f64,
    y: &dyn Fn(&Summary) -> f64,
) {
    let (w, h, top) = (380.0, 260.0, 50.0);
    let pts: Vec<(Mode, f64, f64)> = all
        .iter()
        .map(|s| (s.mode, x(s), y(s)))
        .filter(|(_, a, b)| a.is_finite() && b.is_finite() && (!log_x || *a > 0.0))
        .collect();
    let xmax = pts.iter().map(|p| p.1).fold(0.0, f64::max);
    let ymax = pts.iter().map(|p| p.2).fold(0.0, f64::max);
    let yt = ticks(ymax);
    let ytop = yt.last().copied().unwrap_or(1.0).max(1e-9);
    let (xt, xmin, xtop): (Vec<f64>, f64, f64) = if log_x {
        let lo = pts
            .iter()
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min)
            .max(1.0);
        let (a, b) = (
            lo.log10().floor() as i32,
            xmax.max(lo * 10.0).log10().ceil() as i32,
        );
        (
            (a..=b).map(|e| 10f64.powi(e)).collect(),
            10f64.powi(a),
            10f64.powi(b),
        )
    } else {
        let t = ticks(xmax);
        let top = t.last().copied().unwrap_or(1.0).max(1e-9);
        (t, 0.0, top)
    };
    let sx = |v: f64| {
        if log_x {
            left + (v.log10() - xmin.log10()) / (xtop.log10() - xmin.log10()).max(1e-9) * w
        } else {
            left + (v - xmin) / (xtop - xmin).max(1e-9) * w
        }
    };
    let sy = |v: f64| top + h - v / ytop * h;
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>"#,
        left + w / 2.0,
        top - 15.0,
        esc(title)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#888"/>"##
    );
    for t in &yt {
        let yy = sy(*t);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            left + w,
            left - 4.0,
            yy + 3.0,
            label(*t)
        );
    }
    for t in &xt {
        let xx = sx(*t);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
            top + h,
            top + h + 14.0,
            label(*t)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
        left + w / 2.0,
        top + h + 32.0,
        esc(xlabel)
    );
    for (i, m) in mode_list.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut line: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| p.0 == *m)
            .map(|p| (sx(p.1), sy(p.2)))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        if line.len() > 1 {
            let path: Vec<String> = line.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        for (a, b) in &line {
            let _ = writeln!(
                svg,
                r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/>"#
            );
        }
    }
}

/// The chart: forwarded packets/s and relay CPU per packet against the plan's variable.
pub fn svg(plan: Plan, runs: &[Outcome], caption: &str) -> String {
    let all = groups(runs);
    let mode_list = modes(runs);
    let (xlabel, log_x): (&str, bool) = match plan {
        Plan::Sessions => ("sessions", true),
        _ => ("offered packets/s (both directions)", false),
    };
    let x = |s: &Summary| match plan {
        Plan::Sessions => s.runs[0].sessions as f64,
        _ => s.median_of(Outcome::offered_pps),
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="900" height="420" viewBox="0 0 900 420" font-family="sans-serif">"#
    );
    let _ = writeln!(svg, r#"<rect width="900" height="420" fill="white"/>"#);
    panel(
        &mut svg,
        60.0,
        "forwarded packets/s",
        xlabel,
        log_x,
        &all,
        &mode_list,
        &x,
        &|s| s.median_of(Outcome::forwarded_pps),
    );
    panel(
        &mut svg,
        500.0,
        "relay CPU per forwarded packet (ns)",
        xlabel,
        log_x,
        &all,
        &mode_list,
        &x,
        &|s| s.median_ns(),
    );
    for (i, m) in mode_list.iter().enumerate() {
        let lx = 60.0 + i as f64 * 135.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="372" width="14" height="4" fill="{}"/><text x="{}" y="378" font-size="11">{}</text>"#,
            COLORS[i % COLORS.len()],
            lx + 18.0,
            m.name()
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="60" y="405" font-size="10" fill="#555">{}</text>"##,
        esc(caption)
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::tests::run;

    fn sample() -> Vec<Outcome> {
        let mut v = Vec::new();
        for (rate, cpu) in [(1000u64, 2000u64), (2000, 3800), (4000, 8000)] {
            let mut a = run(Mode::XdpFloor, cpu, rate);
            a.rate = rate;
            let mut b = run(Mode::XdpNative, cpu * 11 / 10, rate);
            b.rate = rate;
            v.push(a);
            v.push(b);
        }
        v
    }

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(9.0), vec![0.0, 2.5, 5.0, 7.5, 10.0]);
        assert_eq!(ticks(1800.0), vec![0.0, 500.0, 1000.0, 1500.0, 2000.0]);
        assert_eq!(ticks(f64::NAN), vec![0.0, 1.0]);
    }

    #[test]
    fn table_names_ratios_to_floors() {
        let t = table(Plan::Compare, &sample(), 0.0001);
        assert!(t.contains("1.10x xdp-floor"), "{t}");
        assert!(t.contains("(floor)"), "{t}");
        let t = table(Plan::Rate, &sample(), 0.0001);
        assert!(t.contains("xdp-native   4000 packets/s"), "{t}");
    }

    #[test]
    fn json_parses_and_carries_every_run() {
        let doc: serde_json::Value =
            serde_json::from_str(&json(Plan::Rate, json!({"x": 1}), &sample(), 0.0001, &[]))
                .expect("valid JSON");
        assert_eq!(doc["runs"].as_array().map(Vec::len), Some(6));
        assert_eq!(doc["modes"][1]["loss_free_max_pps"], json!(4000.0));
        let g = &doc["groups"][1];
        assert_eq!(g["floor"], json!("xdp-floor"));
        assert!((g["ratio_to_floor"].as_f64().expect("ratio") - 1.1).abs() < 1e-9);
    }

    #[test]
    fn svg_is_well_formed_with_a_line_per_mode() {
        let s = svg(Plan::Rate, &sample(), "caption <&>");
        let doc = roxmltree::Document::parse(&s).expect("well-formed SVG");
        let lines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .count();
        assert_eq!(lines, 4, "two modes, two panels");
        let s = svg(Plan::Sessions, &sample(), "");
        roxmltree::Document::parse(&s).expect("well-formed SVG for sessions");
    }
}
