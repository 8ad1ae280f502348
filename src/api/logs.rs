//! The agent's log lines, live, for `GET /v1/logs/stream` (`roster monitor
//! --logs`): a tracing layer that hands each event, formatted, to the
//! streams open at that moment, like `consul monitor`.
//!
//! The layer's own level follows the most verbose stream open (and is off
//! with none), so lines no one watches cost nothing, and a stream may ask
//! for `debug` while the agent writes only `info` to its output. It is
//! process-wide, as the tracing subscriber is: add [`layer`]'s layer to the
//! subscriber, then, once that subscriber is installed, call
//! [`Installer::install`].

use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use tokio::sync::broadcast;
use tracing::Level;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Lines buffered per stream; a stream that falls further behind skips
/// lines and is told how many.
const BUFFER: usize = 1024;
/// Longest line kept (longer ones are cut, saying so).
const MAX_LINE: usize = 8 * 1024;

/// One log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Wall time, Unix milliseconds.
    pub at_ms: u64,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: &'static str,
    /// The module that logged it.
    pub target: String,
    /// The message and its fields (`key=value`).
    pub message: String,
    #[serde(skip)]
    rank: u8,
}

impl LogLine {
    /// Whether a stream at `level` shows this line.
    pub fn shown_at(&self, level: Level) -> bool {
        self.rank <= rank(level)
    }
}

fn rank(l: Level) -> u8 {
    match l {
        Level::ERROR => 0,
        Level::WARN => 1,
        Level::INFO => 2,
        Level::DEBUG => 3,
        Level::TRACE => 4,
    }
}

type Reload = Box<dyn Fn(LevelFilter) + Send + Sync>;

struct Shared {
    tx: broadcast::Sender<Arc<LogLine>>,
    /// Open streams per level rank.
    open: Mutex<[usize; 5]>,
    reload: Reload,
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// A subscription to the log lines at `level` or more severe; lines come
/// out of [`Subscription::receiver`]. Dropping it lowers the layer's level
/// again if no other stream needs it.
pub struct Subscription {
    level: Level,
    rx: broadcast::Receiver<Arc<LogLine>>,
}

impl Subscription {
    /// The level asked for.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The lines (all levels the layer passes; filter with
    /// [`LogLine::shown_at`]).
    pub fn receiver(&mut self) -> &mut broadcast::Receiver<Arc<LogLine>> {
        &mut self.rx
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(s) = SHARED.get() {
            let mut open = s.open.lock().unwrap_or_else(|p| p.into_inner());
            let r = usize::from(rank(self.level));
            open[r] = open[r].saturating_sub(1);
            apply(s, &open);
        }
    }
}

/// Sets the layer's level to the most verbose stream open.
fn apply(s: &Shared, open: &[usize; 5]) {
    let level = match open.iter().rposition(|n| *n > 0) {
        None => LevelFilter::OFF,
        Some(0) => LevelFilter::ERROR,
        Some(1) => LevelFilter::WARN,
        Some(2) => LevelFilter::INFO,
        Some(3) => LevelFilter::DEBUG,
        Some(_) => LevelFilter::TRACE,
    };
    (s.reload)(level);
}

/// Opens a stream of the log lines at `level` or more severe; `None` when
/// this process installed no [`layer`] (an application embedding roster
/// with its own logging).
pub fn subscribe(level: Level) -> Option<Subscription> {
    let s = SHARED.get()?;
    let mut open = s.open.lock().unwrap_or_else(|p| p.into_inner());
    open[usize::from(rank(level))] += 1;
    // Subscribed before the level rises, so no line in between is missed.
    let rx = s.tx.subscribe();
    apply(s, &open);
    Some(Subscription { level, rx })
}

/// Makes a [`layer`]'s lines available to [`subscribe`], once the
/// subscriber holding the layer is the process's.
pub struct Installer(Arc<Shared>);

impl Installer {
    /// Lines from now on go to every open [`subscribe`] stream. `false`
    /// when another layer was installed before (this one stays off).
    pub fn install(self) -> bool {
        SHARED.set(self.0).is_ok()
    }
}

/// The layer to add to the process's tracing subscriber, and what makes
/// its lines available once that subscriber is installed (until then, and
/// if it never is, [`subscribe`] answers `None`).
pub fn layer<S>() -> (impl Layer<S>, Installer)
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let (filter, handle) = tracing_subscriber::reload::Layer::new(LevelFilter::OFF);
    let reload: Reload = Box::new(move |l| {
        let _ = handle.reload(l);
    });
    let (tx, _) = broadcast::channel(BUFFER);
    let shared = Arc::new(Shared {
        tx,
        open: Mutex::new([0; 5]),
        reload,
    });
    let layer = Broadcast {
        shared: shared.clone(),
    }
    .with_filter(filter);
    (layer, Installer(shared))
}

struct Broadcast {
    shared: Arc<Shared>,
}

impl<S: tracing::Subscriber> Layer<S> for Broadcast {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let s = &self.shared;
        if s.tx.receiver_count() == 0 {
            return;
        }
        let meta = event.metadata();
        let mut v = Fields::default();
        event.record(&mut v);
        let mut message = v.message;
        if !v.rest.is_empty() {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(v.rest.trim_start());
        }
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [cut]");
        }
        let _ = s.tx.send(Arc::new(LogLine {
            at_ms: now_ms(),
            level: level_name(*meta.level()),
            target: meta.target().to_owned(),
            message,
            rank: rank(*meta.level()),
        }));
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Parses `error`, `warn`, `info`, `debug` or `trace`.
pub fn parse_level(s: &str) -> Result<Level, String> {
    s.parse::<Level>()
        .map_err(|_| format!("level {s:?}: expected error, warn, info, debug or trace"))
}

#[allow(clippy::disallowed_methods)] // log lines carry wall time
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The message and the other fields of an event.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            use std::fmt::Write;
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}
