//! `outpost-sim`: the deterministic simulator of Outpost.
//!
//! Architecture Invariant: a run is a pure function of (scenario, seed, build). One
//! thread, one event queue ordered by (virtual time, insertion order), one PRNG stream per
//! consumer derived from the seed; no wall clock, no `HashMap` iteration, no threads
//! inside a run. The runner may run several seeds on several threads.

pub mod checker;
pub mod clock_check;
pub mod cluster;
pub mod disk;
pub mod durability;
pub mod heap;
pub mod impostor;
pub mod keyed_check;
pub mod keyed_oracle;
pub mod linearizable;
pub mod net;
pub mod placement;
pub mod profiles;
pub mod raft_check;
pub mod read_check;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod site_checks;
pub mod strong_read_check;
pub mod swarm;
pub mod world;
