//! The wire format: every datagram and stream message roster sends.
//!
//! ```text
//! +---------+------+---------------------------+
//! | version | kind | payload (postcard)        |
//! |  1 byte |1 byte| up to the kind's limit    |
//! +---------+------+---------------------------+
//! ```
//!
//! `version` is [`VERSION`]; a receiver refuses versions it does not know.
//! `kind` comes from an append-only list ([`Kind`]): a kind's number is never
//! reused or changed, new kinds go at the end. A [`Kind::Swim`] payload is a
//! raw foca packet; every other payload is one postcard-encoded struct.
//!
//! Limits: datagram kinds carry at most [`MAX_DATAGRAM_BYTES`]; stream kinds
//! at most [`MAX_STREAM_MESSAGE_BYTES`]. Decoding never panics on any input
//! (see the `random_bytes_never_panic` test and the fuzz target).

use serde::{Deserialize, Serialize};

use crate::node::delta::{Delta, OwnerDigest};
use crate::node::hlc::Hlc;
use crate::node::identity::{Identity, Incarnation, NodeId};
use crate::node::meta::{MetaError, MetaOp, MetaReply, ReadMode};

/// Wire protocol version.
pub const VERSION: u8 = 1;

/// [`SyncRequest::engine`] of a node running the foca engine.
pub const ENGINE_FOCA: u8 = 0;
/// [`SyncRequest::engine`] of a node running the native engine.
pub const ENGINE_NATIVE: u8 = 1;
/// Hard ceiling on any datagram (the runtime's path limit is lower).
pub const MAX_DATAGRAM_BYTES: usize = 65_527;
/// Hard ceiling on any stream message.
pub const MAX_STREAM_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Bytes of envelope before the payload.
pub const ENVELOPE_BYTES: usize = 2;

/// Message kinds. Append-only: never renumber, never reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A foca SWIM packet (datagram).
    Swim = 1,
    /// Push-pull anti-entropy opening (stream).
    SyncRequest = 2,
    /// Push-pull answer (stream).
    SyncReply = 3,
    /// Push-pull closing leg: deltas the answering side lacked (stream).
    SyncDeltas = 4,
    /// Final check before declaring a suspect Down, sent to the suspect (datagram).
    Verify = 5,
    /// Final check asked of a relay, which forwards it to the suspect (datagram).
    VerifyRelay = 6,
    /// The suspect's answer to a final check (datagram).
    VerifyAck = 7,
    /// A member leaving gracefully (datagram).
    Leave = 8,
    /// A Raft message between voters (stream).
    Raft = 9,
    /// A metadata request forwarded to a voter (bidirectional stream,
    /// answered by [`Kind::MetaResponse`] on the same stream).
    MetaRequest = 10,
    /// The answer to a forwarded metadata request (stream).
    MetaResponse = 11,
    /// A member asking a voter for the metadata it lacks (stream).
    MetaPull = 12,
    /// Committed metadata entries or a snapshot, answering a pull (stream).
    MetaPush = 13,
    /// A bootstrap candidate asking the initial voters to agree (stream).
    BootstrapAsk = 14,
    /// The answer to a bootstrap request (stream).
    BootstrapGrant = 15,
    /// A packet of roster's native SWIM engine (datagram). A node running
    /// the foca engine refuses it, as a native node refuses [`Kind::Swim`].
    Member = 16,
    /// A probed member's network coordinate, sent to the prober after
    /// answering its probe (datagram).
    Coord = 17,
    /// A member's acknowledgement of or answer to a query, to the asker or
    /// through a relay (datagram).
    QueryResponse = 18,
    /// Push-pull opening that carries a summary of the sender's member list
    /// (a [`ViewFilter`]), so the answer leaves out what it holds already
    /// (stream; the native engine's catch-up rounds after joining and its
    /// join retries once it knows members).
    SyncAsk = 19,
    /// The answer to a [`Kind::SyncAsk`]: a push-pull answer cut by the
    /// asker's summary, with the answering side's own summary (stream).
    SyncAnswer = 20,
}

impl Kind {
    /// Every kind, in number order.
    pub const ALL: [Kind; 20] = [
        Kind::Swim,
        Kind::SyncRequest,
        Kind::SyncReply,
        Kind::SyncDeltas,
        Kind::Verify,
        Kind::VerifyRelay,
        Kind::VerifyAck,
        Kind::Leave,
        Kind::Raft,
        Kind::MetaRequest,
        Kind::MetaResponse,
        Kind::MetaPull,
        Kind::MetaPush,
        Kind::BootstrapAsk,
        Kind::BootstrapGrant,
        Kind::Member,
        Kind::Coord,
        Kind::QueryResponse,
        Kind::SyncAsk,
        Kind::SyncAnswer,
    ];

    /// The kind with this number.
    pub fn from_u8(b: u8) -> Option<Self> {
        Self::ALL.get(usize::from(b).wrapping_sub(1)).copied()
    }

    /// Whether the kind travels on a stream (else as a datagram).
    pub fn is_stream(self) -> bool {
        !matches!(
            self,
            Kind::Swim
                | Kind::Verify
                | Kind::VerifyRelay
                | Kind::VerifyAck
                | Kind::Leave
                | Kind::Member
                | Kind::Coord
                | Kind::QueryResponse
        )
    }

    /// Largest encoded message of this kind, envelope included.
    pub fn max_bytes(self) -> usize {
        if self.is_stream() {
            MAX_STREAM_MESSAGE_BYTES
        } else {
            MAX_DATAGRAM_BYTES
        }
    }

    /// Short name for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Swim => "swim",
            Kind::SyncRequest => "sync_request",
            Kind::SyncReply => "sync_reply",
            Kind::SyncDeltas => "sync_deltas",
            Kind::Verify => "verify",
            Kind::VerifyRelay => "verify_relay",
            Kind::VerifyAck => "verify_ack",
            Kind::Leave => "leave",
            Kind::Raft => "raft",
            Kind::MetaRequest => "meta_request",
            Kind::MetaResponse => "meta_response",
            Kind::MetaPull => "meta_pull",
            Kind::MetaPush => "meta_push",
            Kind::BootstrapAsk => "bootstrap_ask",
            Kind::BootstrapGrant => "bootstrap_grant",
            Kind::Coord => "coord",
            Kind::QueryResponse => "query_response",
            Kind::Member => "member",
            Kind::SyncAsk => "sync_ask",
            Kind::SyncAnswer => "sync_answer",
        }
    }
}

/// A member's state as carried in push-pull member lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireState {
    /// Alive.
    Alive,
    /// Suspected.
    Suspect,
    /// Declared Down by the sender.
    Down,
}

/// One entry of a push-pull member list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDigest {
    /// Who.
    pub identity: Identity,
    /// Its incarnation as the sender knows it.
    pub incarnation: Incarnation,
    /// Its state as the sender knows it.
    pub state: WireState,
}

/// The full view carried when hashes differ or on join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncFull {
    /// Every member the sender knows, Down ones included.
    pub members: Vec<MemberDigest>,
    /// Per-owner state digests.
    pub state: Vec<(NodeId, OwnerDigest)>,
}

/// Push-pull opening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Sender.
    pub from: Identity,
    /// Sender's incarnation.
    pub incarnation: Incarnation,
    /// The SWIM engine the sender runs ([`ENGINE_FOCA`] or
    /// [`ENGINE_NATIVE`]): push-pull between engines is refused, so a
    /// mixed cluster never forms.
    pub engine: u8,
    /// Whether the sender is joining (it then carries its state digests,
    /// and its member list while it knows no live member).
    pub join: bool,
    /// Hash of the sender's active members.
    pub members_hash: u64,
    /// Hash of the sender's state digests.
    pub state_hash: u64,
    /// The sender's full view, when it sends one.
    pub full: Option<SyncFull>,
    /// The sender's HLC.
    pub hlc: Hlc,
}

/// Push-pull answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReply {
    /// Sender.
    pub from: Identity,
    /// Sender's incarnation.
    pub incarnation: Incarnation,
    /// The SWIM engine the sender runs (see [`SyncRequest::engine`]).
    pub engine: u8,
    /// The sender's full view; `None` when both sides were in sync.
    pub full: Option<SyncFull>,
    /// Deltas the requester lacked (known when it sent its full view).
    pub deltas: Vec<Delta>,
    /// The sender's HLC.
    pub hlc: Hlc,
}

/// Push-pull closing leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDeltas {
    /// Sender.
    pub from: Identity,
    /// Deltas the receiver lacked.
    pub deltas: Vec<Delta>,
    /// Members the receiver may hold differently (Down ones included), so it
    /// learns where others hold it or its peers Down.
    pub members: Vec<MemberDigest>,
    /// The sender's state digests, when it wants the deltas it lacks back
    /// (answered with a `SyncDeltas` without digests).
    pub state: Option<Vec<(NodeId, OwnerDigest)>>,
    /// The sender's HLC.
    pub hlc: Hlc,
}

/// A summary of a member list: a Bloom filter of its entries' prints
/// (identity, generation, incarnation and state, see
/// [`ViewFilter::print`]). A member list cut by it leaves out the entries
/// the filter holds; at most about seven in 10,000 that it does not hold
/// are left out as well (false positives), and since every filter has its
/// own salt a later exchange brings those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewFilter {
    /// Mixed into every print, so two filters miss different entries.
    pub salt: u64,
    /// The bits: a power of two of words, at most [`ViewFilter::MAX_WORDS`].
    pub words: Vec<u64>,
}

impl ViewFilter {
    /// Largest filter accepted (64 KiB: 32,768 entries at sixteen bits
    /// each).
    pub const MAX_WORDS: usize = 8192;
    /// Most entries a summary is made for: past it a filter capped at
    /// [`ViewFilter::MAX_WORDS`] would hold fewer than 16 bits each, and a
    /// node sends the plain push-pull opening instead.
    pub const MAX_ENTRIES: usize = Self::MAX_WORDS * 4;
    /// Bits set per entry: at sixteen bits per entry, about seven entries
    /// in 10,000 not held test as held; at 32 (the most the size's rounding
    /// to a power of two gives), about one in 90,000.
    const PROBES: u64 = 7;

    /// An empty filter sized for `entries` (16 to 32 bits each, capped at
    /// [`ViewFilter::MAX_WORDS`]).
    pub fn with_capacity(salt: u64, entries: usize) -> Self {
        let words = (entries.saturating_mul(16) / 64 + 1)
            .next_power_of_two()
            .min(Self::MAX_WORDS);
        Self {
            salt,
            words: vec![0; words],
        }
    }

    /// Whether a received filter is well formed (else it is ignored).
    pub fn is_valid(&self) -> bool {
        !self.words.is_empty()
            && self.words.len() <= Self::MAX_WORDS
            && self.words.len().is_power_of_two()
    }

    /// The print of one member-list entry.
    pub fn print(identity: &Identity, incarnation: Incarnation, state: WireState) -> u64 {
        let f = identity.id.fingerprint();
        let g = crate::node::identity::mix64(identity.generation.0 ^ ((state as u64) << 56));
        crate::node::identity::mix64(f ^ g ^ u64::from(incarnation).rotate_left(24))
    }

    /// The bit positions of `print` in a filter of `words` words (double
    /// hashing over the salted print).
    fn probes(salt: u64, words: usize, print: u64) -> impl Iterator<Item = usize> {
        let h = crate::node::identity::mix64(print ^ salt);
        let step = (h >> 32) | 1;
        let mask = (words as u64 * 64).wrapping_sub(1);
        (0..Self::PROBES).map(move |i| (h.wrapping_add(i.wrapping_mul(step)) & mask) as usize)
    }

    /// Adds an entry.
    pub fn insert(&mut self, print: u64) {
        if self.words.is_empty() {
            return;
        }
        for b in Self::probes(self.salt, self.words.len(), print) {
            self.words[b / 64] |= 1 << (b % 64);
        }
    }

    /// Whether the entry is (probably) held.
    pub fn contains(&self, print: u64) -> bool {
        !self.words.is_empty()
            && Self::probes(self.salt, self.words.len(), print)
                .all(|b| self.words[b / 64] & (1 << (b % 64)) != 0)
    }
}

/// A push-pull opening with a summary of the sender's member list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAsk {
    /// The opening itself.
    pub request: SyncRequest,
    /// The sender's member list, itself included.
    pub have: ViewFilter,
}

/// The answer to a [`SyncAsk`]: its member list leaves out what the asker
/// holds (Suspect entries aside: they count as confirmations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAnswer {
    /// The answer itself.
    pub reply: SyncReply,
    /// The answering side's member list, itself included, when the answer
    /// carries a member list: the asker sends back what it lacks.
    pub have: Option<ViewFilter>,
}

/// A final check on a suspect (both [`Kind::Verify`] and
/// [`Kind::VerifyRelay`] carry it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verify {
    /// Who asks; the answer goes straight to it.
    pub origin: Identity,
    /// The suspect.
    pub target: Identity,
    /// Incarnation at which the target is suspected.
    pub incarnation: Incarnation,
    /// Matches the answer to the question.
    pub nonce: u64,
}

/// The suspect's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyAck {
    /// The suspect.
    pub from: Identity,
    /// Its incarnation after refuting.
    pub incarnation: Incarnation,
    /// From the question.
    pub nonce: u64,
}

/// A probed member's network coordinate (see [`crate::node::coords`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordMsg {
    /// The probed member.
    pub from: Identity,
    /// Its coordinate, packed (see `Coordinate::pack`).
    pub coord: crate::node::coords::Packed,
    /// Whether the receiver is to answer with its own coordinate (the
    /// probed member asks; the prober's answer times a second round trip,
    /// for the probed member).
    pub echo: bool,
}

/// An acknowledgement of or answer to a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// The query.
    pub id: crate::node::queries::QueryId,
    /// Where the asker listens.
    pub asker_addr: std::net::SocketAddr,
    /// The member acknowledging or answering.
    pub from: Identity,
    /// An acknowledgement (no payload) rather than an answer.
    pub ack: bool,
    /// The answer.
    pub payload: Vec<u8>,
    /// Sent to a relay, which forwards it to the asker.
    pub relay: bool,
}

/// A graceful leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// Who leaves.
    pub identity: Identity,
    /// Its last incarnation.
    pub incarnation: Incarnation,
}

/// A Raft message (raft-rs protobuf) between voters of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftMsg {
    /// Sender.
    pub from: Identity,
    /// Cluster id: a node refuses messages of another cluster.
    pub cluster: u64,
    /// The protobuf-encoded `eraftpb::Message`.
    pub msg: Vec<u8>,
}

/// A metadata request forwarded to a voter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRequest {
    /// The node the client asked; the answer goes to it.
    pub from: Identity,
    /// Its request number.
    pub req: u64,
    /// The operation.
    pub op: MetaOp,
    /// How a read is served.
    pub mode: ReadMode,
}

/// The answer to a [`MetaRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaResponse {
    /// The voter that served it.
    pub from: Identity,
    /// The request number.
    pub req: u64,
    /// The outcome.
    pub result: Result<MetaReply, MetaError>,
}

/// A member asking for the committed metadata after `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaPull {
    /// Who asks.
    pub from: Identity,
    /// The cluster it follows.
    pub cluster: u64,
    /// Its applied index.
    pub after: u64,
}

/// One committed Raft entry, as pushed to members catching up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedEntry {
    /// Index.
    pub index: u64,
    /// Term.
    pub term: u64,
    /// raft-rs entry type (0 normal, 1 conf change, 2 conf change v2).
    pub kind: u8,
    /// Entry data.
    pub data: Vec<u8>,
    /// Entry context.
    pub context: Vec<u8>,
}

/// Committed metadata for a member catching up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaPush {
    /// The voter.
    pub from: Identity,
    /// Cluster id.
    pub cluster: u64,
    /// The whole encoded state machine, when the entries asked for are no
    /// longer in the log.
    pub snapshot: Option<Vec<u8>>,
    /// Committed entries, in order, after the snapshot (if any) or after the
    /// index asked for.
    pub entries: Vec<PushedEntry>,
}

/// A bootstrap candidate asking the initial voters to agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapAsk {
    /// The candidate (the lowest `NodeId` of the initial voters).
    pub from: Identity,
    /// The id the new cluster will have.
    pub cluster: u64,
    /// The initial voters.
    pub voters: Vec<NodeId>,
}

/// The answer to a [`BootstrapAsk`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapGrant {
    /// Who answers.
    pub from: Identity,
    /// The cluster asked about.
    pub cluster: u64,
    /// Whether it agrees (it then refuses every other candidate for a
    /// while).
    pub granted: bool,
}

/// A decoded message; a SWIM payload borrows from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// [`Kind::Swim`]
    Swim(&'a [u8]),
    /// [`Kind::SyncRequest`]
    SyncRequest(SyncRequest),
    /// [`Kind::SyncReply`]
    SyncReply(SyncReply),
    /// [`Kind::SyncDeltas`]
    SyncDeltas(SyncDeltas),
    /// [`Kind::Verify`]
    Verify(Verify),
    /// [`Kind::VerifyRelay`]
    VerifyRelay(Verify),
    /// [`Kind::VerifyAck`]
    VerifyAck(VerifyAck),
    /// [`Kind::Leave`]
    Leave(Leave),
    /// [`Kind::Raft`]
    Raft(RaftMsg),
    /// [`Kind::MetaRequest`]
    MetaRequest(MetaRequest),
    /// [`Kind::MetaResponse`]
    MetaResponse(MetaResponse),
    /// [`Kind::MetaPull`]
    MetaPull(MetaPull),
    /// [`Kind::MetaPush`]
    MetaPush(MetaPush),
    /// [`Kind::BootstrapAsk`]
    BootstrapAsk(BootstrapAsk),
    /// [`Kind::BootstrapGrant`]
    BootstrapGrant(BootstrapGrant),
    /// [`Kind::Member`]: the native engine's packet, decoded by the engine.
    Member(&'a [u8]),
    /// [`Kind::Coord`]
    Coord(CoordMsg),
    /// [`Kind::QueryResponse`]
    QueryResponse(QueryResponse),
    /// [`Kind::SyncAsk`]
    SyncAsk(SyncAsk),
    /// [`Kind::SyncAnswer`]
    SyncAnswer(SyncAnswer),
}

/// Why bytes could not be decoded (or a message encoded). Nothing is changed
/// by a failed decode; the caller counts the drop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the envelope.
    #[error("message of {0} bytes is shorter than the {ENVELOPE_BYTES}-byte envelope")]
    Truncated(usize),
    /// A protocol version this build does not speak.
    #[error("unsupported wire version {0} (this build speaks {VERSION})")]
    UnknownVersion(u8),
    /// A kind number not in the list.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// Over the kind's size limit.
    #[error("{kind:?} message of {len} bytes is over its {max}-byte limit")]
    TooLarge {
        /// The kind.
        kind: Kind,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload does not parse, or has trailing bytes.
    #[error("malformed {kind:?} payload: {reason}")]
    Malformed {
        /// The kind.
        kind: Kind,
        /// What the decoder said.
        reason: String,
    },
}

impl Message<'_> {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Swim(_) => Kind::Swim,
            Message::SyncRequest(_) => Kind::SyncRequest,
            Message::SyncReply(_) => Kind::SyncReply,
            Message::SyncDeltas(_) => Kind::SyncDeltas,
            Message::Verify(_) => Kind::Verify,
            Message::VerifyRelay(_) => Kind::VerifyRelay,
            Message::VerifyAck(_) => Kind::VerifyAck,
            Message::Leave(_) => Kind::Leave,
            Message::Raft(_) => Kind::Raft,
            Message::MetaRequest(_) => Kind::MetaRequest,
            Message::MetaResponse(_) => Kind::MetaResponse,
            Message::MetaPull(_) => Kind::MetaPull,
            Message::MetaPush(_) => Kind::MetaPush,
            Message::BootstrapAsk(_) => Kind::BootstrapAsk,
            Message::BootstrapGrant(_) => Kind::BootstrapGrant,
            Message::Member(_) => Kind::Member,
            Message::Coord(_) => Kind::Coord,
            Message::QueryResponse(_) => Kind::QueryResponse,
            Message::SyncAsk(_) => Kind::SyncAsk,
            Message::SyncAnswer(_) => Kind::SyncAnswer,
        }
    }

    /// Encodes the message with its envelope.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let kind = self.kind();
        let mut out = vec![VERSION, kind as u8];
        let encoded = match self {
            Message::Swim(b) | Message::Member(b) => {
                out.extend_from_slice(b);
                Ok(out)
            }
            Message::SyncRequest(m) => postcard::to_extend(m, out),
            Message::SyncReply(m) => postcard::to_extend(m, out),
            Message::SyncDeltas(m) => postcard::to_extend(m, out),
            Message::Verify(m) | Message::VerifyRelay(m) => postcard::to_extend(m, out),
            Message::VerifyAck(m) => postcard::to_extend(m, out),
            Message::Leave(m) => postcard::to_extend(m, out),
            Message::Raft(m) => postcard::to_extend(m, out),
            Message::MetaRequest(m) => postcard::to_extend(m, out),
            Message::MetaResponse(m) => postcard::to_extend(m, out),
            Message::MetaPull(m) => postcard::to_extend(m, out),
            Message::MetaPush(m) => postcard::to_extend(m, out),
            Message::BootstrapAsk(m) => postcard::to_extend(m, out),
            Message::BootstrapGrant(m) => postcard::to_extend(m, out),
            Message::Coord(m) => postcard::to_extend(m, out),
            Message::QueryResponse(m) => postcard::to_extend(m, out),
            Message::SyncAsk(m) => postcard::to_extend(m, out),
            Message::SyncAnswer(m) => postcard::to_extend(m, out),
        };
        let out = encoded.map_err(|e| WireError::Malformed {
            kind,
            reason: e.to_string(),
        })?;
        if out.len() > kind.max_bytes() {
            return Err(WireError::TooLarge {
                kind,
                len: out.len(),
                max: kind.max_bytes(),
            });
        }
        Ok(out)
    }

    /// Decodes one message. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Message<'_>, WireError> {
        let (kind, payload) = split_envelope(bytes)?;
        fn parse<'de, T: Deserialize<'de>>(kind: Kind, p: &'de [u8]) -> Result<T, WireError> {
            match postcard::take_from_bytes::<T>(p) {
                Ok((v, [])) => Ok(v),
                Ok((_, rest)) => Err(WireError::Malformed {
                    kind,
                    reason: format!("{} trailing bytes", rest.len()),
                }),
                Err(e) => Err(WireError::Malformed {
                    kind,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(match kind {
            Kind::Swim => Message::Swim(payload),
            Kind::Member => Message::Member(payload),
            Kind::SyncRequest => Message::SyncRequest(parse(kind, payload)?),
            Kind::SyncReply => Message::SyncReply(parse(kind, payload)?),
            Kind::SyncDeltas => Message::SyncDeltas(parse(kind, payload)?),
            Kind::Verify => Message::Verify(parse(kind, payload)?),
            Kind::VerifyRelay => Message::VerifyRelay(parse(kind, payload)?),
            Kind::VerifyAck => Message::VerifyAck(parse(kind, payload)?),
            Kind::Leave => Message::Leave(parse(kind, payload)?),
            Kind::Raft => Message::Raft(parse(kind, payload)?),
            Kind::MetaRequest => Message::MetaRequest(parse(kind, payload)?),
            Kind::MetaResponse => Message::MetaResponse(parse(kind, payload)?),
            Kind::MetaPull => Message::MetaPull(parse(kind, payload)?),
            Kind::MetaPush => Message::MetaPush(parse(kind, payload)?),
            Kind::BootstrapAsk => Message::BootstrapAsk(parse(kind, payload)?),
            Kind::BootstrapGrant => Message::BootstrapGrant(parse(kind, payload)?),
            Kind::Coord => Message::Coord(parse(kind, payload)?),
            Kind::QueryResponse => Message::QueryResponse(parse(kind, payload)?),
            Kind::SyncAsk => Message::SyncAsk(parse(kind, payload)?),
            Kind::SyncAnswer => Message::SyncAnswer(parse(kind, payload)?),
        })
    }
}

impl Message<'_> {
    /// The node a message says it comes from, where the sender must be that
    /// node. `None` for a relayed [`Message::Verify`] (it comes from the
    /// relay) and for [`Message::Swim`], whose header the node checks while
    /// reading it anyway (see `swim_sender`).
    pub fn claimed_sender(&self) -> Option<NodeId> {
        match self {
            Message::Swim(_) | Message::Member(_) => None,
            Message::SyncRequest(r) => Some(r.from.id.clone()),
            Message::SyncReply(r) => Some(r.from.id.clone()),
            Message::SyncDeltas(r) => Some(r.from.id.clone()),
            Message::Verify(_) => None,
            Message::VerifyRelay(v) => Some(v.origin.id.clone()),
            Message::VerifyAck(a) => Some(a.from.id.clone()),
            Message::Leave(l) => Some(l.identity.id.clone()),
            Message::Raft(m) => Some(m.from.id.clone()),
            Message::MetaRequest(m) => Some(m.from.id.clone()),
            Message::MetaResponse(m) => Some(m.from.id.clone()),
            Message::MetaPull(m) => Some(m.from.id.clone()),
            Message::MetaPush(m) => Some(m.from.id.clone()),
            Message::BootstrapAsk(m) => Some(m.from.id.clone()),
            Message::BootstrapGrant(m) => Some(m.from.id.clone()),
            Message::Coord(m) => Some(m.from.id.clone()),
            // A relay forwards another member's answer: the sender is the
            // relay, not `from`.
            Message::QueryResponse(_) => None,
            Message::SyncAsk(a) => Some(a.request.from.id.clone()),
            Message::SyncAnswer(a) => Some(a.reply.from.id.clone()),
        }
    }
}

/// The sender named in a SWIM packet's header, or `None` when it does not
/// parse.
pub fn swim_sender(packet: &[u8]) -> Option<NodeId> {
    postcard::take_from_bytes::<foca::Header<Identity>>(packet)
        .ok()
        .map(|(h, _)| h.src.id)
}

/// Checks the envelope and size; returns the kind and the payload.
pub fn split_envelope(bytes: &[u8]) -> Result<(Kind, &[u8]), WireError> {
    let [version, kind, payload @ ..] = bytes else {
        return Err(WireError::Truncated(bytes.len()));
    };
    if *version != VERSION {
        return Err(WireError::UnknownVersion(*version));
    }
    let kind = Kind::from_u8(*kind).ok_or(WireError::UnknownKind(*kind))?;
    if bytes.len() > kind.max_bytes() {
        return Err(WireError::TooLarge {
            kind,
            len: bytes.len(),
            max: kind.max_bytes(),
        });
    }
    Ok((kind, payload))
}

/// Encodes a SWIM packet with its envelope, without an intermediate copy.
pub fn encode_swim(packet: &[u8]) -> Vec<u8> {
    encode_raw(Kind::Swim, packet)
}

/// Wraps a native engine packet in the envelope.
pub(crate) fn encode_member(packet: &[u8]) -> Vec<u8> {
    encode_raw(Kind::Member, packet)
}

fn encode_raw(kind: Kind, packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENVELOPE_BYTES + packet.len());
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(packet);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::identity::Generation;
    use rand::{RngExt, SeedableRng};

    fn ident(n: &str) -> Identity {
        Identity::new(
            NodeId::new(n).unwrap(),
            "127.0.0.1:7000".parse().unwrap(),
            Generation(2),
        )
    }

    #[test]
    fn kinds_are_append_only_and_numbered_from_one() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(*k as u8 as usize, i + 1);
            assert_eq!(Kind::from_u8(*k as u8), Some(*k));
        }
        assert_eq!(Kind::from_u8(0), None);
        assert_eq!(Kind::from_u8(Kind::ALL.len() as u8 + 1), None);
    }

    #[test]
    fn every_kind_round_trips() {
        let v = Verify {
            origin: ident("a"),
            target: ident("b"),
            incarnation: 3,
            nonce: 99,
        };
        let msgs = vec![
            Message::Swim(&[1, 2, 3]),
            Message::Member(&[4, 5, 6]),
            Message::QueryResponse(QueryResponse {
                id: crate::node::queries::QueryId {
                    asker: ident("a").id,
                    generation: crate::node::identity::Generation(2),
                    seq: 3,
                },
                asker_addr: ident("a").addr,
                from: ident("b"),
                ack: false,
                payload: b"up 3 days".to_vec(),
                relay: true,
            }),
            Message::Coord(CoordMsg {
                from: ident("c"),
                coord: crate::node::coords::Coordinate::default().pack(),
                echo: true,
            }),
            Message::SyncRequest(SyncRequest {
                from: ident("a"),
                incarnation: 1,
                engine: ENGINE_NATIVE,
                join: true,
                members_hash: 5,
                state_hash: 6,
                full: Some(SyncFull {
                    members: vec![MemberDigest {
                        identity: ident("b"),
                        incarnation: 2,
                        state: WireState::Down,
                    }],
                    state: vec![(NodeId::new("b").unwrap(), OwnerDigest::default())],
                }),
                hlc: Hlc(77),
            }),
            Message::SyncReply(SyncReply {
                from: ident("b"),
                incarnation: 0,
                engine: ENGINE_FOCA,
                full: None,
                deltas: vec![Delta {
                    owner: NodeId::new("b").unwrap(),
                    key: "k".into(),
                    value: None,
                    hlc: Hlc(1),
                }],
                hlc: Hlc(2),
            }),
            Message::SyncDeltas(SyncDeltas {
                from: ident("a"),
                deltas: vec![],
                members: vec![],
                state: Some(vec![]),
                hlc: Hlc(3),
            }),
            Message::Verify(v.clone()),
            Message::VerifyRelay(v),
            Message::VerifyAck(VerifyAck {
                from: ident("b"),
                incarnation: 4,
                nonce: 99,
            }),
            Message::Leave(Leave {
                identity: ident("a"),
                incarnation: 7,
            }),
            Message::Raft(RaftMsg {
                from: ident("a"),
                cluster: 9,
                msg: vec![1, 2],
            }),
            Message::MetaRequest(MetaRequest {
                from: ident("a"),
                req: 3,
                op: MetaOp::Cas {
                    key: "k".into(),
                    expect: None,
                    value: Some(vec![1]),
                },
                mode: ReadMode::Stale,
            }),
            Message::MetaResponse(MetaResponse {
                from: ident("b"),
                req: 3,
                result: Err(MetaError::Timeout { ms: 5 }),
            }),
            Message::MetaPull(MetaPull {
                from: ident("a"),
                cluster: 9,
                after: 4,
            }),
            Message::MetaPush(MetaPush {
                from: ident("b"),
                cluster: 9,
                snapshot: Some(vec![0]),
                entries: vec![PushedEntry {
                    index: 5,
                    term: 2,
                    kind: 0,
                    data: vec![1],
                    context: vec![],
                }],
            }),
            Message::BootstrapAsk(BootstrapAsk {
                from: ident("a"),
                cluster: 9,
                voters: vec![NodeId::new("a").unwrap()],
            }),
            Message::BootstrapGrant(BootstrapGrant {
                from: ident("b"),
                cluster: 9,
                granted: true,
            }),
            Message::SyncAsk(SyncAsk {
                request: SyncRequest {
                    from: ident("a"),
                    incarnation: 1,
                    engine: ENGINE_NATIVE,
                    join: false,
                    members_hash: 5,
                    state_hash: 6,
                    full: None,
                    hlc: Hlc(78),
                },
                have: ViewFilter::with_capacity(11, 100),
            }),
            Message::SyncAnswer(SyncAnswer {
                reply: SyncReply {
                    from: ident("b"),
                    incarnation: 2,
                    engine: ENGINE_NATIVE,
                    full: Some(SyncFull {
                        members: vec![],
                        state: vec![],
                    }),
                    deltas: vec![],
                    hlc: Hlc(79),
                },
                have: Some(ViewFilter::with_capacity(12, 3)),
            }),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for m in msgs {
            let bytes = m.encode().unwrap();
            assert_eq!(bytes[0], VERSION);
            assert_eq!(Message::decode(&bytes).unwrap(), m);
            seen.insert(m.kind());
        }
        let missing: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| !seen.contains(k))
            .collect();
        assert!(missing.is_empty(), "kinds not round-tripped: {missing:?}");
    }

    #[test]
    fn a_view_filter_holds_every_entry_and_few_others() {
        let entry = |i: u64| {
            let id = Identity::new(
                NodeId::new(format!("node-{i}")).unwrap(),
                "127.0.0.1:7946".parse().unwrap(),
                crate::node::identity::Generation(i % 3 + 1),
            );
            (id, (i % 5) as u32)
        };
        for n in [1u64, 10, 1000, 5000] {
            let mut f = ViewFilter::with_capacity(n, n as usize);
            assert!(f.is_valid());
            for i in 0..n {
                let (id, inc) = entry(i);
                f.insert(ViewFilter::print(&id, inc, WireState::Alive));
            }
            // No entry held tests as missing.
            for i in 0..n {
                let (id, inc) = entry(i);
                assert!(f.contains(ViewFilter::print(&id, inc, WireState::Alive)));
            }
            // Entries not held: other members, and the same members at
            // another incarnation or in another state.
            let mut false_hits = 0;
            let tries = 20_000u64;
            for i in 0..tries {
                let (id, inc) = entry(n + i);
                let (held, held_inc) = entry(i % n);
                let other = match i % 3 {
                    0 => ViewFilter::print(&id, inc, WireState::Alive),
                    1 => ViewFilter::print(&held, held_inc + 1, WireState::Alive),
                    _ => ViewFilter::print(&held, held_inc, WireState::Suspect),
                };
                false_hits += u64::from(f.contains(other));
            }
            assert!(
                false_hits * 1000 < tries * 2,
                "{n} entries: {false_hits} of {tries} entries not held test as held"
            );
        }
    }

    #[test]
    fn a_malformed_view_filter_is_refused_and_never_panics() {
        let bad = [
            ViewFilter {
                salt: 1,
                words: vec![],
            },
            ViewFilter {
                salt: 1,
                words: vec![0; 3],
            },
            ViewFilter {
                salt: 1,
                words: vec![0; ViewFilter::MAX_WORDS * 2],
            },
        ];
        for mut f in bad {
            assert!(!f.is_valid(), "{} words accepted", f.words.len());
            // Used anyway, it answers without panicking.
            f.insert(7);
            let _ = f.contains(7);
        }
        // The largest filter made is still accepted.
        assert!(ViewFilter::with_capacity(0, usize::MAX / 2).is_valid());
    }

    #[test]
    fn bad_envelopes_are_typed_errors() {
        assert_eq!(Message::decode(&[]), Err(WireError::Truncated(0)));
        assert_eq!(Message::decode(&[1]), Err(WireError::Truncated(1)));
        assert_eq!(Message::decode(&[2, 1]), Err(WireError::UnknownVersion(2)));
        assert_eq!(Message::decode(&[1, 200]), Err(WireError::UnknownKind(200)));
        assert!(matches!(
            Message::decode(&[1, Kind::Verify as u8, 0xff]),
            Err(WireError::Malformed { .. })
        ));
        let big = vec![0u8; MAX_DATAGRAM_BYTES + 1];
        let mut big = [vec![VERSION, Kind::Swim as u8], big].concat();
        assert!(matches!(
            Message::decode(&big),
            Err(WireError::TooLarge { .. })
        ));
        big.truncate(10);
        assert!(Message::decode(&big).is_ok());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.random_range(0..256);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if len >= 2 && rng.random_bool(0.8) {
                buf[0] = VERSION;
                buf[1] = rng.random_range(1..=15);
            }
            let _ = Message::decode(&buf);
        }
    }
}
