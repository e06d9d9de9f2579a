//! The tunnel's JSON fixtures decode, and re-encode to the same JSON.

use std::path::{Path, PathBuf};

use protocol::tunnel::{AgentMessage, CloudMessage};

fn fixtures() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tunnel");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 10, "fixtures missing from {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn fixtures_round_trip() {
    for (name, text) in fixtures() {
        let encoded = if name.starts_with("agent-") {
            AgentMessage::decode(&text).unwrap_or_else(|error| panic!("{name}: {error}")).encode()
        } else {
            CloudMessage::decode(&text).unwrap_or_else(|error| panic!("{name}: {error}")).encode()
        };
        assert_eq!(json(&encoded), json(&text), "{name}");
    }
}

#[test]
fn messages_are_not_mistaken_for_the_other_direction() {
    for (name, text) in fixtures() {
        let wrong_way = if name.starts_with("agent-") {
            CloudMessage::decode(&text).is_ok()
        } else {
            AgentMessage::decode(&text).is_ok()
        };
        assert!(!wrong_way, "{name} decoded as a message of the other direction");
    }
}

/// A cheap stand-in for the cargo-fuzz target (which needs a nightly toolchain): thousands of
/// deterministic mutations of the fixtures go through both decoders, which must not panic.
#[test]
fn mutated_fixtures_never_panic_the_decoders() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds: Vec<Vec<u8>> = fixtures().into_iter().map(|(_, text)| text.into_bytes()).collect();
    for round in 0..20_000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        for _ in 0..(next() % 8 + 1) {
            let at = (next() as usize) % bytes.len().max(1);
            match next() % 4 {
                0 if !bytes.is_empty() => bytes[at] = next() as u8,
                1 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                2 => bytes.insert(at.min(bytes.len()), b"{}[]\":,0\\"[(next() % 9) as usize]),
                _ => bytes.truncate(at),
            }
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = AgentMessage::decode(text);
            let _ = CloudMessage::decode(text);
            let _ = protocol::tunnel::request_id_of(text);
        }
    }
}
