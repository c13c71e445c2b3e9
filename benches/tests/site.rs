//! The benchmarks measure what they claim: every record produced is acknowledged durable,
//! and with a gateway, stored there and acknowledged back.

use outpost_bench::Site;
use outpost_core::io::{Control, Input};

#[test]
fn a_lone_edge_acknowledges_every_record_and_holds_it() {
    let mut site = Site::edge_only();
    site.produce_durably(5000, &[vec![b'x'; 100]], 1024);
    assert_eq!(site.counts.acked, 5000);
    assert_eq!(site.edge.node.log(outpost_core::types::TopicIdx(0)).end_offset(), 5000);
}

#[test]
fn the_gateway_stores_every_record_once_and_the_edge_learns_it() {
    let mut site = Site::with_gateway();
    site.produce_durably(5000, &[vec![b'x'; 100]], 1024);
    site.sync_all();
    assert_eq!((site.counts.acked, site.counts.stored), (5000, 5000));
    assert_eq!(site.edge.node.unsynced_records(), 0);
}

#[test]
fn a_paused_edge_syncs_its_backlog_when_resumed() {
    let mut site = Site::with_gateway();
    site.edge.node.handle(site.now, Input::Control(Control::PauseSync));
    site.produce_durably(3000, &[vec![b'x'; 100]], 1024);
    assert_eq!(site.counts.stored, 0);
    site.edge.node.handle(site.now, Input::Control(Control::ResumeSync));
    site.sync_all();
    assert_eq!(site.counts.stored, 3000);
}
