//! Writes the seed corpora: `fuzz/corpus/TARGET/seed-NAME` for every seed of
//! `outpost_fuzz::seeds`. Run from the repository root.

fn main() {
    for (target, name, bytes) in outpost_fuzz::seeds::seeds() {
        let dir = std::path::Path::new("fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed written");
    }
}
