//! The `spillq` inspector binary, end to end.

#![cfg(feature = "cli")]

use assert_cmd::Command;
use serde::Serialize;
use spillq::Queue;
use std::path::Path;

#[derive(Serialize, serde::Deserialize)]
struct Event {
    id: u64,
    name: String,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
}

fn make_queue(dir: &Path) {
    let queue = Queue::<Event>::builder(dir)
        .cache_size(0)
        .segment_size(1024)
        .open()
        .unwrap();
    for id in 0..40 {
        queue
            .put(Event {
                id,
                name: format!("event {id}"),
                blob: vec![1, 2],
            })
            .unwrap();
    }
    queue.delete(5).unwrap();
    queue.close().unwrap();
}

fn spillq() -> Command {
    Command::cargo_bin("spillq").unwrap()
}

fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn stat_reports_items_segments_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    make_queue(dir.path());
    let output = spillq().arg("stat").arg(dir.path()).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("items queued:     35"), "{text}");
    assert!(text.contains("open elsewhere:   no"), "{text}");
    assert!(text.contains("read sequence 5"), "{text}");
    assert!(text.contains("damaged records:  0"), "{text}");
}

#[test]
fn dump_decodes_records_without_knowing_the_type() {
    let dir = tempfile::tempdir().unwrap();
    make_queue(dir.path());
    let output = spillq()
        .args(["dump", "--json", "--limit", "2"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["sequence"], 5);
    assert_eq!(
        lines[0]["item"],
        serde_json::json!([5, "event 5", "0x0102"])
    );
    assert_eq!(lines[1]["sequence"], 6);

    let plain = spillq().arg("dump").arg(dir.path()).output().unwrap();
    assert_eq!(String::from_utf8(plain.stdout).unwrap().lines().count(), 35);
    let all = spillq()
        .args(["dump", "--all"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(all.stdout).unwrap().lines().count(), 40);
}

#[test]
fn verify_passes_a_sound_queue_and_fails_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    make_queue(dir.path());
    spillq().arg("verify").arg(dir.path()).assert().success();

    let before = snapshot(dir.path());
    let segment = before
        .iter()
        .map(|(p, _)| p)
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap()
        .clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[32 + 10] ^= 0xFF;
    std::fs::write(&segment, bytes).unwrap();
    let output = spillq().arg("verify").arg(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("damaged:"), "{text}");
    assert!(text.contains("verify: FAILED"), "{text}");
}

#[test]
fn the_inspector_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    make_queue(dir.path());
    let before = snapshot(dir.path());
    for command in ["stat", "dump", "verify"] {
        spillq().arg(command).arg(dir.path()).assert().success();
    }
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_queue_open_in_a_running_process_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    make_queue(dir.path());
    let queue = Queue::<Event>::open(dir.path()).unwrap();
    let output = spillq().arg("stat").arg(dir.path()).output().unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("is open in a running process"), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("open elsewhere:   yes"), "{stdout}");
    drop(queue);
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = spillq()
        .arg("stat")
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("no such queue directory"), "{stderr}");
}
