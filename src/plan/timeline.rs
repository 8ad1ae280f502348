//! The timeline picture of a plan run: one self-contained SVG, no external
//! tools. One lane per node, coloured by the state the other running nodes
//! hold it in (the state most of them hold), with a dark strip while its
//! process is down, stopped or frozen; the fault bands above, each over the lanes of the nodes it
//! touches; the metadata leader as a gold bar over its lane; the client
//! operations in a lane of their own, marked ok, failed or indeterminate.

use std::fmt::Write as _;

use super::linearizable::Outcome;
use super::record::{Proc, Record, SEC, Seen};

const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const WIDTH: f64 = 1000.0;
const LANE: f64 = 22.0;
const GAP: f64 = 6.0;

fn color(s: Option<Seen>) -> &'static str {
    match s {
        Some(Seen::Alive) => "#4caf50",
        Some(Seen::Suspect) => "#ffb300",
        Some(Seen::Down) => "#e53935",
        Some(Seen::Left) => "#90a4ae",
        None => "#eeeeee",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A stretch of a lane: from, to, how others held the node, its process.
type Segment = (u64, u64, Option<Seen>, Proc);

/// The state most of the running observers hold `s` in (ties go to the
/// worse state).
fn held(s: usize, procs: &[Proc], views: &[Vec<Option<Seen>>]) -> Option<Seen> {
    let mut counts = [0usize; 4];
    for o in (0..procs.len()).filter(|&o| o != s && procs[o] == Proc::Up) {
        if let Some(v) = views[o][s] {
            counts[v as usize] += 1;
        }
    }
    let best = (0..4).rev().max_by_key(|&i| counts[i])?;
    (counts[best] > 0).then(|| [Seen::Alive, Seen::Suspect, Seen::Down, Seen::Left][best])
}

/// The picture being drawn: the SVG text and the geometry.
struct Canvas {
    o: String,
    /// Length of the run, ns.
    end: f64,
    /// Top of the first lane.
    top: f64,
    /// Nodes.
    n: usize,
}

impl Canvas {
    /// The x of a time in ns.
    fn x(&self, t: u64) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * (t as f64 / self.end).min(1.0)
    }

    /// The x of a time in seconds.
    fn xs(&self, t: f64) -> f64 {
        self.x((t * SEC as f64) as u64)
    }

    fn lane_y(&self, i: usize) -> f64 {
        self.top + i as f64 * (LANE + GAP)
    }

    fn ops_y(&self) -> f64 {
        self.lane_y(self.n) + 10.0
    }

    fn lanes(&mut self, r: &Record, lanes: &[Vec<Segment>]) {
        for (i, name) in r.names.iter().enumerate() {
            let y = self.lane_y(i);
            let label = if *name == format!("n{i}") {
                name.clone()
            } else {
                format!("n{i} {name}")
            };
            let _ = write!(
                self.o,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + LANE * 0.7,
                esc(&label)
            );
            for &(a, b, s, p) in &lanes[i] {
                let (xa, w) = (self.x(a), (self.x(b) - self.x(a)).max(0.5));
                let _ = write!(
                    self.o,
                    r#"<rect x="{xa:.1}" y="{y}" width="{w:.1}" height="{LANE}" fill="{}"><title>{}: held {:?}, process {:?}</title></rect>"#,
                    color(s),
                    esc(name),
                    s,
                    p
                );
                if p != Proc::Up {
                    let _ = write!(
                        self.o,
                        r##"<rect x="{xa:.1}" y="{:.1}" width="{w:.1}" height="7" fill="#37474f"/>"##,
                        y + LANE - 7.0
                    );
                }
            }
        }
    }

    /// The leader: a gold bar over its lane while it leads.
    fn leaders(&mut self, r: &Record) {
        for (k, &(t, l)) in r.leaders.iter().enumerate() {
            let until = r.leaders.get(k + 1).map_or(r.end, |n| n.0);
            if let Some(l) = l.filter(|&l| l < self.n) {
                let (xa, w) = (self.x(t), (self.x(until) - self.x(t)).max(0.5));
                let _ = write!(
                    self.o,
                    r##"<rect x="{xa:.1}" y="{:.1}" width="{w:.1}" height="4" fill="#ffd600"><title>leader {}</title></rect>"##,
                    self.lane_y(l) - 4.0,
                    esc(&r.names[l])
                );
            }
        }
    }

    /// Fault bands: a labelled bar each, and an outline over the lanes
    /// touched.
    fn bands(&mut self, r: &Record) {
        for (k, b) in r.bands.iter().enumerate() {
            let to = b.to.unwrap_or(r.end as f64 / SEC as f64);
            let (a, w) = (self.xs(b.from), (self.xs(to) - self.xs(b.from)).max(2.0));
            let row = 30.0 + 16.0 * (k % 12) as f64;
            let _ = write!(
                self.o,
                r##"<rect x="{a:.1}" y="{row}" width="{w:.1}" height="12" fill="#7e57c2" opacity="0.8"/><text x="{:.1}" y="{:.1}" fill="#311b92">{}</text>"##,
                a + w + 3.0,
                row + 10.0,
                esc(&b.label)
            );
            for &i in b.nodes.iter().filter(|&&i| i < self.n) {
                let _ = write!(
                    self.o,
                    r##"<rect x="{a:.1}" y="{}" width="{w:.1}" height="{LANE}" fill="none" stroke="#7e57c2" stroke-width="1.5" stroke-dasharray="4 2"/>"##,
                    self.lane_y(i)
                );
            }
        }
    }

    /// Client operations, each a tick where it returned (or was invoked,
    /// when it never returned).
    fn ops(&mut self, r: &Record) {
        let y = self.ops_y();
        let _ = write!(
            self.o,
            r#"<text x="{}" y="{}" text-anchor="end">clients</text>"#,
            LEFT - 6.0,
            y + LANE * 0.7
        );
        for (_, call, ret, outcome) in r.history.entries() {
            let (fill, what) = match outcome {
                Outcome::Failed => (OP_FAILED, "failed"),
                Outcome::Unknown => (OP_UNKNOWN, "indeterminate"),
                _ => (OP_OK, "ok"),
            };
            let _ = write!(
                self.o,
                r#"<rect x="{:.1}" y="{y}" width="1.5" height="{LANE}" fill="{fill}"><title>{what}</title></rect>"#,
                self.x(ret.unwrap_or(call))
            );
        }
    }

    /// The time axis, the end of the fault phase and the legend.
    fn axis(&mut self, r: &Record) {
        let axis_y = self.ops_y() + LANE + 16.0;
        let step = ((self.end / SEC as f64) / 10.0).ceil().max(1.0) as u64;
        let mut t = 0;
        while t * SEC <= r.end {
            let _ = write!(
                self.o,
                r#"<text x="{:.1}" y="{axis_y}" text-anchor="middle">{t} s</text>"#,
                self.x(t * SEC)
            );
            t += step;
        }
        let fe = self.x(r.faults_end);
        let _ = write!(
            self.o,
            r##"<line x1="{fe:.1}" x2="{fe:.1}" y1="{}" y2="{:.1}" stroke="#311b92" stroke-dasharray="3 3"/>"##,
            self.top,
            self.ops_y() + LANE
        );
        let legend = [
            ("#4caf50", "Alive"),
            ("#ffb300", "Suspect"),
            ("#e53935", "Down"),
            ("#90a4ae", "Left"),
            ("#37474f", "process down, stopped or frozen (strip)"),
            ("#ffd600", "leader"),
            ("#7e57c2", "fault"),
            (OP_OK, "op ok"),
            (OP_FAILED, "op failed"),
            (OP_UNKNOWN, "op indeterminate"),
        ];
        let mut lx = LEFT;
        for (c, label) in legend {
            let _ = write!(
                self.o,
                r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{c}"/><text x="{}" y="{}">{label}</text>"#,
                axis_y + 14.0,
                lx + 13.0,
                axis_y + 23.0
            );
            lx += 20.0 + 6.5 * label.len() as f64;
        }
    }
}

const OP_OK: &str = "#43a047";
const OP_FAILED: &str = "#6a1b9a";
const OP_UNKNOWN: &str = "#ff9800";

/// Each node's lane: the stretches between changes of how the others hold
/// it or of its process.
fn segments(r: &Record) -> Vec<Vec<Segment>> {
    let n = r.names.len();
    let mut seg: Vec<(u64, Option<Seen>, Proc)> = vec![(0, None, Proc::Up); n];
    let mut lanes: Vec<Vec<Segment>> = vec![Vec::new(); n];
    super::record::Replay::new(r).each(|t, procs, views, down| {
        if down.is_some() {
            return;
        }
        for s in 0..n {
            let now = (held(s, procs, views), procs[s]);
            if (seg[s].1, seg[s].2) != now || t == r.end {
                if t > seg[s].0 {
                    lanes[s].push((seg[s].0, t, seg[s].1, seg[s].2));
                }
                seg[s] = (t, now.0, now.1);
            }
        }
    });
    lanes
}

/// Draws `r` as an SVG document.
pub fn svg(r: &Record, title: &str) -> String {
    let n = r.names.len();
    let mut c = Canvas {
        o: String::new(),
        end: r.end.max(1) as f64,
        top: 40.0 + 16.0 * r.bands.len().min(12) as f64,
        n,
    };
    let height = c.ops_y() + LANE + 70.0;
    let _ = write!(
        c.o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        c.o,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18" font-size="14">{}</text>"#,
        esc(title)
    );
    c.lanes(r, &segments(r));
    c.leaders(r);
    c.bands(r);
    c.ops(r);
    c.axis(r);
    c.o.push_str("</svg>\n");
    c.o
}
