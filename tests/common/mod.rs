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

/// Runs a command; whether it succeeded (its error output is dropped).
pub fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the tests run in CI (`CI` set, as `.ci/run` does): there a test that cannot get
/// what it needs fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Skips a test that cannot get what it needs, saying why; in CI, fails it instead.
pub fn skip(why: &str) {
    assert!(!in_ci(), "cannot run in CI: {why}");
    println!("skipped (outside CI only): {why}");
}

/// A file system mounted at a new directory for one test, unmounted on drop. `None` (with the
/// reason printed) where mounting is not allowed, as for a user who is not root; in CI that
/// fails the test instead (see [`skip`]).
pub struct Mount {
    /// The mount point.
    pub dir: tempfile::TempDir,
    /// The ext4 image behind a loop mount, if any.
    image: Option<tempfile::NamedTempFile>,
}

impl Mount {
    /// A tmpfs of `bytes`.
    pub fn tmpfs(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let size = format!("size={bytes}");
        let path = dir.path().to_str().unwrap();
        if !run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", path]) {
            skip("cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Self { dir, image: None })
    }

    /// A fresh ext4 file system of `bytes` in an image file, mounted through a loop device.
    pub fn ext4(bytes: u64) -> Option<Self> {
        let image = tempfile::NamedTempFile::new().unwrap();
        let image_path = image.path().to_str().unwrap().to_owned();
        assert!(run("truncate", &["-s", &bytes.to_string(), &image_path]));
        if !run("mkfs.ext4", &["-q", "-F", &image_path]) {
            skip("mkfs.ext4 failed or is missing (Debian package e2fsprogs)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mount = Self {
            dir,
            image: Some(image),
        };
        if !mount.mount_image("rw") {
            skip("cannot mount an ext4 image through a loop device here (needs root)");
            return None;
        }
        Some(mount)
    }

    fn mount_image(&self, options: &str) -> bool {
        let image = self.image.as_ref().unwrap().path().to_str().unwrap();
        let options = format!("loop,{options}");
        run(
            "mount",
            &["-o", &options, image, self.dir.path().to_str().unwrap()],
        )
    }

    /// Unmounts and mounts the image again (after a shutdown, what reached the disk is what
    /// the file system shows), with mount `options` such as `rw` or `ro`.
    pub fn remount(&self, options: &str) {
        assert!(
            run("umount", &[self.dir.path().to_str().unwrap()]),
            "umount failed"
        );
        assert!(self.mount_image(options), "mount again failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = run("umount", &[self.dir.path().to_str().unwrap()]);
    }
}
