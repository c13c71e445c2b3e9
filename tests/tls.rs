//! TLS between real processes (docs/SECURITY.md): a fleet CA made by `outpost certs`, a
//! gateway that asks every edge for a certificate, and edges that present the right one,
//! none, a wrong one (another CA's, an expired one, one issued to another name) or speak
//! clear text. Only the right certificate, or a token over the encrypted link, gets a
//! record stored; a revocation and a token change take effect on SIGHUP, without a
//! restart, and cut off the edges they concern.

// Real processes wait on real time.
#![allow(clippy::disallowed_types)]

mod common;

use common::{free_addr, produce, wait_until, Daemon, BIN};
use outpost::config::node_id_of;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `outpost certs ARGS`, which must succeed.
fn certs(args: &[&str]) -> String {
    let out = Command::new(BIN).arg("certs").args(args).output().expect("outpost certs runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "outpost certs {args:?} failed: {text}");
    text
}

fn tls_table(ca: &Path, cert_dir: Option<(&Path, &str)>, crl: Option<&Path>) -> String {
    let mut t = format!("\n[tls]\nca = \"{}\"\n", ca.display());
    if let Some((dir, name)) = cert_dir {
        t += &format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            dir.join(format!("{name}.pem")).display(),
            dir.join(format!("{name}.key")).display()
        );
    }
    if let Some(crl) = crl {
        t += &format!("crl = \"{}\"\n", crl.display());
    }
    t
}

/// A fleet CA in `dir/ca` and certificates for `names` in `dir/certs`: the CA's
/// certificate and the certificates' directory.
fn fleet(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf) {
    let (ca, certs_dir) = (dir.join("ca"), dir.join("certs"));
    certs(&["ca", "--dir", ca.to_str().unwrap()]);
    for name in names {
        certs(&["issue", "--dir", ca.to_str().unwrap(), "--name", name, "--out", certs_dir.to_str().unwrap()]);
    }
    (ca.join("ca.pem"), certs_dir)
}

fn hangup(d: &Daemon) {
    let ok = Command::new("kill").args(["-HUP", &d.pid().to_string()]).status().expect("kill runs").success();
    assert!(ok, "SIGHUP sent to {}", d.name);
}

/// Records of `edge` that the gateway holds.
fn held_from(gateway: &Daemon, edge: &str) -> usize {
    let origin = node_id_of(edge).0;
    gateway.read_all("events").iter().filter(|r| r.0 == origin).count()
}

fn write_some(edge: &Daemon, n: usize) {
    let mut c = edge.client();
    for i in 0..n {
        produce(&mut c, "events", format!("{} {i}", edge.name).as_bytes());
    }
}

/// Waits until the gateway's log holds `what` `times` times in all; shows the log if not.
fn wait_logged(gateway: &Daemon, what: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.log_text().matches(what).count() < times {
        assert!(
            Instant::now() < deadline,
            "the gateway did not log {what:?} {times} time(s) in 30 s; its log:\n{}",
            gateway.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn only_a_certificate_of_the_fleet_for_the_edges_own_name_or_its_token_over_tls_gets_records_stored() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ca, rogue, certs_dir) = (dir.path().join("ca"), dir.path().join("rogue-ca"), dir.path().join("certs"));
    certs(&["ca", "--dir", ca.to_str().unwrap(), "--fleet", "test"]);
    certs(&["ca", "--dir", rogue.to_str().unwrap(), "--fleet", "rogue"]);
    for name in ["gateway", "edge-1", "edge-2", "edge-5"] {
        certs(&["issue", "--dir", ca.to_str().unwrap(), "--name", name, "--out", certs_dir.to_str().unwrap()]);
    }
    // Another CA's certificate for edge-3, and an expired one of the fleet for edge-4.
    let rogue_dir = dir.path().join("rogue-certs");
    certs(&["issue", "--dir", rogue.to_str().unwrap(), "--name", "edge-3", "--out", rogue_dir.to_str().unwrap()]);
    let now = time::OffsetDateTime::now_utc();
    outpost::certs::issue_valid(
        &ca,
        "edge-4",
        now - time::Duration::days(30),
        now - time::Duration::days(1),
        &certs_dir,
    )
    .expect("an expired certificate");

    let ca_pem = ca.join("ca.pem");
    let listen = free_addr();
    let gw_tls = tls_table(&ca_pem, Some((&certs_dir, "gateway")), Some(&ca.join("crl.pem")));
    let mut gateway = Daemon::gateway_named(dir.path(), "gateway", listen, &[("edge-6", "six")], "", &gw_tls);
    gateway.start();

    // The right certificate: linked, and its records stored.
    let mut edge1 =
        Daemon::edge(dir.path(), "edge-1", listen, "unused", &tls_table(&ca_pem, Some((&certs_dir, "edge-1")), None));
    edge1.start();
    write_some(&edge1, 5);
    wait_until(30, "edge-1's records at the gateway", || held_from(&gateway, "edge-1") == 5);

    // edge-2's certificate, presented by a node that calls itself edge-7.
    let stolen = tls_table(&ca_pem, Some((&certs_dir, "edge-2")), None);
    let mut edge7 = Daemon::edge(dir.path(), "edge-7", listen, "unused", &stolen);
    // Another CA's certificate; an expired certificate; clear text.
    let mut edge3 =
        Daemon::edge(dir.path(), "edge-3", listen, "unused", &tls_table(&ca_pem, Some((&rogue_dir, "edge-3")), None));
    let mut edge4 =
        Daemon::edge(dir.path(), "edge-4", listen, "unused", &tls_table(&ca_pem, Some((&certs_dir, "edge-4")), None));
    let mut edge8 = Daemon::edge(dir.path(), "edge-8", listen, "unused", "");
    for e in [&mut edge7, &mut edge3, &mut edge4, &mut edge8] {
        e.start();
        write_some(e, 3);
    }
    wait_logged(&gateway, "its certificate was issued for another name", 1);
    wait_logged(&gateway, "UnknownIssuer", 1);
    wait_logged(&gateway, "certificate expired", 1);
    wait_logged(&gateway, "not TLS", 1);
    // The edges see why: the gateway's refusal, or their own TLS error.
    wait_until(30, "edge-7 to be told", || {
        edge7.status()["link"]["peers"][0]["last_error"].as_str().is_some_and(|e| e.contains("issued for another node"))
    });
    // A token over TLS (no certificate): accepted for edge-6 only with its token.
    let mut edge6 = Daemon::edge(dir.path(), "edge-6", listen, "six", &tls_table(&ca_pem, None, None));
    edge6.start();
    write_some(&edge6, 4);
    wait_until(30, "edge-6's records at the gateway", || held_from(&gateway, "edge-6") == 4);
    std::thread::sleep(Duration::from_secs(1));
    for refused in ["edge-7", "edge-3", "edge-4", "edge-8"] {
        assert_eq!(held_from(&gateway, refused), 0, "nothing stored for {refused}");
    }
    for e in [&edge7, &edge3, &edge4, &edge8] {
        assert_eq!(e.unsynced("events"), 3, "{} keeps its records for when it is let in", e.name);
    }

    // edge-5 links too; then edge-1 is revoked and edge-6's token changed, both without a
    // restart: SIGHUP cuts both off, edge-5 stays.
    let mut edge5 =
        Daemon::edge(dir.path(), "edge-5", listen, "unused", &tls_table(&ca_pem, Some((&certs_dir, "edge-5")), None));
    edge5.start();
    write_some(&edge5, 2);
    wait_until(30, "edge-5's records at the gateway", || held_from(&gateway, "edge-5") == 2);
    let revoked = certs(&["revoke", "--dir", ca.to_str().unwrap(), "--name", "edge-1"]);
    assert!(revoked.contains("revoked 1 certificate(s) of edge-1"), "{revoked}");
    let config = std::fs::read_to_string(dir.path().join("gateway.toml")).expect("the gateway's file");
    std::fs::write(dir.path().join("gateway.toml"), config.replace("\"edge-6\" = \"six\"", "\"edge-6\" = \"seven\""))
        .expect("rewritten");
    let pid = gateway.pid();
    hangup(&gateway);
    wait_logged(&gateway, "reloaded gateway.tokens and the files of [tls]", 1);
    wait_logged(&gateway, "its certificate is no longer accepted", 1);
    wait_logged(&gateway, "its token was changed in gateway.tokens", 1);
    assert_eq!(gateway.pid(), pid, "no restart");
    assert!(gateway.is_running());
    write_some(&edge1, 3);
    write_some(&edge6, 3);
    write_some(&edge5, 3);
    wait_until(30, "edge-5's new records at the gateway", || held_from(&gateway, "edge-5") == 5);
    wait_logged(&gateway, "invalid peer certificate: Revoked", 2);
    wait_logged(&gateway, "wrong token for edge \"edge-6\"", 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(held_from(&gateway, "edge-1"), 5, "nothing more from the revoked edge");
    assert_eq!(held_from(&gateway, "edge-6"), 4, "nothing more under the old token");

    // A file that does not load is refused, and the credentials in use stay.
    std::fs::write(dir.path().join("gateway.toml"), "[tls]\nca = \"\"\n").expect("broken");
    hangup(&gateway);
    wait_logged(&gateway, "reload refused", 1);
    write_some(&edge5, 1);
    wait_until(30, "edge-5 to go on", || held_from(&gateway, "edge-5") == 6);
}

/// The edge-lite shell drives rustls by hand over its non-blocking socket: the same
/// handshake, the same refusals.
#[test]
fn an_edge_lite_links_by_its_certificate_or_its_token_over_tls_and_no_other_way() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ca_pem, certs_dir) = fleet(dir.path(), &["gateway", "till-1", "till-2"]);
    let listen = free_addr();
    let gw_tls = tls_table(&ca_pem, Some((&certs_dir, "gateway")), None);
    let mut gateway = Daemon::gateway_named(dir.path(), "gateway", listen, &[("till-3", "three")], "", &gw_tls);
    gateway.start();
    let mut till1 =
        Daemon::edge(dir.path(), "till-1", listen, "unused", &tls_table(&ca_pem, Some((&certs_dir, "till-1")), None))
            .lite();
    let mut till3 = Daemon::edge(dir.path(), "till-3", listen, "three", &tls_table(&ca_pem, None, None)).lite();
    let stolen = tls_table(&ca_pem, Some((&certs_dir, "till-2")), None);
    let mut till4 = Daemon::edge(dir.path(), "till-4", listen, "unused", &stolen).lite();
    let mut till5 = Daemon::edge(dir.path(), "till-5", listen, "unused", "").lite();
    for t in [&mut till1, &mut till3, &mut till4, &mut till5] {
        t.start();
    }
    // Enough to need many TLS records each way, and batches written while others are read.
    write_some(&till1, 2_000);
    write_some(&till3, 50);
    write_some(&till4, 3);
    write_some(&till5, 3);
    wait_until(60, "till-1's records at the gateway", || held_from(&gateway, "till-1") == 2_000);
    wait_until(30, "till-3's records at the gateway", || held_from(&gateway, "till-3") == 50);
    wait_logged(&gateway, "edge \"till-4\" refused: its certificate was issued for another name", 1);
    wait_logged(&gateway, "not TLS", 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(held_from(&gateway, "till-4"), 0, "nothing stored for an edge with another's certificate");
    assert_eq!(held_from(&gateway, "till-5"), 0, "nothing stored for a clear-text edge");
    assert_eq!(till1.unsynced("events"), 0);
    assert_eq!(till4.unsynced("events"), 3);
}

/// A middle tier speaks TLS both ways with one certificate: to its tills as their gateway,
/// to the cloud as its edge; a till's records reach the cloud under the till's name.
#[test]
fn a_middle_tier_relays_over_tls_both_ways_with_its_one_certificate() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ca_pem, certs_dir) = fleet(dir.path(), &["cloud", "store-box", "till-1"]);
    let (cloud_listen, box_listen) = (free_addr(), free_addr());
    let cloud_tables = format!("relays = [\"store-box\"]\n{}", tls_table(&ca_pem, Some((&certs_dir, "cloud")), None));
    let mut cloud = Daemon::gateway_named(dir.path(), "cloud", cloud_listen, &[], &cloud_tables, "");
    let above = format!(
        "[cloud]\ngateway = \"{cloud_listen}\"\ngateway_name = \"cloud\"\n\n[sync]\nbackoff_min = \"100ms\"\n{}",
        tls_table(&ca_pem, Some((&certs_dir, "store-box")), None)
    );
    let mut store_box = Daemon::gateway_named(dir.path(), "store-box", box_listen, &[], "", &above);
    let mut till = Daemon::edge(
        dir.path(),
        "till-1",
        box_listen,
        "unused",
        &tls_table(&ca_pem, Some((&certs_dir, "till-1")), None),
    );
    let text = std::fs::read_to_string(&till.config).expect("config");
    std::fs::write(&till.config, text.replace("[cloud]\n", "[cloud]\ngateway_name = \"store-box\"\n"))
        .expect("written");
    cloud.start();
    store_box.start();
    till.start();
    write_some(&till, 20);
    wait_until(60, "the till's records at the cloud", || held_from(&cloud, "till-1") == 20);
    assert_eq!(held_from(&cloud, "store-box"), 0, "relayed under the till's name, not the box's");
    for d in [&cloud, &store_box] {
        assert!(!d.log_text().contains("edge refused"), "{}: {}", d.name, d.log_text());
    }
}
