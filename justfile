# Outpost tasks. `just --list` shows them all.

# Run one scenario with a seed and print its report (add json=true for JSON).
sim scenario="vehicle-offline" seed="1" json="false":
    cargo run --release -p outpost-sim -- run {{scenario}} --seed {{seed}} {{ if json == "true" { "--json" } else { "" } }}

# Sweep seeds: swarm worlds by default; name a scenario to sweep its seeds instead.
sweep seeds="2000" scenario="":
    cargo run --release -p outpost-sim -- sweep {{scenario}} --seeds {{seeds}} {{ if scenario == "" { "--swarm" } else { "" } }}

# Every scenario in scenarios/ for seeds 1..=seeds.
scenarios seeds="20":
    for s in scenarios/*.toml; do cargo run --release -q -p outpost-sim -- sweep "$s" --seeds {{seeds}} || exit 1; done

# The test suite (what CI runs).
test:
    cargo test --workspace

# Formatting and lints, as CI would have them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
