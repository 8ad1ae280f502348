//! `roster-sim run ... --plot FILE.svg`: one self-contained SVG with three
//! panels: the distribution of detection latencies, the spread of deltas
//! over time (the fraction of nodes holding a write, averaged over writes),
//! and payload bytes per node per second over time.

use std::fmt::Write as _;

use crate::net::{Nanos, SEC};
use crate::world::Measured;

/// The series a plot draws.
#[derive(Debug, Clone, Default)]
pub struct PlotData {
    /// Title line.
    pub title: String,
    /// Detection latencies, seconds.
    pub detect: Vec<f64>,
    /// (seconds since a write, mean fraction of nodes holding it).
    pub spread: Vec<(f64, f64)>,
    /// (virtual seconds, bytes per node per second).
    pub bytes: Vec<(f64, f64)>,
}

fn s(n: Nanos) -> f64 {
    n as f64 / SEC as f64
}

impl PlotData {
    /// Extracts the series from a finished run.
    pub fn from_measured(m: &Measured, title: &str) -> Self {
        let detect = m.detect.iter().map(|&d| s(d)).collect();
        let spread = if m.write_spread.is_empty() {
            Vec::new()
        } else {
            let horizon = m
                .write_spread
                .iter()
                .flat_map(|(_, d)| d.iter().copied())
                .max()
                .map_or(1.0, s)
                .clamp(0.5, 10.0);
            (0..=100)
                .map(|i| {
                    let t = horizon * f64::from(i) / 100.0;
                    let mean = m
                        .write_spread
                        .iter()
                        .filter(|(a, _)| *a > 0)
                        .map(|(a, d)| d.iter().filter(|&&x| s(x) <= t).count() as f64 / *a as f64)
                        .sum::<f64>()
                        / m.write_spread.iter().filter(|(a, _)| *a > 0).count().max(1) as f64;
                    (t, mean)
                })
                .collect()
        };
        let bytes = m
            .bytes_series
            .windows(2)
            .map(|w| {
                let (t0, b0, _) = w[0];
                let (t1, b1, n) = w[1];
                let per = b1.saturating_sub(b0) as f64 / s(t1 - t0).max(1e-9) / n.max(1) as f64;
                (s(t1), per)
            })
            .collect();
        Self {
            title: title.to_owned(),
            detect,
            spread,
            bytes,
        }
    }

    /// The SVG document.
    pub fn svg(&self) -> String {
        let (w, h) = (1200.0, 400.0);
        let mut out = String::new();
        let _ = write!(
            out,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="20" y="24" font-size="15" font-weight="bold">{}</text>
"##,
            escape(&self.title)
        );
        // Panel 1: histogram of detection latencies.
        let bins = histogram(&self.detect, 20);
        let bars: Vec<(f64, f64)> = bins.iter().map(|&(x, c)| (x, c as f64)).collect();
        panel(
            &mut out,
            20.0,
            "Detection latency (s) — observers",
            &bars,
            true,
        );
        panel(
            &mut out,
            420.0,
            "Delta spread: fraction of nodes holding a write vs s since the write",
            &self.spread,
            false,
        );
        panel(
            &mut out,
            820.0,
            "Payload bytes per node per second vs virtual s",
            &self.bytes,
            false,
        );
        out.push_str("</svg>\n");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `(bin start, count)` over `n` bins.
fn histogram(v: &[f64], n: usize) -> Vec<(f64, usize)> {
    if v.is_empty() {
        return Vec::new();
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let width = ((hi - lo) / n as f64).max(1e-3);
    let mut counts = vec![0usize; n];
    for &x in v {
        let i = (((x - lo) / width) as usize).min(n - 1);
        counts[i] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (lo + width * i as f64, c))
        .collect()
}

/// One 360×300 panel at `x0` with axes, 4 ticks per axis and the data as
/// bars or a line.
fn panel(out: &mut String, x0: f64, title: &str, pts: &[(f64, f64)], bars: bool) {
    let (y0, pw, ph) = (60.0, 330.0, 270.0);
    let (ax, ay) = (x0 + 45.0, y0 + ph);
    let _ = writeln!(
        out,
        r##"<text x="{x0}" y="{}" font-weight="bold">{}</text>"##,
        y0 - 12.0,
        escape(title)
    );
    let _ = writeln!(
        out,
        r##"<line x1="{ax}" y1="{y0}" x2="{ax}" y2="{ay}" stroke="#333"/><line x1="{ax}" y1="{ay}" x2="{}" y2="{ay}" stroke="#333"/>"##,
        ax + pw
    );
    if pts.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" fill="#888">no data in this run</text>"##,
            ax + 20.0,
            y0 + 40.0
        );
        return;
    }
    let xmin = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let mut xmax = pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    if bars {
        xmax += (xmax - xmin).max(1e-3) / pts.len().max(1) as f64;
    }
    let ymax = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.05;
    let xs = |x: f64| ax + (x - xmin) / (xmax - xmin).max(1e-9) * pw;
    let ys = |y: f64| ay - y / ymax * ph;
    for i in 0..=4 {
        let fx = xmin + (xmax - xmin) * f64::from(i) / 4.0;
        let fy = ymax * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{}</text><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text><line x1="{ax}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#eee"/>"##,
            xs(fx),
            ay + 16.0,
            short(fx),
            ax - 4.0,
            ys(fy) + 4.0,
            short(fy),
            ys(fy),
            ax + pw,
            ys(fy)
        );
    }
    if bars {
        let bw = pw / pts.len() as f64;
        for &(x, y) in pts {
            let _ = writeln!(
                out,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#3b6fd4"/>"##,
                xs(x) + 1.0,
                ys(y),
                (bw - 2.0).max(1.0),
                ay - ys(y)
            );
        }
    } else {
        let line: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", xs(x), ys(y)))
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline points="{}" fill="none" stroke="#d4553b" stroke-width="2"/>"##,
            line.join(" ")
        );
    }
}

fn short(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{:.0}", v)
    } else if v.abs() >= 10.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}
