//! Copies the locked versions of the packages from `Cargo.lock` into the
//! program, so each trace's header names the exact crate version recorded
//! without a hand-kept list that could drift from the lock file.

use std::fmt::Write as _;

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").expect("Cargo.lock is committed next to Cargo.toml");
    let mut table = String::from(
        "/// (name, version) of every locked package.\npub const LOCKED: &[(&str, &str)] = &[\n",
    );
    let mut name: Option<&str> = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"'));
        } else if let (Some(n), Some(v)) = (name, line.strip_prefix("version = ")) {
            writeln!(table, "    ({n:?}, {:?}),", v.trim_matches('"')).unwrap();
            name = None;
        }
    }
    table.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("locked.rs");
    std::fs::write(out, table).unwrap();

    // The compiler and target shape the traces too (std's collections grow by
    // their own rules), so the headers name them.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "rustc (unknown version)".to_string(), |v| v.trim().to_string());
    println!("cargo:rustc-env=RECORDER_RUSTC={version}");
    println!("cargo:rustc-env=RECORDER_TARGET={}", std::env::var("TARGET").unwrap());
}
