//! Relay tiers with real processes: a cloud gateway, a store's back-office box (a gateway
//! with `[cloud]`, a middle tier) and two tills under it (one per shell). Sales written at
//! the tills reach the cloud through the box, promotions written in the cloud reach both
//! tills through it, each record exactly once and in order at every node that holds it,
//! across a kill -9 of the box and of a till; stock (a `both` topic) goes both ways
//! through the box: a till's counts up to the cloud, the cloud's corrections down to both.

mod common;

use common::{free_addr, http, produce, wait_until, Daemon};
use outpost::config::node_id_of;
use outpost_core::config::Way;

const TOPICS: &str =
    "\n[[topics]]\nname = \"sales\"\nsync = \"up\"\n\n[[topics]]\nname = \"promotions\"\nsync = \"down\"\n\n\
                      [[topics]]\nname = \"stock\"\nsync = \"both\"\n";
/// Fast redials, and a keepalive of a second so that a restarted box hears of its tills
/// (and the cloud of the box) at once.
const SYNC: &str = "backoff_min = \"100ms\"\nbackoff_max = \"2s\"\nkeepalive_interval = \"1s\"\n";

fn values(d: &Daemon, topic: &str) -> Vec<(u64, u64, String)> {
    d.read_all(topic).into_iter().map(|(o, s, v)| (o, s, String::from_utf8(v).expect("utf8"))).collect()
}

fn sell(till: &Daemon, from: usize, n: usize) {
    let mut c = till.client();
    for i in from..from + n {
        produce(&mut c, "sales", format!("{} sale {i}", till.name).as_bytes());
    }
}

fn promote(cloud: &Daemon, from: usize, n: usize) {
    let mut c = cloud.client();
    for i in from..from + n {
        produce(&mut c, "promotions", format!("promo {i}").as_bytes());
    }
}

/// `node` holds exactly sales 0..n of each till, each till's in order at its sequences.
fn wait_for_sales(node: &Daemon, tills: &[&Daemon], n: usize) {
    wait_until(60, &format!("{} to hold {n} sales of each till", node.name), || {
        values(node, "sales").len() >= n * tills.len()
    });
    let held = values(node, "sales");
    assert_eq!(held.len(), n * tills.len(), "{}: no record twice", node.name);
    for t in tills {
        let origin = node_id_of(&t.name).0;
        let mine: Vec<(u64, String)> = held.iter().filter(|r| r.0 == origin).map(|r| (r.1, r.2.clone())).collect();
        let want: Vec<(u64, String)> = (0..n).map(|i| (i as u64, format!("{} sale {i}", t.name))).collect();
        assert_eq!(mine, want, "{}: {}'s sales once each, in order", node.name, t.name);
    }
}

fn count_stock(d: &Daemon, from: usize, n: usize) {
    let mut c = d.client();
    for i in from..from + n {
        produce(&mut c, "stock", format!("{} stock {i}", d.name).as_bytes());
    }
}

/// Each of `nodes` holds exactly `writer`'s stock records 0..n in the half `way`, in order.
fn wait_for_stock(nodes: &[&Daemon], way: Way, writer: &str, n: usize) {
    let origin = node_id_of(writer).0;
    let want: Vec<(u64, u64, String)> = (0..n).map(|i| (origin, i as u64, format!("{writer} stock {i}"))).collect();
    let held = |d: &Daemon| -> Vec<(u64, u64, String)> {
        let all = d.read_way("stock", Some(way)).into_iter();
        all.map(|(o, s, v)| (o, s, String::from_utf8(v).expect("utf8"))).collect()
    };
    for d in nodes {
        wait_until(60, &format!("{} to hold {n} stock records of {writer}", d.name), || held(d).len() >= n);
        assert_eq!(held(d), want, "{}: {writer}'s stock once each, in order", d.name);
    }
}

/// Every node holds promotions 0..n, the cloud's, at the cloud's sequences.
fn wait_for_promotions(nodes: &[&Daemon], n: usize) {
    let cloud = node_id_of("cloud").0;
    let want: Vec<(u64, u64, String)> = (0..n).map(|i| (cloud, i as u64, format!("promo {i}"))).collect();
    for d in nodes {
        wait_until(60, &format!("{} to hold {n} promotions", d.name), || values(d, "promotions").len() >= n);
        assert_eq!(values(d, "promotions"), want, "{}: every promotion once, in order", d.name);
    }
}

#[test]
fn sales_go_up_and_promotions_come_down_through_a_middle_tier_across_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cloud_listen, box_listen) = (free_addr(), free_addr());
    let relays = format!("relays = [\"store-box\"]\n{TOPICS}");
    let mut cloud =
        Daemon::gateway_named(dir.path(), "cloud", cloud_listen, &[("store-box", "box-secret")], &relays, "");
    let above = format!(
        "[cloud]\ngateway = \"{cloud_listen}\"\ngateway_name = \"cloud\"\ntoken = \"box-secret\"\n\n[sync]\n{SYNC}"
    );
    let tills = [("till-1", "t1"), ("till-2", "t2")];
    let mut store_box = Daemon::gateway_named(dir.path(), "store-box", box_listen, &tills, TOPICS, &above);
    let till = |name: &str, token: &str| Daemon::edge_with_sync(dir.path(), name, box_listen, token, SYNC, TOPICS);
    let mut till1 = till("till-1", "t1");
    let mut till2 = till("till-2", "t2").lite();
    for t in [&mut till1, &mut till2] {
        let text = std::fs::read_to_string(&t.config).expect("config");
        let text = text.replace("[cloud]\n", "[cloud]\ngateway_name = \"store-box\"\n");
        std::fs::write(&t.config, text).expect("config written");
    }
    cloud.start();
    store_box.start();
    till1.start();
    till2.start();

    // A middle tier writes neither way.
    for topic in ["sales", "promotions", "stock"] {
        let (code, body) =
            http(store_box.http, "POST", &format!("/v1/topics/{topic}/records"), None, b"x").expect("http");
        assert_eq!(code, 405, "{topic}: {}", String::from_utf8_lossy(&body));
    }

    sell(&till1, 0, 200);
    sell(&till2, 0, 200);
    promote(&cloud, 0, 100);
    count_stock(&till1, 0, 50);
    count_stock(&cloud, 0, 50);
    wait_for_sales(&cloud, &[&till1, &till2], 200);
    wait_for_sales(&store_box, &[&till1, &till2], 200);
    wait_for_promotions(&[&store_box, &till1, &till2], 100);

    // The box killed while both sides write; back, it relays the rest both ways.
    store_box.kill();
    sell(&till1, 200, 200);
    sell(&till2, 200, 200);
    promote(&cloud, 100, 100);
    count_stock(&till1, 50, 50);
    count_stock(&cloud, 50, 50);
    store_box.start();
    wait_for_sales(&cloud, &[&till1, &till2], 400);
    wait_for_promotions(&[&store_box, &till1, &till2], 200);

    // A till killed; what was written meanwhile on both sides arrives once.
    till2.kill();
    promote(&cloud, 200, 100);
    sell(&till1, 400, 100);
    till2.start();
    sell(&till2, 400, 100);
    count_stock(&cloud, 100, 50);
    wait_for_sales(&cloud, &[&till1, &till2], 500);
    wait_for_sales(&store_box, &[&till1, &till2], 500);
    wait_for_promotions(&[&store_box, &till1, &till2], 300);
    wait_for_stock(&[&cloud, &store_box], Way::Up, "till-1", 100);
    wait_for_stock(&[&store_box, &till1, &till2], Way::Down, "cloud", 150);

    let (code, table) = store_box.cli(&["sync", "status"]);
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("gateway  cloud  session active"), "{table}");
    for t in ["till-1", "till-2"] {
        assert!(table.lines().any(|l| l.starts_with(t) && l.contains("promotions") && l.contains("300")), "{table}");
    }
}
