//! Kills a child process with SIGKILL while it puts, gets and syncs, then reopens the queue and
//! shows what came back, and why.
//!
//! `cargo run --example crash_recovery`

use spillq::Queue;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn open(dir: &Path) -> Result<Queue<u64>, spillq::Error> {
    Queue::builder(dir)
        .cache_size(100)
        .segment_size(1 << 20)
        .open()
}

/// The child: puts 1, 2, 3, ..., takes one item (the oldest) for every three put, syncs every
/// 1,000 puts and says what the sync covered.
fn child(dir: &Path) -> anyhow::Result<()> {
    let queue = open(dir)?;
    let mut last_got = 0;
    for id in 1.. {
        queue.put(id)?;
        if id % 3 == 0 {
            last_got = queue.get()?;
        }
        if id % 1000 == 0 {
            queue.sync()?;
            println!("synced {id} {last_got}");
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    if let (Some(flag), Some(dir)) = (args.next(), args.next())
        && flag == "--child"
    {
        return child(Path::new(&dir));
    }

    let dir = tempfile::tempdir()?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut synced = (0, 0);
    let lines = BufReader::new(child.stdout.take().expect("piped"));
    for line in lines.lines() {
        let line = line?;
        let mut words = line.split_whitespace().skip(1);
        let put: u64 = words.next().unwrap_or_default().parse()?;
        let got: u64 = words.next().unwrap_or_default().parse()?;
        synced = (put, got);
        if put >= 20_000 {
            child.kill()?; // SIGKILL: no destructor, no close, no final sync
            break;
        }
    }
    child.wait()?;
    let (put, got) = synced;
    println!(
        "killed the child after a sync that covered items up to {put}, with items up to {got} taken"
    );

    let queue = open(dir.path())?;
    let stats = queue.stats();
    let items: Vec<u64> = queue.try_iter().collect::<Result<_, _>>()?;
    let first = items.first().copied().unwrap_or_default();
    let last = items.last().copied().unwrap_or_default();
    println!(
        "reopened: {} items, {first}..={last}; checkpoint {:?}, {} records skipped as damaged",
        items.len(),
        stats.checkpoint,
        stats.skipped
    );
    anyhow::ensure!(items.windows(2).all(|w| w[0] < w[1]), "out of order");
    anyhow::ensure!(first > got, "an item taken before the sync came back");
    for id in got + 1..=put {
        anyhow::ensure!(items.binary_search(&id).is_ok(), "lost {id}");
    }
    let after_sync = items.iter().filter(|&&id| id > put).count();
    println!("why:");
    println!(
        "- items {}..={put}: put before the last sync and not taken; a sync fsyncs them and",
        got + 1
    );
    println!("  the read cursor, so they survive even a power cut;");
    println!("- items up to {got}: taken before that sync, whose checkpoint covers their removal;");
    println!(
        "- {after_sync} item(s) put after the sync: back only if they had reached the segment files"
    );
    println!("  (a kill keeps those; items still in the memory ring were lost with the process).");
    Ok(())
}
