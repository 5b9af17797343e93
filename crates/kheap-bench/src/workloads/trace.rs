//! The allocation-trace format (`traces/*.trace.gz`, gzip-compressed UTF-8):
//!
//! ```text
//! # kheap-trace v1 <name> <free-text description>
//! a <id> <size> <align>     allocate; ids are unique decimal integers, never reused
//! f <id>                    free that allocation
//! r <id> <new_size>         realloc: the block keeps its id and alignment
//! # ...                     comment
//! ```
//!
//! Allocations still live at the end are left. Reading resolves ids to dense slot numbers so
//! that replay does no lookups.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// One event, with the allocation's slot instead of its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Alloc { slot: u32, size: usize, align: usize },
    Free { slot: u32 },
    Realloc { slot: u32, size: usize },
}

#[derive(Debug)]
pub struct Trace {
    pub name: String,
    pub events: Vec<Event>,
    /// Number of distinct allocations (slots).
    pub slots: usize,
    /// Largest sum of requested sizes live at once.
    pub peak_live: usize,
}

/// Reads the header line only: (name, description).
pub fn header(path: &Path) -> Result<(String, String), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut line = String::new();
    BufReader::new(flate2::read::GzDecoder::new(file))
        .read_line(&mut line)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    parse_header(&line).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_header(line: &str) -> Result<(String, String), String> {
    let rest = line
        .trim_end()
        .strip_prefix("# kheap-trace v1 ")
        .ok_or("first line is not `# kheap-trace v1 <name> ...`")?;
    let (name, description) = rest.split_once(' ').unwrap_or((rest, ""));
    if name.is_empty() {
        return Err("the header has no name".into());
    }
    Ok((name.to_string(), description.trim().to_string()))
}

/// Reads a `.trace.gz` file.
pub fn read(path: &Path) -> Result<Trace, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(flate2::read::GzDecoder::new(file)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses an uncompressed trace.
pub fn parse(input: impl Read) -> Result<Trace, String> {
    let mut lines = BufReader::new(input).lines();
    let first = lines.next().ok_or("empty trace")?.map_err(|e| e.to_string())?;
    let (name, _) = parse_header(&first)?;
    let mut slots: HashMap<u64, (u32, usize, bool)> = HashMap::new();
    let mut events = Vec::new();
    let (mut live, mut peak) = (0usize, 0usize);
    for (number, line) in lines.enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        let at = |what: &str| format!("line {}: {what}: `{line}`", number + 2);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let kind = fields.next().unwrap_or_default();
        let mut number_field = |what: &str| -> Result<u64, String> {
            fields
                .next()
                .ok_or_else(|| at(&format!("missing {what}")))?
                .parse()
                .map_err(|_| at(&format!("bad {what}")))
        };
        match kind {
            "a" => {
                let id = number_field("id")?;
                let size = number_field("size")? as usize;
                let align = number_field("align")? as usize;
                if !align.is_power_of_two() || size == 0 {
                    return Err(at("size must be non-zero and align a power of two"));
                }
                let slot = slots.len() as u32;
                if slots.insert(id, (slot, size, true)).is_some() {
                    return Err(at("id reused"));
                }
                live += size;
                peak = peak.max(live);
                events.push(Event::Alloc { slot, size, align });
            }
            "f" => {
                let id = number_field("id")?;
                let entry =
                    slots.get_mut(&id).filter(|e| e.2).ok_or_else(|| at("free of an id that is not live"))?;
                entry.2 = false;
                live -= entry.1;
                events.push(Event::Free { slot: entry.0 });
            }
            "r" => {
                let id = number_field("id")?;
                let size = number_field("new size")? as usize;
                if size == 0 {
                    return Err(at("realloc to zero bytes"));
                }
                let entry = slots
                    .get_mut(&id)
                    .filter(|e| e.2)
                    .ok_or_else(|| at("realloc of an id that is not live"))?;
                live = live - entry.1 + size;
                peak = peak.max(live);
                entry.1 = size;
                events.push(Event::Realloc { slot: entry.0, size });
            }
            _ => return Err(at("unknown event")),
        }
    }
    Ok(Trace { name, events, slots: slots.len(), peak_live: peak })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const SAMPLE: &str = "# kheap-trace v1 tiny A hand-written trace for the reader's test\n\
                          # a comment\n\
                          a 10 24 8\n\
                          a 11 100 16\n\
                          r 10 200\n\
                          f 11\n\
                          a 12 4096 4096\n\
                          \n\
                          f 10\n";

    #[test]
    fn reads_a_gzipped_trace() {
        let dir = std::env::temp_dir().join(format!("kheap-bench-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tiny.trace.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        encoder.write_all(SAMPLE.as_bytes()).unwrap();
        encoder.finish().unwrap();

        assert_eq!(
            header(&path).unwrap(),
            ("tiny".to_string(), "A hand-written trace for the reader's test".to_string())
        );
        let trace = read(&path).unwrap();
        assert_eq!(trace.name, "tiny");
        assert_eq!(trace.slots, 3);
        assert_eq!(
            trace.events,
            vec![
                Event::Alloc { slot: 0, size: 24, align: 8 },
                Event::Alloc { slot: 1, size: 100, align: 16 },
                Event::Realloc { slot: 0, size: 200 },
                Event::Free { slot: 1 },
                Event::Alloc { slot: 2, size: 4096, align: 4096 },
                Event::Free { slot: 0 },
            ]
        );
        // 200 + 4096 live after the third allocation.
        assert_eq!(trace.peak_live, 4296);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_malformed_traces() {
        let bad = |body: &str| parse(format!("# kheap-trace v1 t x\n{body}").as_bytes()).unwrap_err();
        assert!(bad("a 1 8 8\na 1 8 8\n").contains("id reused"));
        assert!(bad("f 7\n").contains("not live"));
        assert!(bad("a 1 8 3\n").contains("power of two"));
        assert!(bad("x 1\n").contains("unknown event"));
        assert!(bad("a 1 eight 8\n").contains("bad size"));
        assert!(parse("kheap-trace v1 t\n".as_bytes()).unwrap_err().contains("first line"));
    }
}
