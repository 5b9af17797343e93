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
    let install = ["install", "--no-remove", "--no-install-recommends", "-y"];
    let first = quietly(&mut apt(&[&install[..], &[package]].concat()));
    if first.is_ok() {
        eprintln!("installed {package}");
        return Ok(());
    }
    // A machine whose image took a package from the release's backports (qemu-utils 10 on
    // Debian 12, say) cannot install the release's own older QEMU beside it without removing
    // that package: the newer one `Breaks` the older `qemu-system-common`. The matching version
    // is in backports; enable it (a list of its own, nothing else changed) and take the package
    // from there, still never removing anything.
    let Some(codename) = debian_codename() else { return first };
    let backports = format!("{codename}-backports");
    eprintln!(
        "{package} from {codename} conflicts with a package already installed from {backports}:          enabling {backports} in /etc/apt/sources.list.d/kheap-{backports}.sources and installing from there"
    );
    let list = format!(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {backports}\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
    let path = format!("/etc/apt/sources.list.d/kheap-{backports}.sources");
    let mut write = Command::new(if sudo { "sudo" } else { "tee" });
    if sudo {
        write.arg("tee");
    }
    write.arg(&path).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
    let mut child = write.spawn().map_err(|e| format!("cannot write {path}: {e}"))?;
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().ok_or("tee has no stdin")?;
        stdin.write_all(list.as_bytes()).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    drop(child.stdin.take());
    if !child.wait().map_err(|e| format!("cannot write {path}: {e}"))?.success() {
        return Err(format!("cannot write {path}"));
    }
    quietly(&mut apt(&["update"]))?;
    quietly(&mut apt(&[&install[..], &["-t", &backports, package]].concat()))?;
    eprintln!("installed {package} from {backports}");
    Ok(())
}

/// The Debian release's code name (`bookworm`) from /etc/os-release, if this is Debian itself
/// (Ubuntu and others name their backports differently).
fn debian_codename() -> Option<String> {
    let release = std::fs::read_to_string("/etc/os-release").ok()?;
    let field = |key: &str| {
        release.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim_matches('"').to_string())
    };
    (field("ID=")? == "debian").then_some(())?;
    field("VERSION_CODENAME=").filter(|c| !c.is_empty())
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

/// Installs a cargo subcommand from crates.io (`cargo install --locked`) if `program` is not
/// on the PATH.
pub fn cargo_tool(program: &str, package: &str) -> Result<(), String> {
    if on_path(program) {
        return Ok(());
    }
    eprintln!("{program} is missing: installing it with `cargo install --locked {package}`");
    run(Command::new("cargo").args(["install", "--locked", package]))
}
