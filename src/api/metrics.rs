//! `/metrics`: the node's and the transport's counters in the Prometheus /
//! OpenMetrics text format, from one registry per scrape and per node (so
//! many nodes can share a process).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::node::wire::Kind;
use crate::node::{MemberCounts, MetaCounters, MetaStatus, Metrics, RaftRole};
use crate::runtime::RuntimeSnapshot;

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

fn counter(r: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    r.register(name, help, c);
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    r.register(name, help, g);
}

fn gauge_f(r: &mut Registry, name: &str, help: &str, v: f64) {
    let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    g.set(v);
    r.register(name, help, g);
}

/// The metadata cluster's figures for [`render`].
#[derive(Debug, Clone)]
pub struct RaftFigures {
    /// Status as the node sees it.
    pub status: MetaStatus,
    /// Counters.
    pub counters: MetaCounters,
}

/// Renders the metrics of one node.
pub fn render(
    node: &Metrics,
    rt: &RuntimeSnapshot,
    members: &MemberCounts,
    raft: &RaftFigures,
) -> String {
    let mut r = Registry::default();
    register_members(&mut r, node, members);
    register_probing(&mut r, node);
    register_verdicts(&mut r, node);
    register_inputs(&mut r, node, rt);
    register_transport(&mut r, rt);
    register_timing(&mut r, node, rt);
    register_raft(&mut r, raft);
    register_meta_counters(&mut r, raft);

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

/// Members by state and messages by kind and direction.
fn register_members(r: &mut Registry, node: &Metrics, members: &MemberCounts) {
    let by_state = Family::<Labels, Gauge<i64>>::default();
    for (n, name) in [
        (members.alive, "alive"),
        (members.suspect, "suspect"),
        (members.down, "down"),
        (members.left, "left"),
    ] {
        by_state
            .get_or_create(&vec![("state".to_owned(), name.to_owned())])
            .set(n as i64);
    }
    r.register(
        "roster_members",
        "Members this node knows, itself included, by state",
        by_state,
    );

    let bytes = Family::<Labels, Counter<u64>>::default();
    let msgs = Family::<Labels, Counter<u64>>::default();
    for (dir, t) in [("tx", &node.tx), ("rx", &node.rx)] {
        for k in Kind::ALL {
            let i = k as usize - 1;
            let labels = vec![
                ("kind".to_owned(), k.name().to_owned()),
                ("direction".to_owned(), dir.to_owned()),
            ];
            bytes.get_or_create(&labels).inc_by(t.bytes[i]);
            msgs.get_or_create(&labels).inc_by(t.msgs[i]);
        }
    }
    r.register(
        "roster_bytes",
        "Message bytes (envelope included) by kind and direction",
        bytes,
    );
    r.register("roster_messages", "Messages by kind and direction", msgs);
}

/// The failure detector's probes, suspicions and refutations.
fn register_probing(r: &mut Registry, node: &Metrics) {
    counter(
        r,
        "roster_probes_sent",
        "SWIM probes sent (direct and indirect requests)",
        node.probes_sent,
    );
    counter(
        r,
        "roster_probe_failures",
        "SWIM probes that got no ack, directly or indirectly",
        node.probe_failures,
    );
    counter(
        r,
        "roster_suspicions_raised",
        "Members this node started suspecting",
        node.suspicions_raised,
    );
    counter(
        r,
        "roster_suspicions_refuted",
        "Suspicions this node saw refuted",
        node.suspicions_refuted,
    );
    counter(
        r,
        "roster_self_refutations",
        "Suspicions of this node it refuted",
        node.self_refutations,
    );
    counter(
        r,
        "roster_refutations_rate_limited",
        "\"You are Down\" messages not refuted again within a probe period",
        node.refutations_rate_limited,
    );
    counter(
        r,
        "roster_stray_turn_undead_dropped",
        "\"You are Down\" messages for an already refuted suspicion, not sent",
        node.stray_turn_undead_dropped,
    );
}

/// Verdicts: declared, adopted, deferred, forced and reaped members.
fn register_verdicts(r: &mut Registry, node: &Metrics) {
    counter(
        r,
        "roster_downs_declared",
        "Members this node declared Down",
        node.downs_declared,
    );
    counter(
        r,
        "roster_forced_leaves",
        "Down members forced out through this node (force-leave)",
        node.forced_leaves,
    );
    counter(
        r,
        "roster_members_reaped",
        "Down and Left members forgotten after their retention",
        node.members_reaped,
    );
    counter(
        r,
        "roster_downs_adopted",
        "Down verdicts adopted from another member's gossip",
        node.downs_adopted,
    );
    counter(
        r,
        "roster_nacks_received",
        "Native engine: nacks from indirect-probe relays (this node's own path works)",
        node.nacks_received,
    );
    counter(
        r,
        "roster_suspicion_confirmations",
        "Native engine: independent confirmations of suspicions",
        node.confirmations,
    );
    counter(
        r,
        "roster_told_down",
        "Native engine: members held Down told so after they sent something",
        node.told_down,
    );
    counter(
        r,
        "roster_engine_mismatch_dropped",
        "Push-pull messages from a node running the other SWIM engine",
        node.engine_mismatch_dropped,
    );
    counter(
        r,
        "roster_forced_rejoins",
        "Times this node had to rejoin under a new identity",
        node.forced_rejoins,
    );
    counter(
        r,
        "roster_downs_deferred",
        "Down verdicts deferred by Lifeguard (poor local health)",
        node.downs_deferred,
    );
}

/// Inputs refused or dropped: clock drift, forged or stale state, malformed,
/// misattributed or oversized datagrams.
fn register_inputs(r: &mut Registry, node: &Metrics, rt: &RuntimeSnapshot) {
    counter(
        r,
        "roster_hlc_drift_rejections",
        "Remote HLC stamps refused for being too far ahead",
        node.hlc_drift_rejections,
    );
    counter(
        r,
        "roster_state_forgeries_refuted",
        "Writes to this node's own keys made elsewhere, overwritten with the true value",
        node.state_forgeries_refuted,
    );
    counter(
        r,
        "roster_state_stale_own_retired",
        "This node's entries from before it started, echoed back by peers and retired",
        node.stale_own_state_retired,
    );
    counter(
        r,
        "roster_malformed_dropped",
        "Inputs dropped because they did not decode",
        node.malformed_dropped,
    );
    counter(
        r,
        "roster_wrong_sender_dropped",
        "Messages whose sender was not the authenticated peer",
        node.wrong_sender_dropped,
    );
    counter(
        r,
        "roster_datagrams_too_large",
        "Datagrams not sent: over the connection's datagram size",
        rt.datagrams_too_large,
    );
}

/// The transport: TLS refusals, certificate expiry and reloads, revoked
/// peers, connection failures and dropped transmits.
fn register_transport(r: &mut Registry, rt: &RuntimeSnapshot) {
    counter(
        r,
        "roster_tls_refusals",
        "Peers refused during the TLS handshake",
        rt.tls_refusals,
    );
    counter(
        r,
        "roster_http_tls_refusals",
        "HTTPS API clients refused during the TLS handshake",
        rt.https_refusals,
    );
    if rt.cert_not_after_unix > 0 {
        let now = crate::runtime::tls::wall_now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        gauge(
            r,
            "roster_cert_expiry_seconds",
            "Seconds until this node's certificate expires (negative: expired)",
            rt.cert_not_after_unix as i64 - now as i64,
        );
    }
    counter(
        r,
        "roster_revoked_dropped",
        "Messages dropped because their peer's certificate is revoked",
        rt.revoked_dropped,
    );
    counter(
        r,
        "roster_tls_reloads",
        "Certificate reloads that took effect (SIGHUP)",
        rt.tls_reloads,
    );
    counter(
        r,
        "roster_tls_reload_failures",
        "Certificate reloads refused; the node kept its certificates",
        rt.tls_reload_failures,
    );
    counter(
        r,
        "roster_connections_opened",
        "Outgoing QUIC connections established (a TLS handshake each)",
        rt.connections_opened,
    );
    counter(
        r,
        "roster_connections_accepted",
        "Incoming QUIC connections accepted (a TLS handshake each)",
        rt.connections_accepted,
    );
    counter(
        r,
        "roster_connect_failures",
        "Outgoing QUIC connection attempts that failed",
        rt.connect_failures,
    );
    counter(
        r,
        "roster_transmits_dropped",
        "Messages dropped while a peer was unreachable",
        rt.transmits_dropped,
    );
}

/// Connections, local health and the timing in force.
fn register_timing(r: &mut Registry, node: &Metrics, rt: &RuntimeSnapshot) {
    gauge(
        r,
        "roster_open_connections",
        "QUIC connections open",
        rt.open_connections as i64,
    );
    gauge(
        r,
        "roster_health_score",
        "Lifeguard local health score (0 is healthy)",
        i64::from(node.health_score),
    );
    gauge(
        r,
        "roster_live_members",
        "Live members, this node included, the timing is sized for",
        node.live_members as i64,
    );
    gauge_f(
        r,
        "roster_suspicion_window_seconds",
        "How long a member stays Suspect before the final check (follows the live member count)",
        node.suspicion_window_ms as f64 / 1000.0,
    );
    gauge(
        r,
        "roster_retransmits",
        "Times each membership update or state delta is piggybacked (follows the live member count)",
        i64::from(node.retransmits),
    );
    gauge_f(
        r,
        "roster_push_pull_interval_seconds",
        "Time between push-pull exchanges (follows the live member count)",
        node.push_pull_interval_ms as f64 / 1000.0,
    );
}

/// The metadata cluster: term, role, indexes and voters.
fn register_raft(r: &mut Registry, raft: &RaftFigures) {
    let st = &raft.status;
    gauge(
        r,
        "roster_raft_term",
        "Raft term (the newest advertised one on a non-voter)",
        st.term as i64,
    );
    let role = Family::<Labels, Gauge<i64>>::default();
    for rr in [
        RaftRole::NonVoter,
        RaftRole::Follower,
        RaftRole::PreCandidate,
        RaftRole::Candidate,
        RaftRole::Leader,
    ] {
        role.get_or_create(&vec![("role".to_owned(), rr.name().to_owned())])
            .set(i64::from(st.role == rr));
    }
    r.register("roster_raft_role", "1 for this node's metadata role", role);
    gauge(
        r,
        "roster_raft_commit_index",
        "Highest committed metadata index known here",
        st.commit_index as i64,
    );
    gauge(
        r,
        "roster_raft_applied_index",
        "Index of this node's copy of the metadata",
        st.applied_index as i64,
    );
    gauge(
        r,
        "roster_raft_voters",
        "Metadata voters in this node's copy",
        st.voters.len() as i64,
    );
    gauge(
        r,
        "roster_raft_quorum",
        "1 when a metadata leader is known and heard from",
        i64::from(st.quorum),
    );
}

/// The metadata engine's counters.
fn register_meta_counters(r: &mut Registry, raft: &RaftFigures) {
    counter(
        r,
        "roster_raft_leader_changes",
        "Metadata leader changes this voter saw",
        raft.counters.leader_changes,
    );
    counter(
        r,
        "roster_meta_proposals",
        "Metadata writes this node proposed",
        raft.counters.proposals,
    );
    counter(
        r,
        "roster_meta_failures",
        "Metadata requests made here that failed",
        raft.counters.failed,
    );
    counter(
        r,
        "roster_raft_refused",
        "Raft messages refused (another cluster, malformed, misaddressed)",
        raft.counters.raft_refused,
    );
    counter(
        r,
        "roster_raft_votes_withheld",
        "Vote requests not answered while this voter, started with an empty log, caught up",
        raft.counters.votes_withheld,
    );
    counter(
        r,
        "roster_raft_disk_errors",
        "Raft storage failures",
        raft.counters.disk_errors,
    );
}
