//! The kheap-trace v1 text format: turning raw events into it, and reading it
//! back to check it.
//!
//! ```text
//! # kheap-trace v1 <name> <description>
//! # events N peak_live_bytes P max_live_blocks B
//! a <id> <size> <align>     allocate
//! f <id>                    free
//! r <id> <new_size>         realloc (keeps its id and its alignment)
//! ```
//!
//! Other lines starting with `#` are comments. Files are gzip-compressed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::recorder::{Kind, RawEvent};

/// Figures of one trace, as the README reports them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub allocs: u64,
    pub frees: u64,
    pub reallocs: u64,
    /// Largest sum of the requested sizes of the live blocks at any point.
    pub peak_live_bytes: u64,
    /// Largest number of live blocks at any point.
    pub max_live_blocks: u64,
    pub live_blocks_at_end: u64,
    pub live_bytes_at_end: u64,
}

/// Tracks live blocks to compute a [`Summary`]; shared by writer and checker
/// so both count the same way.
#[derive(Default)]
struct Tally {
    summary: Summary,
    live_bytes: u64,
    live_blocks: u64,
}

impl Tally {
    fn alloc(&mut self, size: u64) {
        self.summary.events += 1;
        self.summary.allocs += 1;
        self.live_bytes += size;
        self.live_blocks += 1;
        self.peaks();
    }

    fn free(&mut self, size: u64) {
        self.summary.events += 1;
        self.summary.frees += 1;
        self.live_bytes -= size;
        self.live_blocks -= 1;
    }

    fn realloc(&mut self, old_size: u64, new_size: u64) {
        self.summary.events += 1;
        self.summary.reallocs += 1;
        self.live_bytes = self.live_bytes - old_size + new_size;
        self.peaks();
    }

    fn peaks(&mut self) {
        self.summary.peak_live_bytes = self.summary.peak_live_bytes.max(self.live_bytes);
        self.summary.max_live_blocks = self.summary.max_live_blocks.max(self.live_blocks);
    }

    fn finish(mut self) -> Summary {
        self.summary.live_blocks_at_end = self.live_blocks;
        self.summary.live_bytes_at_end = self.live_bytes;
        self.summary
    }
}

/// Blocks the workload touched that were allocated before recording started
/// (its prepared input, std's own state). They are not in the trace: their
/// frees are dropped and a realloc of one becomes a fresh allocation.
#[derive(Debug, Default)]
pub struct Untracked {
    pub frees: u64,
    pub reallocs: u64,
}

/// Maps the raw events to ids and renders the trace text.
pub fn render(
    name: &str,
    description: &str,
    events: &[RawEvent],
    truncated: bool,
) -> (String, Summary, Untracked) {
    // address -> (id, size) of each live block. Ids count up from 1 and are
    // never reused, even when the system allocator reuses an address.
    let mut live: HashMap<usize, (u64, u64)> = HashMap::new();
    let mut next_id = 1u64;
    let mut tally = Tally::default();
    let mut untracked = Untracked::default();
    let mut body = String::with_capacity(events.len() * 16);
    for e in events {
        match e.kind {
            Kind::Alloc => {
                let id = next_id;
                next_id += 1;
                let old = live.insert(e.addr, (id, e.size as u64));
                assert!(old.is_none(), "system allocator returned live address {:#x} twice", e.addr);
                tally.alloc(e.size as u64);
                writeln!(body, "a {id} {} {}", e.size, e.align).unwrap();
            }
            Kind::Free => match live.remove(&e.addr) {
                Some((id, size)) => {
                    tally.free(size);
                    writeln!(body, "f {id}").unwrap();
                }
                None => untracked.frees += 1,
            },
            Kind::Realloc => match live.remove(&e.addr) {
                Some((id, size)) => {
                    let old = live.insert(e.new_addr, (id, e.size as u64));
                    assert!(old.is_none(), "realloc moved onto live address {:#x}", e.new_addr);
                    tally.realloc(size, e.size as u64);
                    writeln!(body, "r {id} {}", e.size).unwrap();
                }
                None => {
                    let id = next_id;
                    next_id += 1;
                    let old = live.insert(e.new_addr, (id, e.size as u64));
                    assert!(old.is_none(), "realloc moved onto live address {:#x}", e.new_addr);
                    untracked.reallocs += 1;
                    tally.alloc(e.size as u64);
                    writeln!(body, "a {id} {} {}", e.size, e.align).unwrap();
                }
            },
        }
    }
    let s = tally.finish();
    let mut text = String::with_capacity(body.len() + 1024);
    writeln!(text, "# kheap-trace v1 {name} {description}").unwrap();
    writeln!(
        text,
        "# events {} peak_live_bytes {} max_live_blocks {}",
        s.events, s.peak_live_bytes, s.max_live_blocks
    )
    .unwrap();
    writeln!(
        text,
        "# allocs {} frees {} reallocs {} live_at_end_blocks {} live_at_end_bytes {}",
        s.allocs, s.frees, s.reallocs, s.live_blocks_at_end, s.live_bytes_at_end
    )
    .unwrap();
    writeln!(
        text,
        "# recorded by tools/trace-recorder (System allocator wrapper); blocks allocated before recording \
         started are not in the trace: {} of their frees dropped, {} of their reallocs recorded as `a`",
        untracked.frees, untracked.reallocs
    )
    .unwrap();
    writeln!(text, "# built with {} for {}", env!("RECORDER_RUSTC"), env!("RECORDER_TARGET")).unwrap();
    if truncated {
        writeln!(text, "# TRUNCATED: the event buffer filled up; this is only the first part of the run")
            .unwrap();
    }
    text.push_str(&body);
    (text, s, untracked)
}

/// Writes `text` gzip-compressed. The gzip header carries no file name and a
/// zero modification time, so equal text gives byte-identical files.
pub fn write_gz(path: &Path, text: &str) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut gz: GzEncoder<_> = GzBuilder::new().mtime(0).write(file, Compression::best());
    gz.write_all(text.as_bytes())?;
    gz.finish()?.sync_all()
}

/// Reads a trace file back and checks it (see [`check_lines`]). Returns the
/// trace's name, description and figures.
pub fn check(path: &Path) -> Result<(String, String, Summary), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file_name = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
    check_lines(&path.display().to_string(), file_name, BufReader::new(GzDecoder::new(file)))
}

/// Checks decompressed trace text: the header names the file, every `f`/`r`
/// refers to a live id, ids are never reused, sizes are non-zero, alignments
/// are powers of two, and a `# events` comment (if any) matches the events.
pub fn check_lines(
    label: &str,
    file_name: &str,
    reader: impl BufRead,
) -> Result<(String, String, Summary), String> {
    let mut live: HashMap<u64, u64> = HashMap::new();
    let mut used: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut tally = Tally::default();
    let mut claimed: Option<(u64, u64, u64)> = None;
    let mut name = String::new();
    let mut description = String::new();
    for (i, line) in reader.lines().enumerate() {
        let lineno = i + 1;
        let line = line.map_err(|e| format!("{label}: line {lineno}: {e}"))?;
        let err = |msg: String| format!("{label}: line {lineno}: {msg}: {line:?}");
        if i == 0 {
            let rest = line.strip_prefix("# kheap-trace v1 ").ok_or_else(|| err("bad header".into()))?;
            let (n, d) = rest.split_once(' ').unwrap_or((rest, ""));
            name = n.to_string();
            description = d.to_string();
            let expected = format!("{name}.trace.gz");
            if file_name != expected {
                return Err(err(format!("header names {name:?} but the file is not {expected}")));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if let ["events", e, "peak_live_bytes", p, "max_live_blocks", b] = words[..] {
                let parse = |s: &str| s.parse::<u64>().map_err(|_| err("bad number".into()));
                claimed = Some((parse(e)?, parse(p)?, parse(b)?));
            }
            continue;
        }
        let mut fields = line.split(' ');
        let op = fields.next().unwrap_or("");
        let nums: Vec<u64> = fields
            .map(|f| f.parse::<u64>().map_err(|_| err(format!("bad number {f:?}"))))
            .collect::<Result<_, _>>()?;
        match (op, nums.as_slice()) {
            ("a", &[id, size, align]) => {
                if !used.insert(id) {
                    return Err(err(format!("id {id} reused")));
                }
                if size == 0 {
                    return Err(err("zero-size allocation".into()));
                }
                if !align.is_power_of_two() {
                    return Err(err(format!("alignment {align} is not a power of two")));
                }
                live.insert(id, size);
                tally.alloc(size);
            }
            ("f", &[id]) => {
                let size =
                    live.remove(&id).ok_or_else(|| err(format!("free of id {id}, which is not live")))?;
                tally.free(size);
            }
            ("r", &[id, new_size]) => {
                if new_size == 0 {
                    return Err(err("realloc to zero size".into()));
                }
                let size =
                    live.get_mut(&id).ok_or_else(|| err(format!("realloc of id {id}, which is not live")))?;
                tally.realloc(*size, new_size);
                *size = new_size;
            }
            _ => return Err(err("not an event".into())),
        }
    }
    if name.is_empty() {
        return Err(format!("{label}: empty file"));
    }
    let s = tally.finish();
    if let Some(c) = claimed {
        if c != (s.events, s.peak_live_bytes, s.max_live_blocks) {
            return Err(format!(
                "{label}: the `# events` comment says {c:?}, the events give ({}, {}, {})",
                s.events, s.peak_live_bytes, s.max_live_blocks
            ));
        }
    }
    Ok((name, description, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: Kind, addr: usize, size: usize, new_addr: usize) -> RawEvent {
        RawEvent { kind, addr, size, align: 8, new_addr }
    }

    fn check_text(text: &str) -> Result<Summary, String> {
        check_lines("test", "t.trace.gz", text.as_bytes()).map(|(_, _, s)| s)
    }

    #[test]
    fn ids_are_never_reused_and_reallocs_keep_theirs() {
        let events = [
            ev(Kind::Alloc, 0x1000, 16, 0),
            ev(Kind::Free, 0x1000, 0, 0),
            // The system allocator hands the same address out again: new id.
            ev(Kind::Alloc, 0x1000, 32, 0),
            // Moves to another address: same id, which the later free uses.
            ev(Kind::Realloc, 0x1000, 64, 0x2000),
            ev(Kind::Alloc, 0x1000, 8, 0),
            ev(Kind::Free, 0x2000, 0, 0),
        ];
        let (text, s, u) = render("t", "test", &events, false);
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(body, ["a 1 16 8", "f 1", "a 2 32 8", "r 2 64", "a 3 8 8", "f 2"]);
        assert_eq!((s.events, s.peak_live_bytes, s.max_live_blocks), (6, 72, 2));
        assert_eq!((s.live_blocks_at_end, s.live_bytes_at_end), (1, 8));
        assert_eq!((u.frees, u.reallocs), (0, 0));
        assert_eq!(check_text(&text), Ok(s));
    }

    #[test]
    fn blocks_from_before_recording_are_left_out() {
        let events = [
            ev(Kind::Free, 0x5000, 0, 0),
            ev(Kind::Realloc, 0x6000, 100, 0x7000),
            ev(Kind::Free, 0x7000, 0, 0),
        ];
        let (text, s, u) = render("t", "test", &events, false);
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(body, ["a 1 100 8", "f 1"]);
        assert_eq!((u.frees, u.reallocs), (1, 1));
        assert_eq!(check_text(&text), Ok(s));
    }

    #[test]
    fn a_truncated_recording_says_so() {
        let (text, _, _) = render("t", "test", &[ev(Kind::Alloc, 0x10, 1, 0)], true);
        assert!(text.lines().any(|l| l.starts_with("# TRUNCATED")));
    }

    #[test]
    fn checker_rejects_broken_traces() {
        let header = "# kheap-trace v1 t test\n";
        for (body, complaint) in [
            ("f 1\n", "not live"),
            ("a 1 8 8\nf 1\nf 1\n", "not live"),
            ("a 1 8 8\nf 1\nr 1 16\n", "not live"),
            ("a 1 8 8\nf 1\na 1 8 8\n", "reused"),
            ("a 1 8 24\n", "power of two"),
            ("a 1 0 8\n", "zero-size"),
            ("a 1 8 8\nr 1 0\n", "zero size"),
            ("x 1\n", "not an event"),
            ("a 1 8\n", "not an event"),
            ("a one 8 8\n", "bad number"),
            ("# events 5 peak_live_bytes 8 max_live_blocks 1\na 1 8 8\n", "comment says"),
        ] {
            let err = check_text(&format!("{header}{body}")).unwrap_err();
            assert!(err.contains(complaint), "{body:?}: {err}");
        }
        assert!(check_text("a 1 8 8\n").unwrap_err().contains("bad header"));
        let wrong_name = check_lines("test", "other.trace.gz", header.as_bytes()).unwrap_err();
        assert!(
            wrong_name.contains("other.trace.gz") || wrong_name.contains("not t.trace.gz"),
            "{wrong_name}"
        );
    }

    #[test]
    fn written_files_are_byte_identical_for_equal_text() {
        let (text, _, _) = render("t", "test", &[ev(Kind::Alloc, 0x10, 1, 0)], false);
        let dir = std::env::temp_dir().join(format!("trace-recorder-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (one, two) = (dir.join("t.trace.gz"), dir.join("u.trace.gz"));
        write_gz(&one, &text).unwrap();
        write_gz(&two, &text).unwrap();
        assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
        assert!(check(&one).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
