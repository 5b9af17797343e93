//! syn: parse generated Rust source into a full syntax tree, walk it with a
//! visitor, print it back to tokens and text, and parse that again — what a
//! procedural macro or a code generator does, at the scale of a large crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;

use quote::ToTokens;
use syn::visit::{self, Visit};

use super::{Rng, Workload, WORDS};

pub const WORKLOAD: Workload = Workload {
    name: "syn",
    krate: "syn",
    what: "parses a generated ~56 KB Rust source file (structs with derives and doc comments, enums, \
           impl blocks whose methods have lets, matches, loops, closures, method chains and macro calls) \
           with syn::parse_file, walks it with a Visit counting identifiers, prints it with ToTokens to \
           a token stream and a string, and parses that string again",
    prepare,
};

const ITEMS: usize = 20;

fn ident(rng: &mut Rng) -> String {
    format!("{}_{}", rng.pick(WORDS), rng.below(100))
}

fn expr(rng: &mut Rng, depth: u32) -> String {
    if depth == 0 {
        return match rng.below(4) {
            0 => rng.below(1000).to_string(),
            1 => ident(rng),
            2 => format!("self.{}", ident(rng)),
            _ => format!("\"{}\"", rng.pick(WORDS)),
        };
    }
    match rng.below(7) {
        0 => format!("({} + {})", expr(rng, depth - 1), expr(rng, depth - 1)),
        1 => format!("{}.{}({})", expr(rng, depth - 1), ident(rng), expr(rng, depth - 1)),
        2 => format!("vec![{}, {}]", expr(rng, depth - 1), expr(rng, depth - 1)),
        3 => format!("|x: u64| x * {}", expr(rng, depth - 1)),
        4 => format!(
            "if {} > 3 {{ {} }} else {{ {} }}",
            ident(rng),
            expr(rng, depth - 1),
            expr(rng, depth - 1)
        ),
        5 => format!("{}.iter().map(|v| v.len()).filter(|n| *n > 2).count()", ident(rng)),
        _ => format!("Some({})", expr(rng, depth - 1)),
    }
}

fn method(rng: &mut Rng, out: &mut String) {
    let name = ident(rng);
    writeln!(out, "    /// Computes the {} of the {}.", rng.pick(WORDS), rng.pick(WORDS)).unwrap();
    writeln!(out, "    pub fn {name}(&mut self, input: &[u64], limit: usize) -> Option<u64> {{").unwrap();
    for _ in 0..2 + rng.index(5) {
        let var = ident(rng);
        writeln!(out, "        let {var} = {};", expr(rng, 2)).unwrap();
    }
    writeln!(out, "        for (i, value) in input.iter().enumerate().take(limit) {{").unwrap();
    writeln!(out, "            if *value % {} == 0 {{ continue; }}", 2 + rng.below(9)).unwrap();
    writeln!(out, "            self.total += value.wrapping_mul(i as u64);").unwrap();
    writeln!(out, "        }}").unwrap();
    writeln!(out, "        match input.len() {{").unwrap();
    for k in 0..2 + rng.index(4) {
        writeln!(out, "            {k} => return Some({}),", rng.below(1 << 16)).unwrap();
    }
    writeln!(out, "            n if n > limit => println!(\"{{}} items over {{}}\", n, limit),").unwrap();
    writeln!(out, "            _ => {{}}").unwrap();
    writeln!(out, "        }}").unwrap();
    writeln!(out, "        input.first().copied().map(|f| f + self.total)").unwrap();
    writeln!(out, "    }}\n").unwrap();
}

fn generate(rng: &mut Rng) -> String {
    let mut src =
        String::from("//! Generated module.\n#![allow(dead_code)]\n\nuse std::collections::HashMap;\n\n");
    for i in 0..ITEMS {
        let ty = format!("{}{i}", capitalise(rng.pick(WORDS)));
        writeln!(src, "/// The {} {} of a {}.", rng.pick(WORDS), rng.pick(WORDS), rng.pick(WORDS)).unwrap();
        writeln!(src, "#[derive(Debug, Clone, Default)]\npub struct {ty}<T: Clone> {{").unwrap();
        writeln!(src, "    total: u64,\n    items: Vec<T>,").unwrap();
        for _ in 0..rng.index(6) {
            let field = ident(rng);
            let fty =
                ["u32", "String", "Option<Box<str>>", "HashMap<String, Vec<u8>>", "(u8, i64)"][rng.index(5)];
            writeln!(src, "    pub {field}: {fty},").unwrap();
        }
        writeln!(src, "}}\n").unwrap();
        if rng.chance(40) {
            writeln!(src, "#[derive(Debug, PartialEq)]\npub enum {ty}Kind {{").unwrap();
            for v in 0..2 + rng.index(6) {
                match rng.below(3) {
                    0 => writeln!(src, "    V{v},").unwrap(),
                    1 => writeln!(src, "    V{v}(u32, String),").unwrap(),
                    _ => writeln!(src, "    V{v} {{ at: usize, len: usize }},").unwrap(),
                }
            }
            writeln!(src, "}}\n").unwrap();
        }
        writeln!(src, "impl<T: Clone> {ty}<T> {{").unwrap();
        for _ in 0..1 + rng.index(4) {
            method(rng, &mut src);
        }
        writeln!(src, "}}\n").unwrap();
    }
    src
}

fn capitalise(word: &str) -> String {
    let mut c = word.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

/// Counts identifiers and items, keeping every identifier's text as a
/// linter's symbol table would.
#[derive(Default)]
struct Census {
    idents: BTreeMap<String, usize>,
    functions: usize,
    closures: usize,
}

impl<'ast> Visit<'ast> for Census {
    fn visit_ident(&mut self, i: &'ast syn::Ident) {
        *self.idents.entry(i.to_string()).or_default() += 1;
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.functions += 1;
        visit::visit_impl_item_fn(self, f);
    }

    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        self.closures += 1;
        visit::visit_expr_closure(self, c);
    }
}

fn prepare() -> Box<dyn FnMut()> {
    let source = generate(&mut Rng::new(0x73_796e));
    Box::new(move || {
        let file = syn::parse_file(&source).expect("generated Rust parses");
        let mut census = Census::default();
        census.visit_file(&file);
        black_box((&census.idents, census.functions, census.closures));
        drop(census);

        let tokens = file.to_token_stream();
        let printed = tokens.to_string();
        drop(tokens);
        let again = syn::parse_file(&printed).expect("printed Rust parses again");
        assert_eq!(again.items.len(), file.items.len());
        drop((again, printed, file));
    })
}
