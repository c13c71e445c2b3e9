//! The hybrid logical clock across restarts and idle stretches, in the whole simulator
//! (issue 15, defects 2 and 5):
//!
//! - A node restarted again and again with a correct wall clock keeps issuing timestamps
//!   close to its wall clock (the checker `hlc-ahead-of-wall` would fail the run), and the
//!   gateway's receive timestamps stay after the records' (guarantee 6).
//! - A gateway that heard nothing for minutes, its clock bound long lapsed, handles the
//!   next Data at once: the edge never has to retransmit on a lossless link.

use outpost_sim::report::Verdict;
use outpost_sim::scenario;
use outpost_sim::world;
use std::fmt::Write;

/// An edge with a real-time clock and the cloud on a loopback link, `node` killed
/// `restarts` times, 4 s apart, each time back after one second: up for less than a clock
/// bound window (10 s before issue 15), which is where a clock restarting from its bound
/// gained on the wall clock.
fn reboot_loop(node: &str, restarts: u32) -> scenario::Scenario {
    let mut text = String::from(
        r#"
name = "reboot-loop"
about = "A watchdog restarts one node every 4 s."
duration = "12m"
settle = "5m"

[[node]]
id = "till"
role = "edge"
device = "retail-pos"

[[node]]
id = "cloud"
role = "gateway"
device = "cloud"

[[link]]
between = ["till", "cloud"]
net = "loopback"

[[topic]]
name = "sales"
sync = "edge-to-cloud"

[[workload]]
node = "till"
topic = "sales"
rate = 5
size = 100
"#,
    );
    for k in 0..restarts {
        let at = 30 + 4 * k;
        let _ =
            write!(text, "\n[[fault]]\nkind = \"crash\"\nnode = \"{node}\"\nat = \"{at}s\"\nrestart_after = \"1s\"\n");
    }
    scenario::parse(&text, "reboot-loop.toml").expect("a valid scenario")
}

fn assert_passes(s: &scenario::Scenario, seed: u64) -> outpost_sim::report::Report {
    let r = world::run(s, seed).expect("supported");
    let (verdict, fails) = r.judge(s);
    assert_eq!(verdict, Verdict::Pass, "{} seed {seed}: {}", s.name, fails.join("; "));
    r
}

#[test]
fn an_edge_restarted_forty_times_keeps_its_clock_near_its_wall_clock() {
    let s = reboot_loop("till", 40);
    for seed in 1..=3 {
        let r = assert_passes(&s, seed);
        assert_eq!(r.details.nodes["till"].crashes, 40);
        assert!(r.acked > 2_000 && r.lost == 0, "seed {seed}: {} acknowledged", r.acked);
    }
}

#[test]
fn a_gateway_restarted_forty_times_keeps_its_clock_near_its_wall_clock() {
    let s = reboot_loop("cloud", 40);
    for seed in 1..=3 {
        let r = assert_passes(&s, seed);
        assert_eq!(r.details.nodes["cloud"].crashes, 40);
        assert!(r.delivered > 2_000 && r.lost == 0, "seed {seed}: {} delivered", r.delivered);
    }
}

/// Bursts of a few records, each after 20 to 90 s of silence on a lossless link.
fn idle_gateway() -> scenario::Scenario {
    let mut text = String::from(
        r#"
name = "idle-gateway"
about = "An edge writes a few records now and then; nothing else reaches the gateway."
duration = "20m"
settle = "2m"

[[node]]
id = "meter"
role = "edge"
device = "iot-gateway"

[[node]]
id = "cloud"
role = "gateway"
device = "cloud"

[[link]]
between = ["meter", "cloud"]
net = "loopback"

[[topic]]
name = "readings"
sync = "edge-to-cloud"
"#,
    );
    let mut at = 10;
    for k in 0..20 {
        let _ = write!(
            text,
            "\n[[workload]]\nnode = \"meter\"\ntopic = \"readings\"\nrate = 2\nsize = 60\nfrom = \"{at}s\"\nuntil = \"{}s\"\n",
            at + 2
        );
        at += 22 + (k * 37) % 70;
    }
    scenario::parse(&text, "idle-gateway.toml").expect("a valid scenario")
}

#[test]
fn a_gateway_idle_for_minutes_takes_the_next_data_without_a_retransmit() {
    let s = idle_gateway();
    for seed in 1..=5 {
        let r = assert_passes(&s, seed);
        let meter = &r.details.nodes["meter"];
        assert!(r.delivered >= 60, "seed {seed}: {} delivered", r.delivered);
        assert_eq!(
            meter.retransmits, 0,
            "seed {seed}: the edge had to resend {} times on a lossless link: the gateway dropped Data",
            meter.retransmits
        );
    }
}
