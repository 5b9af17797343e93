//! What the subprocess report tests share: running this test binary again as a child that
//! commits one bug, and checking how the child ended.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs this test binary's `child` test with `variable=kind` (the child commits that bug and
/// prints "went on after the ..." if it survives); returns its stderr, after checking that it
/// ended within the time limit by aborting: not by exiting normally, not by unwinding, not by
/// hanging on the heap's lock.
pub fn run_child(variable: &str, kind: &str) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(variable, kind)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the program hung after a {kind} (killed after 60 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stdout.contains("went on after the"), "the {kind} was not detected:\n{stdout}");
    assert!(!status.success(), "the program exited normally after a {kind}:\n{stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        // SIGABRT: the panic could not unwind out of the allocator, so the runtime aborted.
        assert_eq!(status.signal(), Some(6), "ended by {status} instead of an abort:\n{stderr}");
    }
    // The hook's panic cannot unwind out of the allocator; a report made while the runtime
    // prints an earlier one (a damaged block met again by the panic machinery's allocations)
    // aborts the same way, as a panic during a panic.
    assert!(
        stderr.contains("panic in a function that cannot unwind")
            || stderr.contains("panicked while processing panic"),
        "{stderr}"
    );
    stderr
}
