//! Helpers shared by the integration tests.

#![allow(dead_code)]

use spillq::{Durability, Queue};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The cache sizes every behaviour is checked at: all through disk, a few items, all in memory.
pub const CACHE_SIZES: [usize; 3] = [0, 3, 1000];

/// A queue of `u64` with small segments, so a few hundred items roll several of them.
pub fn open(dir: &Path, cache_size: usize) -> Queue<u64> {
    Queue::builder(dir)
        .cache_size(cache_size)
        .segment_size(1024)
        .open()
        .unwrap()
}

pub fn open_with(dir: &Path, cache_size: usize, durability: Durability) -> Queue<u64> {
    Queue::builder(dir)
        .cache_size(cache_size)
        .segment_size(4096)
        .durability(durability)
        .open()
        .unwrap()
}

pub fn drain(queue: &Queue<u64>) -> Vec<u64> {
    queue.try_iter().map(Result::unwrap).collect()
}

/// A small deterministic generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Runs the ignored test `name` of this same test binary as a child process, with `env`,
/// stdout piped.
pub fn spawn_child(name: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    command
        .args(["--ignored", "--exact", name, "--nocapture"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// Reads the child's lines, handing each to `each`; when `each` returns false the child is
/// killed (SIGKILL), and the lines it wrote before it died are still handed over, so the
/// caller knows everything the child reported. Lines are passed from the first upper-case
/// word on, so the test harness's own text on the same line does not matter.
pub fn read_then_kill(mut child: Child, mut each: impl FnMut(&str) -> bool) {
    let stdout = child.stdout.take().unwrap();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let start = line
            .find(|c: char| c.is_ascii_uppercase())
            .unwrap_or(line.len());
        if !each(&line[start..]) && !killed {
            child.kill().unwrap();
            killed = true;
        }
    }
    if !killed {
        child.kill().unwrap();
    }
    child.wait().unwrap();
}
