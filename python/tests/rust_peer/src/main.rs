//! The Rust side of the interchange tests (`tests/test_interchange.py`): a program that opens
//! a queue directory as `spillq::Queue<Job>`, with the default codec, as a Rust application
//! would.
//!
//! - `produce DIR N`: puts `job(0)` .. `job(N-1)` and closes the queue.
//! - `check DIR N`: gets N items, exits with status 1 unless they are `job(0)` .. `job(N-1)`.
//! - `echo FROM TO`: moves every item of queue FROM, decoded as `Job`, to queue TO.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// A typed item with every kind of field the Python side maps: integers (signed, unsigned,
/// large), a float, a bool, a string, bytes, an option, a list, a map and a tuple.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    delta: i32,
    name: String,
    score: f64,
    urgent: bool,
    payload: ByteBuf,
    parent: Option<u64>,
    tags: Vec<String>,
    limits: BTreeMap<String, i64>,
    origin: (u16, String),
}

/// The `n`th job; `tests/test_interchange.py` builds the same list in Python.
fn job(n: u64) -> Job {
    Job {
        id: n,
        delta: -(n as i32) * 3,
        name: format!("job-{n}"),
        score: n as f64 / 4.0,
        urgent: n.is_multiple_of(2),
        payload: ByteBuf::from(vec![n as u8; (n % 5) as usize]),
        parent: n.checked_sub(1).filter(|_| !n.is_multiple_of(3)),
        tags: (0..n % 3).map(|tag| format!("t{tag}")).collect(),
        limits: BTreeMap::from([
            ("cpu".to_string(), n as i64 * 1000),
            ("max".into(), i64::MAX),
        ]),
        origin: (8000 + n as u16, "host".into()),
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    match args {
        [command, dir, count] if command == "produce" => {
            let queue = spillq::Queue::<Job>::open(dir)?;
            queue.put_all((0..count.parse()?).map(job))?;
            queue.close()?;
        }
        [command, dir, count] if command == "check" => {
            let queue = spillq::Queue::<Job>::open(dir)?;
            for n in 0..count.parse()? {
                let got = queue.try_get()?.ok_or(format!("job {n} is missing"))?;
                if got != job(n) {
                    return Err(format!("job {n}: got {got:?}, expected {:?}", job(n)).into());
                }
            }
            if !queue.is_empty() {
                return Err(format!("{} items more than expected", queue.len()).into());
            }
            queue.close()?;
        }
        [command, from, to] if command == "echo" => {
            let from = spillq::Queue::<Job>::open(from)?;
            let to = spillq::Queue::<Job>::open(to)?;
            while let Some(job) = from.try_get()? {
                to.put(job)?;
            }
            from.close()?;
            to.close()?;
        }
        _ => return Err("usage: produce DIR N | check DIR N | echo FROM TO".into()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rust_peer: {error}");
            ExitCode::FAILURE
        }
    }
}
