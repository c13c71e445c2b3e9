//! `cloud-to-edge` topics in the simulator (SCENARIOS.md, "Topics" and "Workloads"): a
//! gateway's workload reaches every edge that syncs up to it, each record once and in
//! order, whatever the outages and crashes; a workload on the wrong side of a topic is
//! refused by the loader with the field and what to write; a `bidirectional` topic's
//! records written at the edges go up and those written at the gateway come down, each
//! checked as a stream of its own.

use outpost_sim::report::Verdict;
use outpost_sim::scenario;
use outpost_sim::world;

/// Three edges and a gateway: configuration goes down, status goes up. `kiosk-3` is cut
/// off for most of the run and `kiosk-2` reboots while its link is down.
fn kiosks(topics: &str, workloads: &str) -> String {
    format!(
        r#"
name = "kiosks"
about = "Three kiosks get configuration from the cloud and send status up."
duration = "2h"
settle = "20m"

[[node]]
id = "kiosk-1"
role = "edge"
device = "retail-pos"

[[node]]
id = "kiosk-2"
role = "edge"
device = "pi4"

[[node]]
id = "kiosk-3"
role = "edge"
device = "pi-zero"

[[node]]
id = "cloud"
role = "gateway"
device = "cloud"

[[link]]
between = ["kiosk-1", "cloud"]
net = "cellular"
outages = [ {{ at = "10m", for = "5m" }} ]

[[link]]
between = ["kiosk-2", "cloud"]
net = "wifi"
outages = [ {{ at = "30m", for = "20m" }} ]

[[link]]
between = ["kiosk-3", "cloud"]
net = "satellite"
outages = [ {{ at = "5m", for = "100m" }} ]

{topics}
{workloads}

[[fault]]
kind = "crash"
node = "kiosk-2"
at = "40m"
restart_after = "2m"

[[fault]]
kind = "crash"
node = "cloud"
at = "1h"
restart_after = "30s"
"#
    )
}

const TOPICS: &str = r#"
[[topic]]
name = "config"
sync = "cloud-to-edge"

[[topic]]
name = "status"
sync = "edge-to-cloud"
"#;

const WORKLOADS: &str = r#"
[[workload]]
node = "cloud"
topic = "config"
rate = 2
size = 400

[[workload]]
node = "kiosk-1"
topic = "status"
rate = 5
size = 100
"#;

#[test]
fn every_edge_gets_every_record_the_gateway_acknowledged_once_and_in_order() {
    let s = scenario::parse(&kiosks(TOPICS, WORKLOADS), "kiosks.toml").expect("a valid scenario");
    for seed in 1..=3 {
        let r = world::run(&s, seed).expect("supported");
        let (verdict, fails) = r.judge(&s);
        assert_eq!(verdict, Verdict::Pass, "seed {seed}: {}", fails.join("; "));
        assert_eq!((r.lost, r.duplicates, r.out_of_order), (0, 0, 0), "seed {seed}");
        // Status is delivered once (to the gateway), configuration three times (to each
        // kiosk): `delivered` counts copies held where they must be.
        let (status, config) = (5 * 7200, 2 * 7200);
        assert!(r.acked > (status + config) * 9 / 10, "seed {seed}: {} acknowledged", r.acked);
        assert!(r.delivered > r.acked + config * 2 * 9 / 10, "seed {seed}: {} delivered", r.delivered);
    }
}

fn refused(topics: &str, workloads: &str) -> String {
    match scenario::parse(&kiosks(topics, workloads), "kiosks.toml") {
        Ok(s) => world::run(&s, 1).map(|_| "ran").expect_err("refused").to_string(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_workload_on_the_side_that_does_not_write_the_topic_is_refused_with_what_to_write() {
    let edge_writes_down = WORKLOADS.replace("node = \"cloud\"", "node = \"kiosk-2\"");
    let e = refused(TOPICS, &edge_writes_down);
    assert!(e.contains("workload[0].node") && e.contains("\"kiosk-2\" is an edge"), "{e}");
    assert!(e.contains("written at a gateway"), "{e}");
    let gateway_writes_up = WORKLOADS.replace("node = \"kiosk-1\"", "node = \"cloud\"");
    let e = refused(TOPICS, &gateway_writes_up);
    assert!(e.contains("workload[1].node") && e.contains("\"cloud\" is a gateway"), "{e}");
}

#[test]
fn a_bidirectional_topic_carries_the_edges_records_up_and_the_gateways_down() {
    let topics = format!("{TOPICS}\n[[topic]]\nname = \"orders\"\nsync = \"bidirectional\"\n");
    let orders = |node: &str, rate: u32| {
        format!("\n[[workload]]\nnode = \"{node}\"\ntopic = \"orders\"\nrate = {rate}\nsize = 200\n")
    };
    let workloads = format!("{WORKLOADS}{}{}{}", orders("cloud", 2), orders("kiosk-1", 3), orders("kiosk-3", 1));
    let s = scenario::parse(&kiosks(&topics, &workloads), "kiosks.toml").expect("a valid scenario");
    let halves: Vec<(&str, scenario::SyncDirection)> = s.topics.iter().map(|t| (t.name.as_str(), t.sync)).collect();
    assert_eq!(
        &halves[2..],
        [("orders", scenario::SyncDirection::EdgeToCloud), ("orders", scenario::SyncDirection::CloudToEdge)]
    );
    let writes: Vec<usize> = s.workloads.iter().map(|w| w.topic).collect();
    assert_eq!(writes, [0, 1, 3, 2, 2], "the cloud writes the half that comes down, the kiosks the half that goes up");
    for seed in 1..=3 {
        let r = world::run(&s, seed).expect("supported");
        let (verdict, fails) = r.judge(&s);
        assert_eq!(verdict, Verdict::Pass, "seed {seed}: {}", fails.join("; "));
        assert_eq!((r.lost, r.duplicates, r.out_of_order), (0, 0, 0), "seed {seed}");
        // Copies where they must be: status and the kiosks' orders once (at the cloud),
        // configuration and the cloud's orders three times (at each kiosk).
        let (once, thrice) = ((5 + 3 + 1) * 7200, (2 + 2) * 7200);
        assert!(r.acked > (once + thrice) * 9 / 10, "seed {seed}: {} acknowledged", r.acked);
        assert!(r.delivered > (once + 3 * thrice) * 9 / 10, "seed {seed}: {} delivered", r.delivered);
    }
}
