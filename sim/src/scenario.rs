//! The named scenarios: each schedules starts, faults and writes on a
//! [`World`], then a quiet phase in which the cluster must converge.

use rand::RngExt;

use crate::net::{Clock, MS, Nanos, SEC};
use crate::world::{Action, World};

/// A scenario's name, summary and default duration (seconds).
pub struct Scenario {
    /// Name used on the command line.
    pub name: &'static str,
    /// What it does.
    pub about: &'static str,
    /// Default virtual duration, seconds.
    pub default_secs: u64,
}

/// Every scenario.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "steady",
        about: "all nodes join within the first second, then nothing happens",
        default_secs: 60,
    },
    Scenario {
        name: "crash-one",
        about: "one random node crashes at 30 s",
        default_secs: 60,
    },
    Scenario {
        name: "crash-many",
        about: "10% of the nodes crash at once at 30 s",
        default_secs: 75,
    },
    Scenario {
        name: "loss",
        about: "uniform datagram loss (--loss, default 0.05) until 30 s before the end",
        default_secs: 300,
    },
    Scenario {
        name: "flaky-node",
        about: "1% of the nodes lose 80% of datagrams both ways from 20 s until 30 s before the end",
        default_secs: 300,
    },
    Scenario {
        name: "one-way",
        about: "2% of the nodes can send but not receive from 20 s until 30 s before the end",
        default_secs: 120,
    },
    Scenario {
        name: "forgery",
        about: "members write keys from 10 s; from 20 s, every 2 s a member pushes a forged newer value of another member's key to a third node; each owner must have its value back everywhere within 3 s",
        default_secs: 60,
    },
    Scenario {
        name: "pause",
        about: "one random node freezes at 30 s for --pause seconds (default 15; a GC or VM pause), then resumes with its timers overdue",
        default_secs: 120,
    },
    Scenario {
        name: "partition-heal",
        about: "a 50/50 split at 20 s for 60 s, with writes on both sides, then heal",
        default_secs: 140,
    },
    Scenario {
        name: "churn",
        about: "10% of the nodes replaced per minute (in turn: leave + new node, crash + new node, crash + restart 10 s later) until 30 s before the end",
        default_secs: 180,
    },
    Scenario {
        name: "clock-skew",
        about: "clock offsets within +-400 ms and drift within +-50 ppm, one node jumps +2 s at 30 s; writes throughout",
        default_secs: 90,
    },
    Scenario {
        name: "delta",
        about: "writes from random nodes, 2 per second, from 15 s until 15 s before the end",
        default_secs: 60,
    },
    Scenario {
        name: "bootstrap",
        about: "nodes start in random order over 10 s with three transient partitions in the first 20 s; exactly one metadata cluster must form",
        default_secs: 60,
    },
    Scenario {
        name: "voter-crash",
        about: "the metadata leader crashes at 30 s; a new leader and a replacement voter must follow",
        default_secs: 75,
    },
    Scenario {
        name: "voter-crash-2of5",
        about: "5 metadata voters; two of them (the leader among them) crash at once at 30 s",
        default_secs: 90,
    },
    Scenario {
        name: "placement",
        about: "every 10 s from 20 s a node joins, leaves or crashes (in turn); the partition placement must follow",
        default_secs: 120,
    },
    Scenario {
        name: "meta-linearizable",
        about: "clients on random nodes run get/put/cas/delete on 3 keys through partitions, crashes and restarts; the history must be linearizable",
        default_secs: 90,
    },
    Scenario {
        name: "voter-wipe",
        about: "clients as in meta-linearizable (paused 35-50 s); at 30 s one follower voter is cut off for 5 s, then the leader and the other voter crash at once, the latter loses its Raft disk and restarts at once, the leader 10 s later; the history must be linearizable",
        default_secs: 80,
    },
];

/// Looks a scenario up by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

fn pick(w: &mut World, n: usize, count: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    let mut out = Vec::new();
    while out.len() < count && !all.is_empty() {
        let i = w.rng().random_range(0..all.len());
        out.push(all.swap_remove(i));
    }
    out
}

/// When the `pause` scenario freezes its node.
pub const PAUSE_AT: Nanos = 30 * SEC;

/// The `pause` scenario's pause when `--pause` is not given.
pub const DEFAULT_PAUSE: Nanos = 15 * SEC;

/// Schedules `name` on `w` for `n` nodes over `end` nanoseconds.
pub fn setup(
    name: &str,
    w: &mut World,
    n: usize,
    end: Nanos,
    loss: Option<f64>,
    pause: Option<Nanos>,
) {
    let start_window = if name == "bootstrap" { 10 * SEC } else { SEC };
    for i in 0..n {
        let t = w.rng().random_range(0..start_window);
        w.at(t, Action::Start(i));
    }
    let quiet = end.saturating_sub(30 * SEC);
    match name {
        "steady" => {}
        "crash-one" => {
            let v = pick(w, n, 1)[0];
            w.at(30 * SEC, Action::Crash(v));
            w.at(30 * SEC, Action::FaultsEnd);
        }
        "crash-many" => {
            for v in pick(w, n, (n / 10).max(1)) {
                w.at(30 * SEC, Action::Crash(v));
            }
            w.at(30 * SEC, Action::FaultsEnd);
        }
        "loss" => {
            w.at(0, Action::Loss(loss.unwrap_or(0.05)));
            w.at(quiet, Action::Loss(0.0));
            w.at(quiet, Action::FaultsEnd);
        }
        "flaky-node" => {
            for v in pick(w, n, (n / 100).max(1)) {
                w.at(20 * SEC, Action::NodeLoss(v, 0.8));
                w.at(quiet, Action::NodeLoss(v, 0.0));
            }
            if let Some(p) = loss {
                w.at(0, Action::Loss(p));
                w.at(quiet, Action::Loss(0.0));
            }
            w.at(quiet, Action::FaultsEnd);
        }
        "pause" => {
            let len = pause.unwrap_or(DEFAULT_PAUSE);
            w.at(PAUSE_AT, Action::PauseRandom(len));
            w.at(PAUSE_AT + len, Action::FaultsEnd);
        }
        "one-way" => {
            for v in pick(w, n, (n / 50).max(1)) {
                w.at(20 * SEC, Action::Deaf(v, true));
                w.at(quiet, Action::Deaf(v, false));
            }
            w.at(quiet, Action::FaultsEnd);
        }
        "partition-heal" => {
            let groups: Vec<u8> = (0..n).map(|i| u8::from(i >= n / 2)).collect();
            w.at(20 * SEC, Action::Partition(Some(groups)));
            for k in 0..20 {
                w.at(25 * SEC + k * 2 * SEC, Action::WriteRandom);
            }
            w.at(80 * SEC, Action::Partition(None));
            w.at(80 * SEC, Action::FaultsEnd);
        }
        "churn" => {
            let per_min = (n / 10).max(1) as u64;
            let step = 60 * SEC / per_min;
            let mut t = 20 * SEC;
            let mut k = 0;
            while t < quiet {
                // In turn: a leave and a new node, a crash and a new node,
                // a crash and a restart of the same node 10 s later.
                let a = match k % 3 {
                    0 => Action::Replace { crash: false },
                    1 => Action::Replace { crash: true },
                    _ => Action::CrashRestart { after: 10 * SEC },
                };
                w.at(t, a);
                k += 1;
                t += step;
            }
            w.at(quiet, Action::FaultsEnd);
        }
        "clock-skew" => {
            for i in 0..n {
                let offset_ms = w.rng().random_range(-400..=400);
                let drift_ppm = w.rng().random_range(-50.0..=50.0);
                w.set_clock(
                    i,
                    Clock {
                        offset_ms,
                        drift_ppm,
                        jumped_ms: 0,
                    },
                );
            }
            let j = pick(w, n, 1)[0];
            w.set_jumper(j);
            w.at(30 * SEC, Action::ClockJump(j, 2000));
            let mut t = 10 * SEC;
            while t < quiet {
                w.at(t, Action::WriteRandom);
                w.at(t + 250 * MS, Action::Write(j));
                t += SEC;
            }
            w.at(quiet, Action::FaultsEnd);
        }
        "forgery" => {
            let mut t = 10 * SEC;
            while t < 20 * SEC {
                w.at(t, Action::WriteRandom);
                t += SEC / 4;
            }
            let mut t = 20 * SEC;
            while t < quiet {
                w.at(t, Action::Forge);
                t += 2 * SEC;
            }
            w.at(quiet, Action::FaultsEnd);
        }
        "delta" => {
            let mut t = 15 * SEC;
            while t < end.saturating_sub(15 * SEC) {
                w.at(t, Action::WriteRandom);
                t += SEC / 2;
            }
            w.at(end.saturating_sub(15 * SEC), Action::FaultsEnd);
        }
        "bootstrap" => {
            for slot in 0..3u64 {
                let t = slot * 6 * SEC + w.rng().random_range(0..3 * SEC);
                let len = w.rng().random_range(SEC..3 * SEC);
                let groups: Vec<u8> = (0..n).map(|_| w.rng().random_range(0..2u8)).collect();
                w.at(t, Action::Partition(Some(groups)));
                w.at(t + len, Action::Partition(None));
            }
            w.at(20 * SEC, Action::FaultsEnd);
        }
        "voter-crash" => {
            w.at(
                30 * SEC,
                Action::CrashLeader {
                    restart_after: None,
                },
            );
            w.at(30 * SEC, Action::FaultsEnd);
        }
        "voter-crash-2of5" => {
            w.at(30 * SEC, Action::CrashVoters(2));
            w.at(30 * SEC, Action::FaultsEnd);
        }
        "placement" => {
            let mut t = 20 * SEC;
            let mut k = 0;
            while t + 30 * SEC <= end {
                let a = match k % 3 {
                    0 => Action::AddNode,
                    1 => Action::LeaveRandom,
                    _ => Action::CrashRandom,
                };
                w.at(t, a);
                k += 1;
                t += 10 * SEC;
            }
            w.at(t, Action::FaultsEnd);
        }
        "meta-linearizable" => {
            let stop = end.saturating_sub(20 * SEC);
            let mut t = 10 * SEC;
            while t < stop {
                w.at(t, Action::MetaClient { keys: 3 });
                t += 100 * MS;
            }
            // A minority split, a crash and restart, a leader crash and
            // restart, a majority/minority split.
            let minority: Vec<u8> = (0..n).map(|i| u8::from(i < n / 3)).collect();
            w.at(20 * SEC, Action::Partition(Some(minority)));
            w.at(26 * SEC, Action::Partition(None));
            w.at(30 * SEC, Action::CrashRestart { after: 8 * SEC });
            w.at(
                42 * SEC,
                Action::CrashLeader {
                    restart_after: Some(6 * SEC),
                },
            );
            let halves: Vec<u8> = (0..n).map(|_| w.rng().random_range(0..2u8)).collect();
            w.at(55 * SEC, Action::Partition(Some(halves)));
            w.at(60 * SEC, Action::Partition(None));
            w.at(60 * SEC, Action::FaultsEnd);
            w.at(
                end.saturating_sub(10 * SEC),
                Action::MetaFinalReads { keys: 3 },
            );
        }
        "voter-wipe" => {
            // No clients while the cluster has no quorum (35-45 s): each
            // request then would time out with an unknown outcome, and
            // too many of those make the history too costly to check.
            let stop = end.saturating_sub(20 * SEC);
            let mut t = 10 * SEC;
            while t < stop {
                if !(35 * SEC..50 * SEC).contains(&t) {
                    w.at(t, Action::MetaClient { keys: 3 });
                }
                t += 100 * MS;
            }
            w.at(30 * SEC, Action::VoterWipeDrill);
            w.at(50 * SEC, Action::FaultsEnd);
            w.at(
                end.saturating_sub(10 * SEC),
                Action::MetaFinalReads { keys: 3 },
            );
        }
        other => unreachable!("scenario {other} is checked by the caller"),
    }
}
