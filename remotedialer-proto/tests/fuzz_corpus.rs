//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! fuzz target bodies in a normal `cargo test`, and holds the seeding step.
//!
//! The seeds come from the Go vectors. To regenerate them after changing the
//! vectors or the session body's input format:
//!
//! ```text
//! cargo test -p remotedialer-proto --test fuzz_corpus -- --ignored write_seed_corpus
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../../fuzz/src/bodies.rs"]
mod bodies;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde_json::Value;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus")).join(target)
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/"
    ))
}

fn corpus_files(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect();
    files.sort();
    files
}

fn replay(target: &str, body: fn(&[u8])) -> usize {
    let files = corpus_files(target);
    for (path, data) in &files {
        let outcome = std::panic::catch_unwind(|| body(data));
        assert!(
            outcome.is_ok(),
            "{target}: {} makes the target fail",
            path.display()
        );
    }
    files.len()
}

#[test]
fn frame_decode_corpus_passes() {
    let n = replay("frame_decode", bodies::frame_decode);
    assert!(n >= 50, "only {n} frame_decode inputs");
}

#[test]
fn session_corpus_passes() {
    let n = replay("session", bodies::session);
    assert!(n >= 20, "only {n} session inputs");
}

#[test]
fn corpus_holds_every_seed_and_stays_small() {
    let mut total_files = 0;
    let mut total_bytes = 0;
    for (target, seeds) in seeds() {
        let present: HashSet<Vec<u8>> = corpus_files(target)
            .into_iter()
            .map(|(_, data)| data)
            .collect();
        for (name, data) in &seeds {
            assert!(
                present.contains(data),
                "{target}: seed {name} missing; rerun the seeding step"
            );
        }
        total_files += present.len();
        total_bytes += present.iter().map(Vec::len).sum::<usize>();
    }
    assert!(total_files < 200, "{total_files} corpus files");
    assert!(total_bytes < 1 << 20, "{total_bytes} corpus bytes");
}

/// Writes the seeds into `fuzz/corpus/<target>/` (existing files stay).
#[test]
#[ignore = "seeding step: run explicitly to regenerate fuzz/corpus"]
fn write_seed_corpus() {
    for (target, seeds) in seeds() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds {
            let path = dir.join(&name);
            if std::fs::read(&path).is_ok_and(|old| old == data) {
                continue;
            }
            // Via a rename, so a concurrent replay never sees half a file.
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, data).unwrap();
            std::fs::rename(tmp, path).unwrap();
        }
    }
}

// ---------------------------------------------------------------- seeds

fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(vectors_dir().join(name)).unwrap()).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// Every frame of the vectors: encode[] frames (the 32 KiB ones rebuilt),
/// decode[] inputs, and the live session's complete messages.
fn vector_frames() -> Vec<(String, Vec<u8>)> {
    let frames = load("go-frames.json");
    let mut out = Vec::new();
    for e in frames["encode"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let bytes = match e["frame"]["hex"].as_str() {
            Some(h) => unhex(h),
            None if name == "data_32KiB" => {
                let mut b = unhex(e["header_hex"].as_str().unwrap());
                b.extend((0..32 << 10).map(|i: usize| (i % 251) as u8));
                b
            }
            None if e["frame"]["len"] == 0 => Vec::new(),
            None => continue,
        };
        out.push((format!("encode-{name}"), bytes));
    }
    for e in frames["decode"].as_array().unwrap() {
        let bytes = e["input"]["hex"].as_str().map(unhex).unwrap_or_default();
        out.push((format!("decode-{}", e["name"].as_str().unwrap()), bytes));
    }
    for s in frames["scenarios"].as_array().unwrap() {
        for (i, step) in s["steps"].as_array().unwrap().iter().enumerate() {
            if let Some(h) = step["input_hex"].as_str() {
                out.push((
                    format!("scenario-{}-{i}", s["name"].as_str().unwrap()),
                    unhex(h),
                ));
            }
        }
    }
    let log = std::fs::read_to_string(vectors_dir().join("go-session.jsonl")).unwrap();
    for line in log.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        if e["type"] == "binary" && e["truncated"].as_bool() != Some(true) {
            out.push((
                format!("log-seq-{}", e["seq"]),
                unhex(e["hex"].as_str().unwrap()),
            ));
        }
    }
    out
}

/// Builds inputs for [`bodies::session`]: op bytes are `(code << 1) | side`.
struct Ops(Vec<u8>);

const SERVER: u8 = 0;
const CLIENT: u8 = 1;

impl Ops {
    fn new(flags: u8) -> Self {
        Ops(vec![flags])
    }
    fn op(mut self, code: u8, side: u8, args: &[u8]) -> Self {
        self.0.push((code << 1) | side);
        self.0.extend_from_slice(args);
        self
    }
    fn open(self) -> Self {
        self.op(0, SERVER, &[0, 3, 4])
    }
    fn write(self, side: u8, conn: u8, len: u16) -> Self {
        let [lo, hi] = len.to_le_bytes();
        self.op(1, side, &[conn, lo, hi])
    }
    fn read(self, side: u8, conn: u8, max: u16) -> Self {
        let [lo, hi] = max.to_le_bytes();
        self.op(2, side, &[conn, lo, hi])
    }
    fn read_into(self, side: u8, conn: u8, len: u16) -> Self {
        let [lo, hi] = len.to_le_bytes();
        self.op(3, side, &[conn, lo, hi])
    }
    fn close(self, side: u8, conn: u8) -> Self {
        self.op(4, side, &[conn])
    }
    fn reset(self, side: u8, conn: u8) -> Self {
        self.op(5, side, &[conn, 1])
    }
    fn advance_ms4(self, units: u16) -> Self {
        let [lo, hi] = units.to_le_bytes();
        self.op(6, SERVER, &[lo, hi])
    }
    fn next_deadline(self) -> Self {
        self.op(7, SERVER, &[])
    }
    fn pump(self) -> Self {
        self.op(11, SERVER, &[])
    }
    fn raw(self, side: u8, bytes: &[u8]) -> Self {
        let len = u8::try_from(bytes.len()).unwrap();
        let mut args = vec![len];
        args.extend_from_slice(bytes);
        self.op(12, side, &args)
    }
    fn announce(self, key: u8, session_key: i64, added: bool) -> Self {
        let mut args = vec![key];
        args.extend_from_slice(&session_key.to_le_bytes());
        args.push(u8::from(!added));
        self.op(14, CLIENT, &args)
    }
    fn done(self) -> Vec<u8> {
        self.0
    }
}

fn session_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let echo = Ops::new(0)
        .open()
        .pump()
        .write(SERVER, 0, 3000)
        .pump()
        .read(CLIENT, 0, 1000)
        .read_into(CLIENT, 0, 4000)
        .write(CLIENT, 0, 2500)
        .pump()
        .read(SERVER, 0, 4999)
        .close(SERVER, 0)
        .pump()
        .read(CLIENT, 0, 100)
        .close(CLIENT, 0)
        .pump();
    out.push(("ops-echo-and-close".into(), echo.done()));

    // A reader that does not read: Pause, overshoot past it, overflow.
    let mut slow = Ops::new(0).open().open().pump();
    for _ in 0..8 {
        slow = slow.write(SERVER, 0, 1499).write(SERVER, 1, 1499).pump();
    }
    for _ in 0..8 {
        slow = slow
            .read(CLIENT, 0, 900)
            .pump()
            .write(SERVER, 0, 1499)
            .pump();
    }
    out.push(("ops-slow-reader".into(), slow.done()));

    // Timers: pings, sync, keepalive expiry.
    let mut timers = Ops::new(0x30).open().pump();
    for _ in 0..12 {
        timers = timers.next_deadline().pump();
    }
    timers = timers.advance_ms4(9000).pump();
    out.push(("ops-timers".into(), timers.done()));

    // Refused connects and resets.
    let deny = Ops::new(2)
        .open()
        .write(SERVER, 0, 700)
        .pump()
        .read(SERVER, 0, 100)
        .open()
        .pump()
        .reset(SERVER, 0)
        .pump();
    out.push(("ops-deny-and-reset".into(), deny.done()));

    // Peer announcements.
    let peer = Ops::new(1)
        .announce(0, 1, true)
        .announce(1, 2, true)
        .announce(4, 3, true)
        .announce(0, 1, false)
        .pump()
        .announce(3, 9, true)
        .pump();
    out.push(("ops-peer-announce".into(), peer.done()));

    // Each short vector frame as hostile bytes into an established pair.
    for (i, (name, frame)) in vector_frames()
        .into_iter()
        .filter(|(name, f)| name.starts_with("decode-") && f.len() <= 255)
        .enumerate()
    {
        let side = if i % 2 == 0 { SERVER } else { CLIENT };
        let flags = if name.contains("addclient") || name.contains("removeclient") {
            1
        } else {
            0
        };
        let ops = Ops::new(flags)
            .open()
            .pump()
            .write(SERVER, 0, 10)
            .raw(side, &frame)
            .pump()
            .read(CLIENT, 0, 64);
        out.push((format!("ops-hostile-{name}"), ops.done()));
    }
    out
}

/// The seeds per target, deduplicated by content (first name wins).
fn seeds() -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
    let mut map = BTreeMap::new();
    map.insert("frame_decode", dedup(vector_frames()));
    map.insert("session", dedup(session_seeds()));
    map
}

fn dedup(seeds: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let mut seen = HashSet::new();
    seeds
        .into_iter()
        .filter(|(_, data)| seen.insert(data.clone()))
        .map(|(name, data)| (sanitize(&name), data))
        .collect()
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[test]
fn bodies_accept_empty_and_tiny_inputs() {
    bodies::frame_decode(&[]);
    bodies::session(&[]);
    // Flags only, then every op code once with no arguments left.
    for op in 0..=32u8 {
        bodies::session(&[0, op]);
        bodies::session(&[1, op]);
    }
}
