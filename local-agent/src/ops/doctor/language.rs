//! Does the model read the notes? An English model sees most Chinese, Japanese and Korean text as
//! unknown tokens, so its vectors say little and retrieval runs on keywords alone; the
//! multilingual model reads them. The check samples the indexed text and asks the loaded model.

use std::path::Path;

use super::Check;
use crate::embed::Embedder;
use crate::index::generations::IndexDir;
use crate::index::snapshot::Snapshot;

const NAME: &str = "language";
/// Chunks sampled across the index: enough for a share to the nearest few percent.
const SAMPLE: usize = 200;
/// From this share of CJK letters on, the notes are mostly CJK.
const MOSTLY: f32 = 0.5;
/// Below this share of known tokens, the model cannot read the notes well.
const READABLE: f32 = 0.9;

/// What the sampled text is made of, and how much of it the model reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Share of the letters (CJK ideographs, kana, hangul, and alphabetic) that are CJK.
    pub cjk_share: f32,
    /// Share of the model's tokens over the sample that are not unknown.
    pub visibility: f32,
    /// Chunks sampled.
    pub chunks: usize,
}

/// The language check of the index in `data_dir`, if there is one this model can open.
pub fn check_language(data_dir: &Path, embedder: &Embedder) -> Option<Check> {
    let snapshot = Snapshot::open_current(&IndexDir::new(data_dir), embedder.model_id()).ok().flatten()?;
    judge(read_sample(&snapshot, embedder))
}

/// Samples up to [`SAMPLE`] chunks spread evenly over the index and measures them.
pub fn read_sample(snapshot: &Snapshot, embedder: &Embedder) -> Reading {
    let ids: Vec<u64> =
        snapshot.manifest.documents.iter().flat_map(|document| document.chunks.iter().map(|chunk| chunk.id)).collect();
    let step = ids.len().div_ceil(SAMPLE).max(1);
    let texts: Vec<String> = ids
        .iter()
        .step_by(step)
        .filter_map(|&id| snapshot.text.stored(id).ok().flatten())
        .map(|chunk| chunk.text)
        .collect();
    let (mut cjk, mut letters) = (0usize, 0usize);
    for character in texts.iter().flat_map(|text| text.chars()) {
        if is_cjk(character) {
            cjk += 1;
            letters += 1;
        } else if character.is_alphabetic() {
            letters += 1;
        }
    }
    let (known, total) =
        texts.iter().map(|text| embedder.known_tokens(text)).fold((0, 0), |sum, (k, t)| (sum.0 + k, sum.1 + t));
    Reading {
        cjk_share: if letters == 0 { 0.0 } else { cjk as f32 / letters as f32 },
        visibility: if total == 0 { 1.0 } else { known as f32 / total as f32 },
        chunks: texts.len(),
    }
}

/// A warning when most of the notes are CJK and the model reads little of them.
pub fn judge(reading: Reading) -> Option<Check> {
    if reading.chunks == 0 || reading.cjk_share < MOSTLY {
        return None;
    }
    let share = |value: f32| format!("{:.0} %", value * 100.0);
    let detail = format!(
        "{} of the letters in {} sampled chunks are Chinese, Japanese or Korean; the model knows {} of their tokens",
        share(reading.cjk_share),
        reading.chunks,
        share(reading.visibility)
    );
    Some(if reading.visibility < READABLE {
        Check::warn(
            NAME,
            detail,
            "`local-agent setup --model multilingual`, then model = \"multilingual\" in config.toml (the index is rebuilt \
             for it): questions then match by meaning, not only by keywords",
        )
    } else {
        Check::ok(NAME, detail)
    })
}

/// Han ideographs, kana, hangul and the CJK punctuation and compatibility blocks.
fn is_cjk(character: char) -> bool {
    matches!(character as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0x1100..=0x11FF    // hangul jamo
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x2FA1F  // extensions B–F, compatibility supplement
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::doctor::Status;

    #[test]
    fn mostly_cjk_notes_the_model_cannot_read_get_the_multilingual_model_suggested() {
        let reading = |cjk_share, visibility| Reading { cjk_share, visibility, chunks: 40 };
        let check = judge(reading(0.8, 0.2)).expect("mostly Chinese");
        assert_eq!(check.status, Status::Warn);
        assert!(check.fix.as_deref().unwrap_or_default().contains("--model multilingual"), "{check:?}");
        assert_eq!(judge(reading(0.8, 0.99)).map(|check| check.status), Some(Status::Ok), "a model that reads them");
        assert_eq!(judge(reading(0.2, 0.2)), None, "mostly English notes say nothing");
        assert_eq!(judge(Reading { chunks: 0, ..reading(1.0, 0.0) }), None, "an empty index says nothing");
    }

    #[test]
    fn cjk_letters_are_told_from_others() {
        assert!("中文日本語한국어カタカナ".chars().all(is_cjk));
        assert!(!"English, Ελληνικά, русский, 123 ，".chars().any(is_cjk));
    }
}
