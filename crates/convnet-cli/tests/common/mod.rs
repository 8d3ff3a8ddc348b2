//! Helpers shared by the end-to-end tests: run the real binary, check how it ended, make the
//! files it reads and read back the checkpoints it writes.
// Each test file uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[path = "../../../convnet/tests/common/test_dir.rs"]
mod test_dir;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
pub use test_dir::TestDir;

/// The `convnet` binary under test.
pub fn convnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_convnet"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the convnet binary runs")
}

/// Run `cmd`, failing the test if it is still running after `limit`.
pub fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the convnet binary starts");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
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

/// Its stderr, after checking that it failed with exit code 1 (an error, not a panic).
pub fn error(out: Output) -> String {
    let code = out.status.code();
    let stderr = fails(out);
    assert_eq!(code, Some(1), "{stderr}");
    stderr
}

/// The error line, after checking that no part of it (between ": ") is said twice.
pub fn said_once(err: &str) -> &str {
    let line = err.lines().next().unwrap_or("");
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(!parts[..i].contains(part), "'{part}' said twice: {line}");
    }
    line
}

/// Check that `err` holds every one of `expected` (`what` names the case, for the panic).
pub fn assert_says(what: &str, err: &str, expected: &[&str]) {
    for text in expected {
        assert!(err.contains(text), "{what}: no '{text}' in: {err}");
    }
}

/// A fresh, empty folder for one test, removed when it passes.
pub fn temp_dir(name: &str) -> TestDir {
    TestDir::new(name)
}

/// A file or folder of the repository (`models/...`, `data/...`).
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// A grayscale PNG of `w` x `h` pixels drawn by `pixel(x, y)`, its folder made if missing.
pub fn save_gray(path: &Path, [w, h]: [u32; 2], pixel: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([pixel(x, y)]))
        .save(path)
        .unwrap();
}

/// An RGB PNG of `w` x `h` pixels drawn by `pixel(x, y)`, its folder made if missing.
pub fn save_rgb(path: &Path, [w, h]: [u32; 2], pixel: impl Fn(u32, u32) -> [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb(pixel(x, y)))
        .save(path)
        .unwrap();
}

/// The `checkpoint.json` of checkpoint folder `ck`.
pub fn meta(ck: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(ck.join("checkpoint.json")).unwrap()).unwrap()
}

/// Change the `checkpoint.json` of checkpoint folder `ck`.
pub fn edit_meta(ck: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v = meta(ck);
    edit(&mut v);
    std::fs::write(ck.join("checkpoint.json"), v.to_string()).unwrap();
}

/// Send the signal `name` (`INT`, `TERM`, `KILL`, ...) to `child`.
pub fn signal(child: &Child, name: &str) {
    Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
}

/// Wait (at most `limit`) until `done`, failing if `child` ends first (with its stderr, when
/// it was piped).
pub fn wait_for(child: &mut Child, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                use std::io::Read;
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("training ended early ({status}): {err}");
        }
        assert!(start.elapsed() < limit, "still waiting after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
