//! pulldown-cmark: render a generated Markdown book the way a static site
//! generator does: one large document with every extension, rendered to HTML
//! directly and again through a collected event list (to build a table of
//! contents), plus many small pages rendered one by one.

use std::fmt::Write as _;
use std::hint::black_box;

use pulldown_cmark::{html, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::{words, Rng, Workload};

pub const WORKLOAD: Workload = Workload {
    name: "markdown",
    krate: "pulldown-cmark",
    what: "renders a generated ~560 KB Markdown document (headings, emphasis, links, reference links, \
           nested lists, task lists, tables, footnotes, code blocks) to HTML twice (directly, and via a \
           collected event list that also builds a table of contents), then 1000 small pages (~6.6 KB each) one by one, keeping their HTML",
    prepare,
};

/// Sections in the large document (about 1.9 KB each).
const SECTIONS: usize = 300;
/// Small pages rendered one after another.
const PAGES: usize = 1000;

fn inline(rng: &mut Rng, out: &mut String, refs: usize) {
    let n = 6 + rng.index(30);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        let n = 1 + rng.index(3);
        let w = words(rng, n);
        match rng.below(20) {
            0 => write!(out, "*{w}*").unwrap(),
            1 => write!(out, "**{w}**").unwrap(),
            2 => write!(out, "`{w}`").unwrap(),
            3 => {
                write!(out, "[{w}](https://example.org/{}/{})", rng.below(100), w.replace(' ', "-")).unwrap()
            }
            4 if refs > 0 => write!(out, "[{w}][ref{}]", rng.index(refs)).unwrap(),
            5 => write!(out, "~~{w}~~").unwrap(),
            6 => write!(out, "\"{w}\" -- {w}...").unwrap(),
            7 if refs > 0 => write!(out, "{w}[^note{}]", rng.index(refs)).unwrap(),
            8 => write!(out, "<https://example.com/{}>", rng.below(1000)).unwrap(),
            _ => out.push_str(&w),
        }
    }
}

fn document(rng: &mut Rng, sections: usize, refs: usize) -> String {
    let mut d = String::new();
    writeln!(d, "# {}\n", words(rng, 4)).unwrap();
    for s in 0..sections {
        writeln!(d, "## {} {{#section-{s}}}\n", words(rng, 3)).unwrap();
        for _ in 0..1 + rng.index(3) {
            inline(rng, &mut d, refs);
            d.push_str("\n\n");
        }
        match rng.below(6) {
            0 => {
                for i in 0..2 + rng.index(6) {
                    d.push_str("- ");
                    inline(rng, &mut d, refs);
                    d.push('\n');
                    if i % 2 == 1 {
                        for _ in 0..1 + rng.index(3) {
                            d.push_str("    1. ");
                            inline(rng, &mut d, refs);
                            d.push('\n');
                        }
                    }
                }
                d.push('\n');
            }
            1 => {
                for _ in 0..2 + rng.index(5) {
                    let done = if rng.chance(50) { 'x' } else { ' ' };
                    write!(d, "- [{done}] ").unwrap();
                    inline(rng, &mut d, refs);
                    d.push('\n');
                }
                d.push('\n');
            }
            2 => {
                d.push_str("| name | size | note |\n|:-----|-----:|:----:|\n");
                for _ in 0..3 + rng.index(10) {
                    writeln!(d, "| {} | {} | {} |", words(rng, 1), rng.below(100_000), words(rng, 3))
                        .unwrap();
                }
                d.push('\n');
            }
            3 => {
                d.push_str("```rust\n");
                for i in 0..3 + rng.index(12) {
                    writeln!(
                        d,
                        "let {}_{i} = {}; // {}",
                        rng.pick(super::WORDS),
                        rng.below(1 << 20),
                        words(rng, 4)
                    )
                    .unwrap();
                }
                d.push_str("```\n\n");
            }
            4 => {
                for _ in 0..1 + rng.index(3) {
                    d.push_str("> ");
                    inline(rng, &mut d, refs);
                    d.push_str("\n>\n");
                }
                d.push('\n');
            }
            _ => {
                writeln!(d, "### {}\n", words(rng, 2)).unwrap();
                inline(rng, &mut d, refs);
                d.push_str("\n\n---\n\n");
            }
        }
    }
    for r in 0..refs {
        writeln!(d, "[ref{r}]: https://example.net/ref/{r} \"{}\"", words(rng, 2)).unwrap();
        writeln!(d, "[^note{r}]: {}\n", words(rng, 8)).unwrap();
    }
    d
}

fn prepare() -> Box<dyn FnMut()> {
    let mut rng = Rng::new(0x6d61_726b_646f_776e);
    let book = document(&mut rng, SECTIONS, 200);
    let pages: Vec<String> = (0..PAGES)
        .map(|_| {
            let sections = 2 + rng.index(4);
            document(&mut rng, sections, 5)
        })
        .collect();
    // The extensions a documentation site turns on (not `Options::all()`,
    // which also enables mutually exclusive footnote syntaxes).
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_SMART_PUNCTUATION
        | Options::ENABLE_HEADING_ATTRIBUTES;
    Box::new(move || {
        // Direct rendering, as `pulldown-cmark`'s own example does.
        let mut out = String::new();
        html::push_html(&mut out, Parser::new_ext(&book, options));
        black_box(&out);
        drop(out);

        // Collect the events first (as mdBook-like tools do to rewrite them),
        // take the headings' text for a table of contents, then render.
        let events: Vec<Event> = Parser::new_ext(&book, options).collect();
        let mut toc: Vec<(HeadingLevel, String)> = Vec::new();
        let mut current: Option<(HeadingLevel, String)> = None;
        for e in &events {
            match e {
                Event::Start(Tag::Heading { level, .. }) => current = Some((*level, String::new())),
                Event::Text(t) | Event::Code(t) => {
                    if let Some((_, text)) = current.as_mut() {
                        text.push_str(t);
                    }
                }
                Event::End(TagEnd::Heading(_)) => toc.extend(current.take()),
                _ => {}
            }
        }
        let mut out = String::new();
        for (level, text) in &toc {
            writeln!(out, "<li class=\"toc-{level}\">{text}</li>").unwrap();
        }
        html::push_html(&mut out, events.into_iter());
        black_box(&out);
        drop((out, toc));

        // Many small pages, each into its own string that is kept, as a site
        // generator keeps its rendered pages until it writes them.
        let mut rendered = Vec::new();
        for page in &pages {
            let mut out = String::new();
            html::push_html(&mut out, Parser::new_ext(page, options));
            rendered.push(out);
        }
        black_box(&rendered);
    })
}
