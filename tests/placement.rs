//! Placement between real processes (docs/SECURITY.md, guarantee 7): an edge sends a
//! classified topic only to a gateway whose own word (its Welcome) puts it in one of the
//! topic's zones. An edge whose file says its gateway is in the EU while the gateway says
//! it is in the US sends it nothing of the topic, logs why, and refuses produces to it with
//! an error naming the classification and the zones; once the gateway is in the EU, the
//! topic flows. Unclassified data goes as always.

mod common;

use common::{produce, wait_until, Daemon};

const TOPICS: &str = "[[topics]]\nname = \"patients\"\nclassification = \"gdpr\"\n[[topics]]\nname = \"telemetry\"\n";

/// Sets the gateway's `node.zone` in its file.
fn set_zone(gateway: &Daemon, zone: &str) {
    let text = std::fs::read_to_string(&gateway.config).expect("the gateway's file");
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("zone = ")).collect();
    let text = kept.join("\n").replacen("[node]\n", &format!("[node]\nzone = \"{zone}\"\n"), 1);
    std::fs::write(&gateway.config, text).expect("the gateway's file written");
}

#[test]
fn a_classified_topic_goes_only_to_a_gateway_that_says_it_is_in_its_zones() {
    placed_by_the_gateway_s_word(false);
}

#[test]
fn an_edge_lite_edge_sends_a_classified_topic_only_to_a_gateway_in_its_zones() {
    placed_by_the_gateway_s_word(true);
}

fn placed_by_the_gateway_s_word(lite: bool) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let listen = common::free_addr();
    let mut gateway = Daemon::gateway_named(dir.path(), "gateway", listen, &[("clinic", "t")], "", TOPICS);
    set_zone(&gateway, "us");
    gateway.start();
    // A keepalive every second: how soon the edge hears a restarted gateway's zone.
    let sync = "backoff_min = \"100ms\"\nbackoff_max = \"1s\"\nkeepalive_interval = \"1s\"\n";
    let mut clinic = Daemon::edge_with_sync(dir.path(), "clinic", listen, "t", sync, TOPICS);
    let text = std::fs::read_to_string(&clinic.config).expect("the edge's file");
    let text =
        text.replacen("[node]\n", "[node]\nzone = \"eu\"\n", 1).replacen("[cloud]\n", "[cloud]\nzone = \"eu\"\n", 1);
    std::fs::write(&clinic.config, text).expect("the edge's file written");
    if lite {
        clinic = clinic.lite();
    }
    clinic.start();

    let mut c = clinic.client();
    produce(&mut c, "telemetry", b"pulse oximeter 1 ok");
    wait_until(30, "telemetry at the gateway", || gateway.read_all("telemetry").len() == 1);
    wait_until(30, "the edge to log the gateway's zone", || {
        clinic.log_text().contains("says it is in a zone this topic's classification does not allow")
    });
    let refused = c.produce("patients", None, b"patient 1: allergy to penicillin").expect_err("no allowed destination");
    let why = refused.to_string();
    assert!(why.contains("classified gdpr") && why.contains("zones [eu]"), "{why}");
    assert!(!refused.is_retryable(), "{why}");
    assert!(gateway.read_all("patients").is_empty(), "nothing classified reached the US gateway");

    // The gateway is moved to the EU (its file and a restart): its answer to the edge's
    // next keepalive says so, the edge starts a new session, and the topic flows.
    gateway.kill();
    set_zone(&gateway, "eu");
    gateway.start();
    wait_until(30, "the gateway to be accepted for the topic", || {
        c.produce("patients", None, b"patient 2: no known allergies").is_ok()
    });
    wait_until(30, "the record at the gateway", || gateway.read_all("patients").len() == 1);
    let (_, _, value) = &gateway.read_all("patients")[0];
    assert_eq!(value.as_slice(), b"patient 2: no known allergies");
}
