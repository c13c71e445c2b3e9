//! `upstream` on a node (SCENARIOS.md, "Nodes"): an edge syncs up to the gateway it names,
//! not to the first one it has a link to; a gateway with an upstream is a middle tier that
//! relays; what is not built yet (an edge syncing up to an edge) or cannot be (a chain of
//! upstreams that comes back to itself) is refused by name, and a wrong name or a missing
//! link is refused by the loader with the field and what to write.

use outpost_sim::report::Verdict;
use outpost_sim::scenario;
use outpost_sim::world;

/// Two tills and two gateways. `till-1` has links to both gateways, `cloud-a` listed
/// first; `till-2` only to `cloud-a`. `upstream` is added to `till-1` by `extra`.
fn two_gateways(extra: &str) -> String {
    format!(
        r#"
name = "two-gateways"
about = "Two tills, two gateways; one till names the gateway it syncs to."
duration = "10m"
settle = "5m"

[[node]]
id = "till-1"
role = "edge"
device = "retail-pos"
{extra}

[[node]]
id = "till-2"
role = "edge"
device = "retail-pos"

[[node]]
id = "cloud-a"
role = "gateway"
device = "cloud"

[[node]]
id = "cloud-b"
role = "gateway"
device = "cloud"

[[link]]
between = ["till-1", "cloud-a"]
net = "lan"

[[link]]
between = ["till-1", "cloud-b"]
net = "lan"

[[link]]
between = ["till-2", "cloud-a"]
net = "lan"

[[topic]]
name = "sales"
sync = "edge-to-cloud"

[[workload]]
node = "till-1"
topic = "sales"
rate = 20
size = 100

[[workload]]
node = "till-2"
topic = "sales"
rate = 20
size = 100
"#
    )
}

fn run(text: &str, seed: u64) -> outpost_sim::report::Report {
    let s = scenario::parse(text, "two-gateways.toml").expect("a valid scenario");
    let r = world::run(&s, seed).expect("supported");
    let (verdict, fails) = r.judge(&s);
    assert_eq!(verdict, Verdict::Pass, "seed {seed}: {}", fails.join("; "));
    assert!(r.acked > 10_000 && r.delivered == r.acked && r.lost == 0, "seed {seed}: {r:?}");
    r
}

#[test]
fn an_edge_syncs_to_the_gateway_its_upstream_names() {
    for seed in 1..=3 {
        let named = run(&two_gateways(r#"upstream = "cloud-b""#), seed);
        assert!(named.details.nodes["cloud-b"].commits > 0, "seed {seed}: till-1's records reached cloud-b");
        let default = run(&two_gateways(""), seed);
        assert_eq!(default.details.nodes["cloud-b"].commits, 0, "seed {seed}: by default the first linked gateway");
        // Both tills' records are at cloud-a by default; with the upstream, only till-2's.
        let a = |r: &outpost_sim::report::Report| r.details.nodes["cloud-a"].disk_bytes_written;
        assert!(a(&named) < a(&default), "seed {seed}: cloud-a wrote less with till-1 sent elsewhere");
    }
}

#[test]
fn a_wrong_upstream_is_refused_with_the_field_and_what_to_write() {
    let cases = [
        (
            r#"upstream = "cloud-c""#,
            "node[0].upstream: unknown node \"cloud-c\"; nodes are: till-1, till-2, cloud-a, cloud-b",
        ),
        (r#"upstream = "till-1""#, "node[0].upstream: node \"till-1\" cannot sync up to itself"),
    ];
    for (extra, want) in cases {
        let e = scenario::parse(&two_gateways(extra), "t.toml").expect_err("refused").to_string();
        assert!(e.contains(want), "{extra}: {e}");
    }
    // till-2 has no link to cloud-b.
    let text = two_gateways("").replace(
        "id = \"till-2\"\nrole = \"edge\"\ndevice = \"retail-pos\"",
        "id = \"till-2\"\nrole = \"edge\"\ndevice = \"retail-pos\"\nupstream = \"cloud-b\"",
    );
    let e = scenario::parse(&text, "t.toml").expect_err("refused").to_string();
    assert!(e.contains("node[1].upstream: node \"till-2\" syncs up to \"cloud-b\", but no [[link]] joins them"), "{e}");
}

#[test]
fn what_is_not_built_yet_or_cannot_be_is_refused_by_name() {
    let link = |a: &str, b: &str| format!("[[link]]\nbetween = [\"{a}\", \"{b}\"]\nnet = \"lan\"\n\n[[topic]]");
    let up = |text: String, node: &str, to: &str| {
        let head = format!("id = \"{node}\"\nrole = \"gateway\"\ndevice = \"cloud\"");
        text.replace(&head, &format!("{head}\nupstream = \"{to}\""))
    };
    let circle = up(up(two_gateways(""), "cloud-a", "cloud-b"), "cloud-b", "cloud-a")
        .replace("[[topic]]", &link("cloud-a", "cloud-b"));
    let s = scenario::parse(&circle, "t.toml").expect("loads");
    let e = world::run(&s, 1).expect_err("refused").to_string();
    assert!(e.contains("its chain of upstreams comes back to it"), "{e}");
    let edge_up = two_gateways(r#"upstream = "till-2""#).replace("[[topic]]", &link("till-1", "till-2"));
    let s = scenario::parse(&edge_up, "t.toml").expect("loads");
    let e = world::run(&s, 1).expect_err("not built yet").to_string();
    assert!(e.contains("relaying through an edge is not built yet"), "{e}");
}

/// `cloud-a` becomes a middle tier under `cloud-b`: both tills' records reach `cloud-b`
/// through it, once each and in order, and `cloud-a` holds each once too.
#[test]
fn a_gateway_with_an_upstream_relays_its_edges_records_up() {
    let text = two_gateways(r#"upstream = "cloud-a""#)
        .replace(
            "id = \"cloud-a\"\nrole = \"gateway\"\ndevice = \"cloud\"",
            "id = \"cloud-a\"\nrole = \"gateway\"\ndevice = \"iot-gateway\"\nupstream = \"cloud-b\"",
        )
        .replace("[[topic]]", "[[link]]\nbetween = [\"cloud-a\", \"cloud-b\"]\nnet = \"cellular\"\n\n[[topic]]");
    for seed in 1..=3 {
        let r = run(&text, seed);
        assert_eq!(r.duplicates + r.out_of_order, 0, "seed {seed}");
    }
}
