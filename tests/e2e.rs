//! End-to-end encryption between real processes (docs/SECURITY.md): an edge seals what is
//! produced to an `encrypt = true` topic under a key the gateway does not hold; the gateway
//! stores and serves only envelopes, which a consumer holding the key file opens; what a
//! cloud application seals comes down the same way, and an envelope with one flipped byte
//! is reported as tampered, never returned as a value.

mod common;

use common::{free_addr, incompressible, produce, wait_until, Daemon, BIN};
use outpost::config::node_id_of;
use outpost::e2e::{Context, Keyring, OpenError};
use std::path::Path;
use std::process::Command;

const TOPICS: &str = "[[topics]]\nname = \"pos\"\nencrypt = true\n{KEYS}\n\
                      [[topics]]\nname = \"prices\"\nsync = \"down\"\nencrypt = true\n{KEYS}\n\
                      [[topics]]\nname = \"plain\"\n";

/// Whether any file under `dir` contains `needle`.
fn found_in(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).expect("a directory").any(|e| {
        let path = e.expect("an entry").path();
        if path.is_dir() {
            found_in(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}

#[test]
fn the_gateway_stores_and_serves_only_envelopes_and_a_flipped_byte_is_reported_as_tampering() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = dir.path().join("shop.keys");
    let out = Command::new(BIN).args(["keys", "add", "--file"]).arg(&keys).output().expect("outpost keys runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ring = Keyring::load(&keys).expect("the key file the command wrote");

    let listen = free_addr();
    let gw_topics = TOPICS.replace("{KEYS}", "");
    let mut gateway = Daemon::gateway_named(dir.path(), "gateway", listen, &[("till-1", "t")], "", &gw_topics);
    gateway.start();
    let edge_topics = TOPICS.replace("{KEYS}", &format!("keys = \"{}\"", keys.display()));
    let mut till = Daemon::edge(dir.path(), "till-1", listen, "t", &edge_topics);
    till.start();

    let (secret, control) = (incompressible(1, 256), incompressible(2, 256));
    let mut c = till.client();
    produce(&mut c, "pos", &secret);
    produce(&mut c, "plain", &control);
    wait_until(30, "both records at the gateway", || {
        gateway.read_all("pos").len() == 1 && gateway.read_all("plain").len() == 1
    });
    gateway.kill();
    till.kill();
    let gateway_data = dir.path().join("gateway");
    assert!(found_in(&gateway_data, &control), "the search finds a value stored in clear");
    assert!(!found_in(&gateway_data, &secret), "the gateway's files never hold an encrypted topic's plaintext");
    assert!(!found_in(&dir.path().join("till-1"), &secret), "nor the edge's: it stores what it sealed");
    gateway.start();
    till.start();

    let held = gateway.read_all("pos");
    let (origin, _, envelope) = &held[0];
    assert_eq!(*origin, node_id_of("till-1").0);
    assert!(outpost::e2e::is_sealed(envelope) && !envelope.windows(secret.len()).any(|w| w == secret));
    let at_till = Context { topic: "pos", origin: node_id_of("till-1"), key: None };
    assert_eq!(ring.open(&at_till, envelope).expect("the consumer with the key opens it"), secret);
    let moved = Context { topic: "prices", ..at_till };
    assert_eq!(ring.open(&moved, envelope), Err(OpenError::Tampered), "bound to its topic");

    // Down: a cloud application seals with the key; the gateway holds no key and stores the
    // envelopes as given. One has a flipped byte, as a compromised gateway would send.
    let from_cloud = Context { topic: "prices", origin: node_id_of("gateway"), key: None };
    let price = b"coffee 2.40".to_vec();
    let sealed = ring.seal(&from_cloud, &price);
    let mut forged = ring.seal(&from_cloud, b"coffee 0.01");
    let last = forged.len() - 20;
    forged[last] ^= 0x01;
    let mut cloud = gateway.client();
    produce(&mut cloud, "prices", &sealed);
    produce(&mut cloud, "prices", &forged);
    // A cloud application that forgets to seal is refused, not stored in clear; in a batch,
    // the record alone.
    match cloud.produce("prices", None, b"coffee 2.40") {
        Err(outpost::client::ClientError::Refused { retryable: false, message, .. }) => {
            assert!(message.contains("end-to-end encrypted and this node holds none of its keys"), "{message}")
        }
        other => panic!("an unsealed value on a gateway: {other:?}"),
    }
    let batch =
        cloud.produce_batch("prices", &[(None, b"in clear".as_slice()), (None, sealed.as_slice())]).expect("answered");
    assert!(batch[0].is_err() && batch[1].is_ok(), "{batch:?}");
    wait_until(30, "the prices at the till", || till.read_all("prices").len() == 3);
    let down = till.read_all("prices");
    assert_eq!(ring.open(&from_cloud, &down[0].2).expect("opens at the till"), price);
    assert_eq!(ring.open(&from_cloud, &down[1].2), Err(OpenError::Tampered), "reported, never a value");
    assert_eq!(down[2].2, sealed, "of the batch, the sealed record only");
    assert!(gateway.read_all("prices").iter().all(|r| outpost::e2e::is_sealed(&r.2)), "nothing in clear");
}
