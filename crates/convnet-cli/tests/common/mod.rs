//! Helpers shared by the end-to-end tests: run the real binary, check how it ended.
// Each test file uses its own subset.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `convnet` binary under test.
pub fn convnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_convnet"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the convnet binary runs")
}

/// Its stdout, after checking that it succeeded (else both streams in the panic).
pub fn ok(out: Output) -> String {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "failed ({:?}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout.to_string()
}

/// Its stderr, after checking that it failed.
pub fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "succeeded but should not: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A fresh, empty folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
