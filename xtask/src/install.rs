//! Installing what a fresh machine lacks: rustup targets and components, Debian packages.

use std::process::Command;

use crate::run;

fn rustup_has(args: &[&str], wanted: &str) -> bool {
    Command::new("rustup")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim().starts_with(wanted)))
        .unwrap_or(false)
}

/// Adds a rustup target to the active toolchain if it is missing.
pub fn rust_target(target: &str) -> Result<(), String> {
    if rustup_has(&["target", "list", "--installed"], target) {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", target]))
}

/// Adds rustup components to the active toolchain if they are missing.
pub fn rust_components(components: &[&str]) -> Result<(), String> {
    for component in components {
        if !rustup_has(&["component", "list", "--installed"], component) {
            run(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

/// Installs the nightly toolchain with the given components if missing.
pub fn nightly_with(components: &[&str]) -> Result<(), String> {
    if !rustup_has(&["toolchain", "list"], "nightly") {
        run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    for component in components {
        if !rustup_has(&["+nightly", "component", "list", "--installed"], component) {
            run(Command::new("rustup").args(["component", "add", component, "--toolchain", "nightly"]))?;
        }
    }
    Ok(())
}

/// Installs a Debian package if `program` is not on the PATH.
pub fn debian_package(program: &str, package: &str) -> Result<(), String> {
    let found = Command::new("sh").args(["-c", &format!("command -v {program}")]).output();
    if found.map(|o| o.status.success()).unwrap_or(false) {
        return Ok(());
    }
    eprintln!("{program} is missing: installing the Debian package {package}");
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut command = Command::new(if sudo.is_empty() { "apt-get" } else { "sudo" });
        if !sudo.is_empty() {
            command.arg("apt-get");
        }
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    run(&mut apt(&["update"]))?;
    run(&mut apt(&["install", "-y", "--no-install-recommends", package]))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
