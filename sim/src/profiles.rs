//! Built-in device and network profiles that scenario files name (`device = "pi4"`,
//! `net = "cellular"`).
//!
//! Every figure says where it comes from. Three kinds of source appear:
//! - **spec**: a standard or datasheet class (SD Association speed classes, JEDEC eMMC,
//!   Ethernet line rate, geostationary orbit geometry);
//! - **measured**: published measurements of that class of hardware, quoted as a range,
//!   from which we took a representative value;
//! - **estimate**: our own judgement where neither exists in a citable form. These are
//!   the figures to revisit first when a real device disagrees.
//!
//! Durations are simulated time. A profile is a fixed description: the simulator draws
//! per-node values (clock offset, drift, fsync latency samples) from it with the run seed.
//! docs/SCENARIOS.md renders these tables for users; keep the two in step.

use outpost_core::types::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const MB: u64 = 1_000_000;
const KB: u64 = 1_000;

/// How a node's storage behaves: the latency of each kind of request and its throughput.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskProfile {
    /// Time for a small append to reach the page cache (the `write()` call), not the media.
    pub write_latency: Duration,
    /// Median time for an fsync of a freshly appended tail to complete.
    pub fsync_latency_median: Duration,
    /// 99th percentile of the same: flash garbage collection and journal commits stall
    /// far beyond the median, and group commit must ride those stalls out.
    pub fsync_latency_p99: Duration,
    /// Sustained sequential write throughput to the media, in bytes per second.
    pub write_bytes_per_sec: u64,
    /// Time for a small read that misses the page cache (one random 4 KiB read).
    pub read_latency: Duration,
}

/// How a node's wall clock (what the HLC reads) misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockProfile {
    /// The initial |offset| of the wall clock from true time is drawn up to this.
    pub max_offset: Duration,
    /// The wall clock's rate error is drawn up to this, in parts per million, either way.
    pub max_drift_ppm: u32,
    /// False: the device has no battery-backed real-time clock, so its wall clock starts
    /// at 0 (1970-01-01) after every restart until something sets it.
    pub has_rtc: bool,
}

/// A kind of device: its resources, its storage and its clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceProfile {
    /// The name scenario files use (`device = "…"`).
    pub name: &'static str,
    /// Physical memory; the default limit of a node's accounted memory.
    pub memory_bytes: u64,
    /// Capacity of the data partition; the default limit of a node's accounted storage.
    pub storage_bytes: u64,
    /// Storage behaviour.
    pub disk: DiskProfile,
    /// Wall-clock behaviour.
    pub clock: ClockProfile,
}

/// A kind of network link. The simulator applies it per message in each direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetProfile {
    /// The name scenario files use (`net = "…"`).
    pub name: &'static str,
    /// One-way delay of a message (half the round-trip time).
    pub latency: Duration,
    /// Random extra delay added to `latency`, drawn up to this.
    pub jitter: Duration,
    /// Probability in 0..1 that a message is lost.
    pub loss: f64,
    /// Probability in 0..1 that a message is delivered twice.
    pub duplicate: f64,
    /// Probability in 0..1 that a message is held back behind later ones.
    pub reorder: f64,
    /// Throughput of the link in bytes per second, the same both ways. For asymmetric
    /// links this is the uplink, which is what limits edge-to-cloud sync.
    pub bandwidth_bytes_per_sec: u64,
}

/// Names of the built-in device profiles, in the order of docs/SCENARIOS.md.
pub const DEVICE_NAMES: &[&str] =
    &["pi-zero", "pi4", "iot-gateway", "vehicle-ecu", "retail-pos", "industrial", "cloud"];

/// Names of the built-in network profiles, from fastest to slowest.
pub const NET_NAMES: &[&str] = &["loopback", "lan", "wifi", "cellular", "satellite"];

/// The built-in device profile called `name`, or `None` if there is none.
pub fn device(name: &str) -> Option<DeviceProfile> {
    let profile = match name {
        "pi-zero" => PI_ZERO,
        "pi4" => PI4,
        "iot-gateway" => IOT_GATEWAY,
        "vehicle-ecu" => VEHICLE_ECU,
        "retail-pos" => RETAIL_POS,
        "industrial" => INDUSTRIAL,
        "cloud" => CLOUD,
        _ => return None,
    };
    Some(profile)
}

/// The built-in network profile called `name`, or `None` if there is none.
pub fn net(name: &str) -> Option<NetProfile> {
    let profile = match name {
        "loopback" => LOOPBACK,
        "lan" => LAN,
        "wifi" => WIFI,
        "cellular" => CELLULAR,
        "satellite" => SATELLITE,
        _ => return None,
    };
    Some(profile)
}

// ---------------------------------------------------------------------------------------
// Devices
//
// `write_latency` is the cost of a small write() into the page cache. On one x86 core it
// is a few microseconds (measured: syscall plus a small copy, 1–5 µs); DESIGN §6 scales a
// Pi 4 at 3× slower and a Pi Zero at about 10× slower than one x86 core, which gives the
// Pi figures below.
//
// microSD figures: the SD Association's Application Performance Class A1 (spec) promises
// at least 1,500 random-read and 500 random-write IOPS and 10 MB/s sustained sequential
// writes; A2 promises 4,000/2,000. DESIGN §6 takes ~20 MB/s sequential and 500–2,000
// random-write IOPS. An fsync of an appended tail on ext4 costs the data write plus a
// journal commit (two or three small random writes, so several ms at A1 rates). SD cards
// are known to stall for hundreds of ms, sometimes seconds, during internal garbage
// collection (measured: user reports of fsync stalls on SD/eMMC under sustained writes);
// the p99 figures are estimates within that range.
// ---------------------------------------------------------------------------------------

/// Raspberry Pi Zero / Zero W: 512 MB RAM (spec), microSD on a 50 MHz 4-bit bus.
const PI_ZERO: DeviceProfile = DeviceProfile {
    name: "pi-zero",
    memory_bytes: 512 * MIB, // spec: every Pi Zero model has 512 MB
    storage_bytes: 16 * GIB, // estimate: a common card size for kiosks
    disk: DiskProfile {
        write_latency: Duration::from_micros(30),       // DESIGN §6: ~10× one x86 core
        fsync_latency_median: Duration::from_millis(8), // estimate: A1 rates, slow bus
        fsync_latency_p99: Duration::from_millis(400),  // estimate: SD GC stalls
        // spec: 50 MHz SDR × 4 bits caps the bus near 25 MB/s; cards sustain less.
        write_bytes_per_sec: 15 * MB,
        read_latency: Duration::from_millis(1), // spec: A1 ≥ 1,500 IOPS, slower bus
    },
    clock: ClockProfile {
        // estimate: NTP-synced once before the run; seconds of error are common on
        // Wi-Fi-only kiosks.
        max_offset: Duration::from_secs(2),
        // measured: chrony reports Pi crystal frequency errors of tens of ppm.
        max_drift_ppm: 50,
        has_rtc: false, // spec: no RTC on any Pi before the Pi 5
    },
};

/// Raspberry Pi 4 Model B, 4 GB variant, booting from microSD.
const PI4: DeviceProfile = DeviceProfile {
    name: "pi4",
    memory_bytes: 4 * GIB,   // spec: sold with 1, 2, 4 or 8 GB; 4 GB is the common one
    storage_bytes: 32 * GIB, // estimate: a common card size
    disk: DiskProfile {
        write_latency: Duration::from_micros(10),       // DESIGN §6: one x86 core ÷ 3
        fsync_latency_median: Duration::from_millis(5), // estimate: A1 random-write rates
        fsync_latency_p99: Duration::from_millis(250),  // estimate: SD GC stalls
        write_bytes_per_sec: 20 * MB,                   // DESIGN §6: ~20 MB/s sequential
        read_latency: Duration::from_micros(700),       // spec: A1 ≥ 1,500 random-read IOPS
    },
    clock: ClockProfile {
        max_offset: Duration::from_secs(1), // estimate: NTP-synced before the run
        max_drift_ppm: 50,                  // measured: tens of ppm, as the Pi Zero
        has_rtc: false,                     // spec: no RTC before the Pi 5
    },
};

/// An ARM Cortex-A industrial IoT gateway (the class of Moxa UC, Advantech, Dell Edge
/// Gateway boxes): 1 GB RAM, 8 GB eMMC, battery-backed RTC.
const IOT_GATEWAY: DeviceProfile = DeviceProfile {
    name: "iot-gateway",
    memory_bytes: GIB,      // spec class: such gateways ship with 512 MB–2 GB
    storage_bytes: 8 * GIB, // spec class: 4–16 GB eMMC
    disk: DiskProfile {
        write_latency: Duration::from_micros(10),       // estimate: Pi 4-class cores
        fsync_latency_median: Duration::from_millis(2), // estimate: eMMC cache flush + journal
        fsync_latency_p99: Duration::from_millis(50),   // estimate: eMMC GC, better than SD
        write_bytes_per_sec: 40 * MB,                   // measured: eMMC 5.x small parts write 40–90 MB/s
        read_latency: Duration::from_micros(200),       // measured: eMMC random 4 KiB reads
    },
    clock: ClockProfile {
        max_offset: Duration::from_secs(2), // estimate: NTP when online, RTC otherwise
        max_drift_ppm: 50,                  // spec class: ±50 ppm crystals over temperature
        has_rtc: true,                      // spec class: battery- or supercap-backed RTC
    },
};

/// A telematics ECU in a vehicle: 128 MiB RAM, about 1 GiB of eMMC for data, an RTC
/// kept by the vehicle battery.
const VEHICLE_ECU: DeviceProfile = DeviceProfile {
    name: "vehicle-ecu",
    memory_bytes: 128 * MIB, // spec class: small telematics units, 64–256 MB
    storage_bytes: GIB,      // spec class: ~1 GiB flash/eMMC data partition
    disk: DiskProfile {
        write_latency: Duration::from_micros(30),       // estimate: Pi Zero-class core
        fsync_latency_median: Duration::from_millis(3), // estimate: small automotive eMMC
        fsync_latency_p99: Duration::from_millis(100),  // estimate: eMMC GC on a small part
        write_bytes_per_sec: 10 * MB,                   // estimate: small eMMC parts write far below big ones
        read_latency: Duration::from_micros(300),       // estimate: eMMC random 4 KiB reads
    },
    clock: ClockProfile {
        max_offset: Duration::from_secs(2), // estimate: set from GNSS/cellular, drifts parked
        // spec class: automotive crystals over -40..85 °C are rated around ±100 ppm.
        max_drift_ppm: 100,
        has_rtc: true,
    },
};

/// A point-of-sale terminal: an x86 box (Celeron/Atom class) with 4 GB RAM and a
/// consumer SATA SSD without power-loss protection.
const RETAIL_POS: DeviceProfile = DeviceProfile {
    name: "retail-pos",
    memory_bytes: 4 * GIB,   // spec class: POS terminals ship with 4–8 GB
    storage_bytes: 64 * GIB, // spec class: 64–128 GB SSD
    disk: DiskProfile {
        write_latency: Duration::from_micros(5), // measured: x86 write() 1–5 µs, slow cores
        // measured: a SATA cache flush on consumer SSDs takes 0.5–3 ms.
        fsync_latency_median: Duration::from_millis(1),
        fsync_latency_p99: Duration::from_millis(20), // estimate: DRAM-less SSD GC stalls
        write_bytes_per_sec: 200 * MB,                // measured: budget SATA SSDs sustain 150–400 MB/s
        read_latency: Duration::from_micros(100),     // measured: SATA SSD QD1 4 KiB read
    },
    clock: ClockProfile {
        // estimate: shop PCs sync through a domain controller or not at all; seconds off.
        max_offset: Duration::from_secs(5),
        max_drift_ppm: 30, // estimate: PC RTC/TSC, between a crystal and a disciplined clock
        has_rtc: true,     // spec: CMOS RTC with a coin cell
    },
};

/// An industrial edge controller on a factory line: 2 GB RAM, 32 GB pSLC eMMC or
/// industrial SSD, RTC, often on an OT network with no NTP.
const INDUSTRIAL: DeviceProfile = DeviceProfile {
    name: "industrial",
    memory_bytes: 2 * GIB,   // spec class: industrial PCs/controllers, 1–4 GB
    storage_bytes: 32 * GIB, // spec class: 16–64 GB pSLC eMMC or industrial SSD
    disk: DiskProfile {
        write_latency: Duration::from_micros(10),       // estimate: Pi 4-class cores
        fsync_latency_median: Duration::from_millis(1), // estimate: pSLC programs fast
        fsync_latency_p99: Duration::from_millis(15),   // estimate: pSLC, little GC pressure
        write_bytes_per_sec: 50 * MB,                   // estimate: pSLC eMMC class
        read_latency: Duration::from_micros(200),       // measured: eMMC random 4 KiB reads
    },
    clock: ClockProfile {
        // estimate: isolated OT networks often have no time source; RTC error accumulates
        // for months, so half a minute is modest.
        max_offset: Duration::from_secs(30),
        max_drift_ppm: 50, // spec class: ±50 ppm over an industrial temperature range
        has_rtc: true,
    },
};

/// The cloud side: a VM with 16 GB RAM and a local data-centre NVMe drive (power-loss
/// protected, so a flush is cheap), clock disciplined by the provider's time service.
const CLOUD: DeviceProfile = DeviceProfile {
    name: "cloud",
    memory_bytes: 16 * GIB,    // estimate: a mid-size instance
    storage_bytes: 1024 * GIB, // estimate: 1 TiB of instance storage
    disk: DiskProfile {
        write_latency: Duration::from_micros(3), // measured: x86 write() 1–5 µs
        // measured: with power-loss protection the flush returns at once; ext4's journal
        // commit dominates, tens of µs.
        fsync_latency_median: Duration::from_micros(50),
        fsync_latency_p99: Duration::from_millis(1), // estimate: noisy neighbours, journal
        write_bytes_per_sec: GIB,                    // spec class: NVMe, 1–3 GB/s
        read_latency: Duration::from_micros(80),     // spec class: data-centre NVMe QD1 reads
    },
    clock: ClockProfile {
        // measured: chrony against a cloud provider's time service holds well under 1 ms.
        max_offset: Duration::from_millis(1),
        max_drift_ppm: 1, // measured: residual error of a disciplined clock
        has_rtc: true,
    },
};

// ---------------------------------------------------------------------------------------
// Networks
//
// The simulator moves messages, not TCP segments. Production runs over TCP, which never
// duplicates or reorders inside one connection: at the message level, loss, duplication
// and reordering happen when a connection breaks and the peers resend after reconnecting.
// The `duplicate` and `reorder` figures are therefore stand-ins for that, chosen so that
// the exactly-once and order checkers see it happen in every long run (estimate).
// ---------------------------------------------------------------------------------------

/// Two processes on one host.
const LOOPBACK: NetProfile = NetProfile {
    name: "loopback",
    latency: Duration::from_micros(10), // measured: loopback TCP round trips of 10–30 µs
    jitter: Duration::from_micros(5),   // estimate
    loss: 0.0,
    duplicate: 0.0,
    reorder: 0.0,
    bandwidth_bytes_per_sec: 2 * GIB, // measured: loopback TCP moves several GB/s
};

/// Switched gigabit Ethernet on one site.
const LAN: NetProfile = NetProfile {
    name: "lan",
    latency: Duration::from_micros(150), // measured: switched GbE round trips of 0.2–0.5 ms
    jitter: Duration::from_micros(50),   // estimate
    loss: 0.000_01,                      // estimate: drops only under congestion
    duplicate: 0.0,
    reorder: 0.0,
    bandwidth_bytes_per_sec: 110 * MB, // spec: 1 Gbit/s line rate, ~940 Mbit/s of TCP goodput
};

/// 802.11n/ac in a home, shop or kiosk, one or two walls from the access point.
const WIFI: NetProfile = NetProfile {
    name: "wifi",
    latency: Duration::from_millis(3), // measured: Wi-Fi round trips of 2–10 ms
    jitter: Duration::from_millis(10), // measured: retries and power save add tens of ms
    loss: 0.005,                       // measured: residual loss after MAC retries, 0.1–1 %
    duplicate: 0.001,                  // estimate: resends after reconnects (see above)
    reorder: 0.01,                     // estimate: resends after reconnects (see above)
    // measured: single-stream 2.4 GHz 802.11n (Pi Zero W class) gives 20–40 Mbit/s.
    bandwidth_bytes_per_sec: 4 * MB,
};

/// LTE from a moving vehicle or a cellular modem in a cabinet.
const CELLULAR: NetProfile = NetProfile {
    name: "cellular",
    // measured: LTE round trips of 40–100 ms in crowd-sourced reports; a moving vehicle
    // sits at the top of that range.
    latency: Duration::from_millis(50),
    jitter: Duration::from_millis(30), // measured: LTE jitter of tens of ms
    loss: 0.01,                        // estimate: ~1 % with handovers and weak signal
    duplicate: 0.002,                  // estimate: resends after reconnects (see above)
    reorder: 0.02,                     // estimate: resends after reconnects (see above)
    // measured: LTE uplink of 5–10 Mbit/s in typical coverage, ~1 MB/s.
    bandwidth_bytes_per_sec: MB,
};

/// A geostationary satellite terminal (VSAT / BGAN class).
const SATELLITE: NetProfile = NetProfile {
    name: "satellite",
    // spec: 35,786 km up and down gives ~240–280 ms one way; measured GEO round trips are
    // 550–700 ms with ground processing, so half of ~600 ms.
    latency: Duration::from_millis(300),
    jitter: Duration::from_millis(30), // estimate: scheduling on the shared carrier
    loss: 0.005,                       // estimate: ~0.5 % with rain fade
    duplicate: 0.002,                  // estimate: resends after reconnects (see above)
    reorder: 0.01,                     // estimate: resends after reconnects (see above)
    bandwidth_bytes_per_sec: 100 * KB, // spec class: BGAN-class uplinks of 0.5–1 Mbit/s
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_resolves_to_a_profile_of_that_name() {
        for name in DEVICE_NAMES {
            let profile = device(name).expect("listed device has a profile");
            assert_eq!(profile.name, *name);
        }
        for name in NET_NAMES {
            let profile = net(name).expect("listed network has a profile");
            assert_eq!(profile.name, *name);
        }
        assert_eq!(device("pi5"), None);
        assert_eq!(net("carrier-pigeon"), None);
    }

    #[test]
    fn figures_are_consistent() {
        for name in DEVICE_NAMES {
            let d = device(name).expect("listed");
            assert!(d.disk.fsync_latency_median <= d.disk.fsync_latency_p99, "{name}");
            assert!(d.disk.write_bytes_per_sec > 0 && d.memory_bytes > 0, "{name}");
            assert!(d.memory_bytes < d.storage_bytes, "{name}");
        }
        for name in NET_NAMES {
            let n = net(name).expect("listed");
            for p in [n.loss, n.duplicate, n.reorder] {
                assert!((0.0..1.0).contains(&p), "{name}: {p}");
            }
            assert!(n.bandwidth_bytes_per_sec > 0, "{name}");
        }
        assert_eq!(device("vehicle-ecu").map(|d| d.memory_bytes), Some(128 * MIB));
    }
}
