//! regex: scan a generated service log — compile a set of patterns (including
//! a large alternation and Unicode classes), extract fields with capture
//! groups, classify lines with a `RegexSet`, and redact with `replace_all`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;

use regex::{Regex, RegexSet};

use super::{words, Rng, Workload, WORDS};

pub const WORKLOAD: Workload = Workload {
    name: "regex",
    krate: "regex",
    what:
        "compiles 8 patterns (captures, Unicode classes, a 292-word alternation) and a 6-pattern RegexSet, \
           then scans a generated 4000-line (~630 KB) service log: parses every line with captures, \
           collects key=value pairs with captures_iter into per-level maps, classifies lines with the set, \
           counts the Unicode words of each message in a map, counts the alternation's matches over the \
           whole log, and redacts e-mail and IPv4 addresses with replace_all",
    prepare,
};

const LINES: usize = 4_000;

fn generate(rng: &mut Rng) -> String {
    let levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
    let users = ["alice", "bob", "chloé", "dmitri", "eve", "fatima", "günter", "hiro"];
    let mut log = String::new();
    for i in 0..LINES {
        write!(
            log,
            "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {:<5} [worker-{}] ",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1000),
            rng.pick(&levels),
            rng.below(16)
        )
        .unwrap();
        let n = 3 + rng.index(8);
        log.push_str(&words(rng, n));
        write!(
            log,
            " id={:x} path=/api/v{}/{}/{} status={} dur={}.{}ms",
            rng.next_u64(),
            1 + rng.below(3),
            rng.pick(WORDS),
            rng.below(10_000),
            [200, 200, 201, 204, 301, 404, 500][rng.index(7)],
            rng.below(900),
            rng.below(10)
        )
        .unwrap();
        if rng.chance(30) {
            let user = rng.pick(&users);
            write!(log, " user={user}@example.com").unwrap();
        }
        if rng.chance(25) {
            write!(
                log,
                " client={}.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                rng.below(256),
                rng.below(256)
            )
            .unwrap();
        }
        if i % 97 == 0 {
            log.push_str(" Exception: connection reset by peer");
        }
        log.push('\n');
    }
    log
}

fn prepare() -> Box<dyn FnMut()> {
    let log = generate(&mut Rng::new(0x72_6567_6578));
    // A vocabulary of 292 words for the big alternation: each word and three
    // derived forms (only the bare words occur in the log).
    let vocabulary: Vec<String> = ["", "s", "ed", "ing"]
        .iter()
        .flat_map(|suffix| WORDS.iter().map(move |w| format!("{w}{suffix}")))
        .collect();
    Box::new(move || {
        let line_re = Regex::new(
            r"^(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) (?P<level>[A-Z]+)\s+\[(?P<worker>[\w-]+)\] (?P<msg>.*)$",
        )
        .unwrap();
        let kv_re = Regex::new(r"(?P<key>[a-z]+)=(?P<value>\S+)").unwrap();
        let email_re = Regex::new(r"\b[\p{L}\p{N}._%+-]+@[\p{L}\p{N}.-]+\.[a-z]{2,}\b").unwrap();
        let ip_re = Regex::new(r"\b(?:\d{1,3}\.){3}\d{1,3}\b").unwrap();
        let error_re = Regex::new(r"(?i)exception|error|fail(?:ed|ure)?").unwrap();
        let slow_re = Regex::new(r"dur=(?:[5-9]\d{2}|\d{4,})\.\d+ms").unwrap();
        let word_re = Regex::new(r"\p{Alphabetic}+").unwrap();
        let vocab_re = Regex::new(&format!(r"\b(?:{})\b", vocabulary.join("|"))).unwrap();
        let set = RegexSet::new([
            r"status=5\d\d",
            r"status=4\d\d",
            r"status=3\d\d",
            r"path=/api/v1/",
            r"user=\S+",
            r"(?i)exception",
        ])
        .unwrap();

        let mut per_level: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        let mut classes = [0usize; 6];
        let mut errors = 0;
        let mut slow = Vec::new();
        let mut word_counts: BTreeMap<String, usize> = BTreeMap::new();
        for line in log.lines() {
            let caps = line_re.captures(line).expect("every generated line matches");
            let fields = per_level.entry(caps["level"].to_string()).or_default();
            for kv in kv_re.captures_iter(&caps["msg"]) {
                fields.entry(kv["key"].to_string()).or_default().push(kv["value"].to_string());
            }
            for m in set.matches(line).iter() {
                classes[m] += 1;
            }
            if error_re.is_match(line) {
                errors += 1;
            }
            if let Some(m) = slow_re.find(line) {
                slow.push(m.as_str().to_owned());
            }
            for w in word_re.find_iter(&caps["msg"]) {
                *word_counts.entry(w.as_str().to_owned()).or_default() += 1;
            }
        }
        let vocab_hits = vocab_re.find_iter(&log).count();
        let redacted = email_re.replace_all(&log, "<email>");
        let redacted = ip_re.replace_all(&redacted, "<ip>").into_owned();
        black_box((&per_level, classes, errors, &slow, &word_counts, vocab_hits, &redacted));
    })
}
