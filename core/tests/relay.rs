//! A gateway takes other nodes' streams only from the middle tiers below it
//! (`gateway.relays`): a peer that is not one cannot speak for another origin, and what a
//! relay forwards is stored and acknowledged under the origin's identity, to the relay.

mod common;
use common::MemDisk;

use outpost_core::codec::{encode_batch, Compression, RecordRef};
use outpost_core::config::{NodeConfig, Role, SyncDirection, TopicConfig};
use outpost_core::hlc::Hlc;
use outpost_core::io::{Event, Input, Output};
use outpost_core::sync::proto::{Refusal, SyncMsg};
use outpost_core::types::{Instant, NodeId, Now};
use outpost_core::{Node, NodeSeed};

const TOP: NodeId = NodeId(1);
const TIER: NodeId = NodeId(2);
const TILL: NodeId = NodeId(3);

/// The top gateway after `tier` said Hello and sent one Data with a batch of `TILL`'s two
/// records: what it sent back and what it reported.
fn top_hears_tier(relays: Vec<NodeId>) -> (Vec<(NodeId, SyncMsg)>, Vec<Event>) {
    top_hears_tier_send(relays, &[0])
}

/// As `top_hears_tier`, with one Data per entry of `bases`, in that order, each a batch of
/// `TILL`'s two records from that sequence.
fn top_hears_tier_send(relays: Vec<NodeId>, bases: &[u64]) -> (Vec<(NodeId, SyncMsg)>, Vec<Event>) {
    let mut cfg = NodeConfig::new(TOP, Role::Gateway, vec![TopicConfig::new("sales", SyncDirection::EdgeToCloud)]);
    cfg.gateway.relays = relays;
    let now = Now { mono: Instant(1_000_000), wall_ms: 1_767_225_600_000 };
    let mut node = Node::new(cfg, NodeSeed(1), now);
    let mut disk = MemDisk::default();
    let hlc = Hlc::new(now.wall_ms - 1000, 0);
    let records = [RecordRef { hlc, key: None, value: b"sale 1" }, RecordRef { hlc, key: None, value: b"sale 2" }];
    let mut hello = Vec::new();
    SyncMsg::Hello { origin: TIER, session: 5, hlc, topics: vec!["sales".into()] }.encode(&mut hello);
    let mut inbox = vec![hello];
    for &base in bases {
        let mut batch = Vec::new();
        encode_batch(TILL, base, &records, Compression::None, &mut batch);
        let mut data = Vec::new();
        SyncMsg::Data { session: 5, hlc, topic: "sales".into(), batches: vec![batch] }.encode(&mut data);
        inbox.push(data);
    }
    inbox.reverse();
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    loop {
        let mut moved = false;
        while let Some(o) = node.poll_output() {
            match o {
                Output::Disk { id, req } => disk.queue.push_back((id, req)),
                Output::Send { to, bytes } => sent.push((to, SyncMsg::decode(&bytes).expect("a sync message"))),
                Output::Event(e) => events.push(e),
                _ => {}
            }
        }
        if let Some((op, _, result)) = disk.complete_one() {
            node.handle(now, Input::DiskDone { id: op, result });
            moved = true;
        } else if node.is_running() {
            if let Some(bytes) = inbox.pop() {
                node.handle(now, Input::Message { from: TIER, bytes });
                moved = true;
            }
        }
        if !moved {
            return (sent, events);
        }
    }
}

/// The batches `events` say were stored: origin, first sequence, records.
fn stored(events: &[Event]) -> Vec<(NodeId, u64, usize)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Stored { origin, first_seq, value_crcs, .. } => Some((*origin, *first_seq, value_crcs.len())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_peer_that_is_not_a_relay_cannot_send_another_origins_records() {
    let (sent, events) = top_hears_tier(Vec::new());
    let refused = events.iter().any(|e| {
        matches!(e, Event::BadMessage { from, error } if *from == TIER && error.contains("is not a relay of this gateway"))
    });
    assert!(refused, "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Stored { .. })), "{events:?}");
    assert!(!sent.iter().any(|(_, m)| matches!(m, SyncMsg::Ack { next_seq, .. } if *next_seq > 0)), "{sent:?}");
}

#[test]
fn a_relays_records_are_stored_as_their_origins_and_acknowledged_to_the_relay() {
    let (sent, events) = top_hears_tier(vec![TIER]);
    let stored = stored(&events);
    assert_eq!(stored, vec![(TILL, 0, 2)], "{events:?}");
    let acks: Vec<_> = sent
        .iter()
        .filter_map(|(to, m)| match m {
            SyncMsg::Ack { origin, next_seq, .. } => Some((*to, *origin, *next_seq)),
            _ => None,
        })
        .collect();
    assert_eq!(acks, vec![(TIER, TILL, 2)], "{sent:?}");
    // The relay's Hello opened no stream of its own.
    let welcome = sent.iter().find_map(|(_, m)| match m {
        SyncMsg::Welcome { topics, .. } => Some(topics.clone()),
        _ => None,
    });
    assert_eq!(welcome.map(|t| t.len()), Some(1));
}

#[test]
fn a_relayed_range_that_overtook_the_one_before_it_is_kept_and_taken_once_the_gap_fills() {
    // The range 2..4 overtook 0..2 on the link: kept, and the answer says at once that
    // 0..2 is missing, so the relay sends that range again alone, without waiting for its
    // retransmit timeout (swarm seed 722) or going back over what followed.
    let (sent, events) = top_hears_tier_send(vec![TIER], &[2, 0, 2]);
    let acks: Vec<_> = sent
        .iter()
        .filter_map(|(_, m)| match m {
            SyncMsg::Ack { origin, next_seq, expected, refused, .. } => Some((*origin, *next_seq, *expected, *refused)),
            _ => None,
        })
        .collect();
    assert_eq!(acks.first(), Some(&(TILL, 0, 0, Refusal::Missing { to: 2 })), "{sent:?}");
    assert_eq!(acks.last(), Some(&(TILL, 4, 4, Refusal::None)), "{sent:?}");
    assert!(acks.iter().filter(|a| a.3.any()).count() == 1, "only the gap is a refusal: {acks:?}");
    // Stored in order, each once: the kept range once the one before it came.
    let stored = stored(&events);
    assert_eq!(stored, vec![(TILL, 0, 2), (TILL, 2, 2)], "{events:?}");
}
