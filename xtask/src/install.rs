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

/// Installs a toolchain (`1.84`, say) with the minimal profile if it is missing.
pub fn toolchain(name: &str) -> Result<(), String> {
    if rustup_has(&["toolchain", "list"], name) {
        return Ok(());
    }
    run(Command::new("rustup").args(["toolchain", "install", name, "--profile", "minimal"]))
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
///
/// Says what it will install before it does; never removes a package (`--no-remove`); shows
/// the package manager's output only when it fails. Off Debian (no `apt-get`), says exactly
/// what to install instead.
pub fn debian_package(program: &str, package: &str) -> Result<(), String> {
    if on_path(program) {
        return Ok(());
    }
    if !on_path("apt-get") {
        return Err(format!(
            "{program} is missing and this is not a Debian-like system (no apt-get): install {program} \
             (Debian/Ubuntu package `{package}`; Fedora `qemu-system-riscv` for QEMU; Arch `qemu-system-riscv`), \
             then run the command again"
        ));
    }
    let sudo = !is_root();
    eprintln!(
        "{program} is missing: installing the Debian package {package} \
         (`{}apt-get update`, then `apt-get install --no-remove --no-install-recommends -y {package}`)",
        if sudo { "sudo " } else { "" }
    );
    let apt = |args: &[&str]| {
        let mut command = Command::new(if sudo { "sudo" } else { "apt-get" });
        if sudo {
            command.arg("apt-get");
        }
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    quietly(&mut apt(&["update"]))?;
    quietly(&mut apt(&["install", "--no-remove", "--no-install-recommends", "-y", package]))?;
    eprintln!("installed {package}");
    Ok(())
}

/// Whether `program` is on the PATH.
fn on_path(program: &str) -> bool {
    let found = Command::new("sh").args(["-c", &format!("command -v {program}")]).output();
    found.map(|o| o.status.success()).unwrap_or(false)
}

/// Runs a command with its output captured; prints the output only if it fails.
fn quietly(command: &mut Command) -> Result<(), String> {
    let line = crate::describe(command);
    let output = command.output().map_err(|e| format!("cannot start {line}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    Err(format!("{line} failed ({})", output.status))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
