//! rhai: an embedded scripting engine running a data-processing script with
//! strings, arrays, object maps, closures and script functions.

use std::hint::black_box;

use rhai::{Engine, INT};

use super::Workload;

pub const WORKLOAD: Workload = Workload {
    name: "rhai",
    krate: "rhai",
    what: "creates an Engine, compiles and runs a script that builds 1250 object-map records with string \
           names and tag arrays, indexes them by tag in a map of arrays, filters/maps/reduces/sorts them \
           with closures (one capturing a variable), builds and splits report strings, and runs a \
           recursive script function",
    prepare,
};

/// The script. Written for this recorder; only the engine is third-party.
const SCRIPT: &str = r#"
fn make_record(i) {
    #{
        id: i,
        name: "item-" + i + "-" + ["red", "green", "blue", "amber"][i % 4],
        tags: ["t" + (i % 7), "g" + (i % 13), "s" + (i % 3)],
        score: (i * 37) % 101,
        history: [],
    }
}

fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }

let records = [];
for i in 0..RECORDS {
    records.push(make_record(i));
}

// Index by tag: a map of arrays that grow.
let by_tag = #{};
for r in records {
    for t in r.tags {
        if t in by_tag {
            by_tag[t].push(r.id);
        } else {
            by_tag[t] = [r.id];
        }
    }
}

// Closures, one capturing `scale` from the enclosing scope.
let scale = 3;
let scaled = records.map(|r| r.score * scale);
let top = records.filter(|r| r.score > 80).map(|r| r.name.to_upper());
let total = scaled.reduce(|sum, v| sum + v, 0);
scaled.sort(|a, b| b - a);

// Several passes that append to each record's history and rebuild strings.
for pass in 0..4 {
    // Indexing (not a `for` over the array, which iterates over copies)
    // edits the records in place.
    for i in 0..records.len() {
        records[i].history.push("pass " + pass + ": " + records[i].score);
        if records[i].history.len() > 2 {
            records[i].history.remove(0);
        }
        records[i].score = (records[i].score * 7 + pass) % 101;
    }
}

let report = "";
for name in top {
    report += name + ";";
}
let parts = report.split(";");
let lengths = parts.map(|p| p.len);

let summary = #{};
for key in by_tag.keys() {
    summary[key] = `${key}: ${by_tag[key].len()} records`;
}
let lines = [];
for key in summary.keys() {
    lines.push(summary[key]);
}
lines.sort();

total + lengths.len() + lines.len() + fib(18)
"#;

const RECORDS: INT = 1250;

fn prepare() -> Box<dyn FnMut()> {
    Box::new(|| {
        let engine = Engine::new();
        let mut scope = rhai::Scope::new();
        scope.push_constant("RECORDS", RECORDS);
        let ast = engine.compile_with_scope(&scope, SCRIPT).expect("script compiles");
        let result: INT = engine.eval_ast_with_scope(&mut scope, &ast).expect("script runs");
        black_box(result);
    })
}
