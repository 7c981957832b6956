//! The fuzz targets, run briefly in every test run: each target's check (`mtml_tests::fuzz`, the
//! same function libFuzzer drives in `fuzz/`) over every input of its kept corpus
//! (`fuzz/corpus/<target>/`, including the inputs that once broke it), then over a bounded number
//! of inputs mutated from the corpus with a fixed seed, so a failure repeats. The long runs with
//! coverage feedback are cargo-fuzz's (docs/reliability.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
    files.sort();
    let inputs: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(inputs.len() >= 5, "{}: a corpus of at least 5 inputs is kept", dir.display());
    inputs
}

/// xorshift64*: a fixed, dependency-free stream of numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A few of libFuzzer's mutations: flip a bit, set an interesting byte, insert or delete a run,
/// copy a run within the input, splice in part of another input, insert a token.
fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = [0, 0xff, 0x7f, 0x80, b'\n', b',', b'\t', b'"', b'=', b'.'][rng.below(10)];
            }
            2 => {
                let at = rng.below(len + 1);
                let run: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                out.splice(at..at, run);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at..end);
            }
            4 if len > 0 => {
                let (from, at) = (rng.below(len), rng.below(len + 1));
                let run = out[from..(from + 1 + rng.below(32)).min(len)].to_vec();
                out.splice(at..at, run);
            }
            5 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let run = &other[from..(from + 1 + rng.below(64)).min(other.len())];
                    let at = rng.below(len + 1);
                    out.splice(at..at, run.iter().copied());
                }
            }
            _ if !tokens.is_empty() => {
                let at = rng.below(len + 1);
                out.splice(at..at, tokens[rng.below(tokens.len())].iter().copied());
            }
            _ => {}
        }
    }
    out
}

/// Runs `check` on every corpus input and `mutations` mutated ones; returns how many it ran.
fn run(target: &str, check: fn(&[u8]), mutations: usize, tokens: &[&[u8]]) -> usize {
    let corpus = corpus(target);
    for input in &corpus {
        check(input);
    }
    let mut rng = Rng(0x6d74_6d6c ^ target.len() as u64);
    for n in 0..mutations {
        let input = mutate(&mut rng, &corpus[n % corpus.len()], &corpus, tokens);
        let outcome = std::panic::catch_unwind(|| check(&input));
        if outcome.is_err() {
            let kept = std::env::temp_dir().join(format!("mtml-fuzz-{target}-{n}"));
            std::fs::write(&kept, &input).unwrap();
            panic!("{target}: mutated input {n} broke the check; kept at {} (add it to fuzz/corpus/{target} once fixed)", kept.display());
        }
    }
    eprintln!("{target}: {} corpus inputs, {mutations} mutations", corpus.len());
    corpus.len() + mutations
}

#[test]
fn tick_file_readers_survive_their_corpus_and_its_mutations() {
    let tokens: &[&[u8]] = &[b"time_utc_ms", b"bid", b"ask", b"symbol", b"<DATE>\t<TIME>\t<BID>\t<ASK>", b"\xff\xfe", b"\x1f\x8b", b"2014.05.05 06:00:00.123", b"\r\n", b"NaN", b"-1e308"];
    assert!(run("tick_file", mtml_tests::fuzz::tick_file, 100_000, tokens) > 100_000);
}

#[test]
fn the_configuration_loader_survives_its_corpus_and_its_mutations() {
    let tokens: &[&[u8]] = &[b"[bridge]\n", b"[auth]\n", b"[tls]\n", b"[telegram]\n", b"listen = ", b"\"0.0.0.0:1\"", b"= [", b"]", b"\0", b"AUTH_READ=", b"expires = ", b"1e400", b"-1", b"\"\"\"", b"{ a = 1 }"];
    assert!(run("config", mtml_tests::fuzz::config, 30_000, tokens) > 30_000);
}

#[test]
fn model_upload_validation_survives_its_corpus_and_its_mutations() {
    let tokens: &[&[u8]] = &[b"{\"auc\": 0.5}\0", b"feature_set", b"float_input", b"probabilities", b"\x08\x07", b"ai.onnx"];
    assert!(run("model_upload", mtml_tests::fuzz::model_upload, 3_000, tokens) > 3_000);
}
