//! `spillq`: inspect a queue directory without changing it.
//!
//! ```text
//! spillq stat DIR                     items, segments, bytes, checkpoint, damage
//! spillq dump DIR [--json] [--limit N] [--all]
//! spillq verify DIR                   full scan; exit status 1 if anything is damaged
//! ```
//!
//! Exit status: 0 fine, 1 damage found (`verify`), 2 the directory could not be read.

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use spillq::inspect::{Event, Inspection, Summary};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "spillq",
    version,
    about = "Inspect a spillq queue directory (read-only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Items, segments, bytes on disk, the checkpoint, and damaged records.
    Stat {
        /// The queue directory.
        dir: PathBuf,
    },
    /// The queued records, decoded from MessagePack (no need to know the item type).
    Dump {
        /// The queue directory.
        dir: PathBuf,
        /// One JSON object per line: {"sequence": n, "item": ...}.
        #[arg(long)]
        json: bool,
        /// Stop after this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// Also show records already removed but still on disk.
        #[arg(long)]
        all: bool,
    },
    /// Reads every record and checks its checksum; exit status 1 if anything is damaged.
    Verify {
        /// The queue directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("spillq: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn open(dir: &PathBuf) -> anyhow::Result<Inspection> {
    let inspection =
        Inspection::open(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    if inspection.locked() {
        eprintln!(
            "note: {} is open in a running process; this shows what is on disk now, which may \
             be changing. Close the queue for an exact picture.",
            dir.display()
        );
    }
    Ok(inspection)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Stat { dir } => {
            let inspection = open(&dir)?;
            let summary = inspection.scan(|_| ControlFlow::Continue(()))?;
            print_stat(&inspection, &summary);
            Ok(ExitCode::SUCCESS)
        }
        Command::Dump {
            dir,
            json,
            limit,
            all,
        } => {
            let inspection = open(&dir)?;
            dump(&inspection, json, limit, all)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { dir } => verify(&open(&dir)?),
    }
}

fn print_stat(inspection: &Inspection, summary: &Summary) {
    println!("directory:        {}", inspection.dir().display());
    println!(
        "open elsewhere:   {}",
        if inspection.locked() {
            "yes (locked by a running process)"
        } else {
            "no"
        }
    );
    println!("items queued:     {}", summary.queued);
    println!("records on disk:  {}", summary.records);
    println!("segments:         {}", inspection.segments().len());
    println!("bytes on disk:    {}", inspection.disk_bytes());
    println!("next sequence:    {}", summary.next_sequence);
    match inspection.checkpoint() {
        Some(checkpoint) => {
            println!(
                "checkpoint:       read sequence {}, writer at segment {} offset {} (sequence {}), {} unacknowledged",
                checkpoint.read_sequence,
                checkpoint.head_segment,
                checkpoint.head_offset,
                checkpoint.head_sequence,
                checkpoint.unacked.len()
            );
        }
        None => println!(
            "checkpoint:       {:?} (opening the queue scans every segment)",
            inspection.checkpoint_state()
        ),
    }
    println!(
        "damaged records:  {} in {} place(s)",
        summary.skipped, summary.damaged_regions
    );
}

fn dump(inspection: &Inspection, json: bool, limit: Option<u64>, all: bool) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut shown = 0u64;
    let mut failure: Option<std::io::Error> = None;
    inspection.scan(|event| {
        let Event::Record {
            sequence,
            queued,
            payload,
        } = event
        else {
            return ControlFlow::Continue(());
        };
        if !queued && !all {
            return ControlFlow::Continue(());
        }
        if limit.is_some_and(|limit| shown >= limit) {
            return ControlFlow::Break(());
        }
        let item = match rmpv::decode::read_value(&mut &payload[..]) {
            Ok(value) => to_json(&value),
            Err(error) => serde_json::json!({ "undecodable": error.to_string() }),
        };
        let line = if json {
            serde_json::json!({ "sequence": sequence, "queued": queued, "item": item }).to_string()
        } else {
            format!("{sequence}\t{item}")
        };
        if let Err(error) = writeln!(out, "{line}") {
            failure = Some(error);
            return ControlFlow::Break(());
        }
        shown += 1;
        ControlFlow::Continue(())
    })?;
    match failure {
        // A closed pipe (`| head`) is not an error.
        Some(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(error) => Err(error.into()),
        None => Ok(out.flush().or_else(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e)
            }
        })?),
    }
}

/// MessagePack to JSON: binary becomes a hex string, extension types an object, map keys
/// their JSON text when they are not strings.
fn to_json(value: &rmpv::Value) -> serde_json::Value {
    use rmpv::Value as M;
    use serde_json::Value as J;
    match value {
        M::Nil => J::Null,
        M::Boolean(b) => J::Bool(*b),
        M::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => J::from(u),
            (None, Some(s)) => J::from(s),
            _ => J::Null,
        },
        M::F32(f) => J::from(f64::from(*f)),
        M::F64(f) => J::from(*f),
        M::String(s) => match s.as_str() {
            Some(s) => J::String(s.to_string()),
            None => J::String(hex(s.as_bytes())),
        },
        M::Binary(bytes) => J::String(hex(bytes)),
        M::Array(items) => J::Array(items.iter().map(to_json).collect()),
        M::Map(pairs) => J::Object(
            pairs
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        M::String(s) => {
                            s.as_str().map_or_else(|| hex(s.as_bytes()), str::to_string)
                        }
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        M::Ext(kind, bytes) => serde_json::json!({ "ext": kind, "data": hex(bytes) }),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 + bytes.len() * 2);
    text.push_str("0x");
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

fn verify(inspection: &Inspection) -> anyhow::Result<ExitCode> {
    // Drawn only on a terminal (indicatif hides it otherwise).
    let progress = ProgressBar::new(inspection.disk_bytes());
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut damage = Vec::new();
    let summary = inspection.scan(|event| {
        match event {
            Event::SegmentDone { bytes } => progress.inc(bytes),
            Event::Damage {
                path,
                offset,
                records,
            } => damage.push(format!(
                "damaged: {} at byte {offset} ({records} record(s) lost)",
                path.display()
            )),
            _ => {}
        }
        ControlFlow::Continue(())
    })?;
    progress.finish_and_clear();
    for line in &damage {
        println!("{line}");
    }
    println!(
        "{} records checked, {} queued, {} damaged in {} place(s)",
        summary.records, summary.queued, summary.skipped, summary.damaged_regions
    );
    Ok(if summary.skipped > 0 || summary.damaged_regions > 0 {
        println!("verify: FAILED");
        ExitCode::from(1)
    } else {
        println!("verify: ok");
        ExitCode::SUCCESS
    })
}
