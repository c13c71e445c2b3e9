//! The simulated network: links between node pairs with latency, jitter, loss,
//! duplication, reordering and bandwidth from a profile; scheduled outages; and
//! partitions. Messages cross it as the encoded bytes the core produced.
//!
//! A message is dropped when its link is down at sending or at arrival (outage or
//! partition), by random loss, or when the link's send queue already holds more than
//! [`QUEUE_LIMIT`] of transmission time (a router's tail drop). Nodes with no link
//! between them cannot talk.

use crate::profiles::NetProfile;
use crate::rng::SimRng;
use rand::Rng;
use std::collections::BTreeMap;

/// At most this much transmission time may wait in a link's send queue (nanoseconds).
pub const QUEUE_LIMIT: u64 = 2_000_000_000;

#[derive(Clone, Debug)]
struct SimLink {
    net: NetProfile,
    /// Outage windows as [start, end) in nanoseconds.
    outages: Vec<(u64, u64)>,
    /// Per direction (from the lower node index, from the higher): when the wire is free.
    busy_until: [u64; 2],
    /// Per direction: when the last message that kept its place arrives. A connection
    /// delivers in order, so jitter delays what follows a late message too; only the
    /// profile's `reorder` and `duplicate` stand-ins arrive out of place.
    in_order_until: [u64; 2],
}

#[derive(Clone, Debug)]
struct Partition {
    /// Node index → group number, for the nodes the partition names.
    group_of: BTreeMap<usize, usize>,
    active: bool,
}

/// Counters of what the network did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetStats {
    pub sent: u64,
    pub delivered: u64,
    pub dropped_down: u64,
    pub dropped_loss: u64,
    pub dropped_queue: u64,
    pub duplicated: u64,
    /// Bytes of every message handed to a link, lost ones too: what a metered link bills.
    pub bytes_sent: u64,
    pub bytes_delivered: u64,
}

#[derive(Debug, Default)]
pub struct Network {
    links: Vec<SimLink>,
    by_pair: BTreeMap<(usize, usize), usize>,
    partitions: Vec<Partition>,
    /// Set at the start of the settle phase: every fault is healed.
    pub healed: bool,
    pub stats: NetStats,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Network {
    pub fn add_link(&mut self, a: usize, b: usize, net: NetProfile, outages: Vec<(u64, u64)>) {
        self.by_pair.insert(pair(a, b), self.links.len());
        self.links.push(SimLink { net, outages, busy_until: [0, 0], in_order_until: [0, 0] });
    }

    /// Adds a partition (inactive); returns its index for `set_partition`.
    pub fn add_partition(&mut self, groups: &[Vec<usize>]) -> usize {
        let group_of = groups.iter().enumerate().flat_map(|(g, nodes)| nodes.iter().map(move |&n| (n, g))).collect();
        self.partitions.push(Partition { group_of, active: false });
        self.partitions.len() - 1
    }

    pub fn set_partition(&mut self, idx: usize, active: bool) {
        self.partitions[idx].active = active;
    }

    /// Whether `from` can reach `to` at `now`.
    pub fn is_up(&self, now: u64, from: usize, to: usize) -> bool {
        let Some(&l) = self.by_pair.get(&pair(from, to)) else {
            return false;
        };
        if self.healed {
            return true;
        }
        if self.links[l].outages.iter().any(|&(s, e)| s <= now && now < e) {
            return false;
        }
        !self.partitions.iter().any(|p| {
            p.active
                && match (p.group_of.get(&from), p.group_of.get(&to)) {
                    (Some(a), Some(b)) => a != b,
                    (None, None) => false,
                    // A named node talks only within its group.
                    _ => true,
                }
        })
    }

    /// Sends `len` bytes; returns the arrival time of each copy that will arrive (none if
    /// dropped, two if duplicated). Arrival must still pass `is_up` at that time.
    pub fn send(&mut self, now: u64, from: usize, to: usize, len: usize, rng: &mut SimRng) -> Vec<u64> {
        self.stats.sent += 1;
        self.stats.bytes_sent += len as u64;
        if !self.is_up(now, from, to) {
            self.stats.dropped_down += 1;
            return Vec::new();
        }
        let l = self.by_pair[&pair(from, to)];
        let link = &mut self.links[l];
        let net = &link.net;
        if rng.gen_bool(net.loss.clamp(0.0, 1.0)) {
            self.stats.dropped_loss += 1;
            return Vec::new();
        }
        let dir = usize::from(from > to);
        let start = link.busy_until[dir].max(now);
        if start - now > QUEUE_LIMIT {
            self.stats.dropped_queue += 1;
            return Vec::new();
        }
        let transmit = (len as u64).saturating_mul(1_000_000_000) / net.bandwidth_bytes_per_sec.max(1);
        link.busy_until[dir] = start + transmit;
        let sent_at = start + transmit;
        let arrival = |rng: &mut SimRng, in_order_until: &mut u64| {
            let jitter = net.jitter.as_nanos();
            let j = if jitter == 0 { 0 } else { rng.gen_range(0..=2 * jitter) };
            let t = sent_at + net.latency.as_nanos().saturating_sub(jitter) + j;
            if rng.gen_bool(net.reorder.clamp(0.0, 1.0)) {
                return t + rng.gen_range(0..=2 * net.latency.as_nanos().max(1_000_000));
            }
            *in_order_until = (*in_order_until).max(t);
            *in_order_until
        };
        let mut out = vec![arrival(rng, &mut link.in_order_until[dir])];
        if rng.gen_bool(net.duplicate.clamp(0.0, 1.0)) {
            self.stats.duplicated += 1;
            // (A copy resent after a reconnect: it takes no place in the order.)
            let mut unordered = 0;
            out.push(arrival(rng, &mut unordered).max(out[0]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;
    use outpost_core::types::Duration;

    fn net(loss: f64) -> NetProfile {
        NetProfile {
            name: "test",
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(2),
            loss,
            duplicate: 0.0,
            reorder: 0.0,
            bandwidth_bytes_per_sec: 1_000_000,
        }
    }

    #[test]
    fn outages_and_partitions_cut_links() {
        let mut n = Network::default();
        n.add_link(0, 1, net(0.0), vec![(100, 200)]);
        n.add_link(1, 2, net(0.0), vec![]);
        assert!(n.is_up(50, 0, 1));
        assert!(!n.is_up(150, 1, 0));
        assert!(n.is_up(200, 0, 1));
        assert!(!n.is_up(0, 0, 2), "no link");
        let p = n.add_partition(&[vec![1], vec![2]]);
        n.set_partition(p, true);
        assert!(!n.is_up(0, 1, 2));
        assert!(!n.is_up(0, 0, 1), "a named node talks only within its group");
        n.healed = true;
        assert!(n.is_up(150, 0, 1));
    }

    #[test]
    fn bandwidth_serialises_messages() {
        let mut n = Network::default();
        n.add_link(0, 1, net(0.0), vec![]);
        let mut rng = stream(1, "t");
        let a = n.send(0, 0, 1, 100_000, &mut rng)[0];
        let b = n.send(0, 0, 1, 100_000, &mut rng)[0];
        // 100 kB at 1 MB/s is 100 ms each; the second waits for the first.
        assert!((108_000_000..=112_000_000).contains(&a), "{a}");
        assert!((208_000_000..=212_000_000).contains(&b), "{b}");
        assert_eq!(n.send(0, 0, 1, 3_000_000, &mut rng).len(), 1);
        assert!(n.send(0, 0, 1, 10, &mut rng).is_empty(), "queue holds over 2 s: tail drop");
    }

    /// A connection delivers in order: jitter larger than the gap between two messages
    /// delays the second with the first (it reordered one message in six on cellular
    /// before, and every one was refused as a gap); only `reorder` and `duplicate` draws
    /// arrive out of place.
    #[test]
    fn jitter_keeps_the_order_and_only_the_reorder_draws_break_it() {
        let mut p = net(0.0);
        p.jitter = Duration::from_millis(30);
        let arrivals = |p: NetProfile| {
            let mut n = Network::default();
            n.add_link(0, 1, p, vec![]);
            let mut rng = stream(3, "t");
            (0..2_000).map(|i| n.send(i * 1_000_000, 0, 1, 10, &mut rng)[0]).collect::<Vec<u64>>()
        };
        let out_of_place = |a: &[u64]| a.windows(2).filter(|w| w[1] < w[0]).count();
        assert_eq!(out_of_place(&arrivals(p)), 0);
        p.reorder = 0.05;
        let reordered = out_of_place(&arrivals(p));
        assert!((20..=200).contains(&reordered), "{reordered}");
    }

    #[test]
    fn loss_rate_is_honoured() {
        let mut n = Network::default();
        n.add_link(0, 1, net(0.1), vec![]);
        let mut rng = stream(2, "t");
        let delivered = (0..10_000).filter(|i| !n.send(*i * 1_000_000, 0, 1, 10, &mut rng).is_empty()).count();
        assert!((8_800..9_200).contains(&delivered), "{delivered}");
    }
}
