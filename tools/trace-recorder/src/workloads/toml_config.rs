//! toml: a configuration round trip. A generated fleet configuration with
//! thousands of tables is parsed into the document model and into typed
//! structs (serde), edited, serialized, parsed again and compared.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;

use serde::{Deserialize, Serialize};

use super::{Rng, Workload, WORDS};

pub const WORKLOAD: Workload = Workload {
    name: "toml",
    krate: "toml",
    what: "round trip of a generated ~470 KB fleet configuration (1500 [[servers]] array tables with nested \
           limits and label tables, 400 dependency inline tables, datetimes): parse to toml::Table, \
           deserialize to typed structs with serde, edit, serialize with to_string, parse back and compare, \
           then pretty-print the Table",
    prepare,
};

const SERVERS: usize = 1500;
const DEPENDENCIES: usize = 400;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Config {
    title: String,
    owner: Owner,
    servers: Vec<Server>,
    dependencies: BTreeMap<String, Dependency>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Owner {
    name: String,
    emails: Vec<String>,
    since: toml::value::Datetime,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Server {
    name: String,
    address: String,
    ports: Vec<u16>,
    enabled: bool,
    weight: f64,
    started: toml::value::Datetime,
    limits: Limits,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Limits {
    cpus: u32,
    memory: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_files: Option<u64>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Dependency {
    version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    features: Vec<String>,
    #[serde(default)]
    optional: bool,
}

fn generate(rng: &mut Rng) -> String {
    let mut t = String::new();
    t.push_str("# Generated fleet configuration\ntitle = \"fleet \\\"east\\\" config\"\n\n");
    t.push_str("[owner]\nname = \"Operations\"\nemails = [\"ops@example.org\", \"oncall@example.org\"]\n");
    t.push_str("since = 2019-05-27T07:32:00Z\n\n");
    for i in 0..SERVERS {
        t.push_str("[[servers]]\n");
        writeln!(t, "name = \"{}-{i:05}\"", rng.pick(WORDS)).unwrap();
        writeln!(t, "address = \"10.{}.{}.{}\"", rng.below(256), rng.below(256), rng.below(256)).unwrap();
        let ports: Vec<String> =
            (0..1 + rng.index(6)).map(|_| (1024 + rng.below(60000)).to_string()).collect();
        writeln!(t, "ports = [{}]", ports.join(", ")).unwrap();
        writeln!(t, "enabled = {}", rng.chance(80)).unwrap();
        writeln!(t, "weight = {}.{}", rng.below(10), rng.below(1000)).unwrap();
        writeln!(
            t,
            "started = 20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            10 + rng.below(15),
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60)
        )
        .unwrap();
        t.push_str("\n[servers.limits]\n");
        writeln!(t, "cpus = {}", 1 << rng.below(7)).unwrap();
        writeln!(t, "memory = \"{}GiB\"", 1 << rng.below(9)).unwrap();
        if rng.chance(50) {
            writeln!(t, "open_files = {}", 1024 * (1 + rng.below(64))).unwrap();
        }
        t.push_str("\n[servers.labels]\n");
        for l in 0..rng.index(8) {
            writeln!(t, "{}-{l} = \"{} {}\"", rng.pick(WORDS), rng.pick(WORDS), rng.below(1000)).unwrap();
        }
        t.push('\n');
    }
    t.push_str("[dependencies]\n");
    for i in 0..DEPENDENCIES {
        let name = format!("{}-{}-{i}", rng.pick(WORDS), rng.pick(WORDS));
        let version = format!("{}.{}.{}", rng.below(3), rng.below(30), rng.below(20));
        match rng.below(3) {
            0 => writeln!(t, "{name} = {{ version = \"{version}\" }}").unwrap(),
            1 => {
                let features: Vec<String> =
                    (0..1 + rng.index(4)).map(|_| format!("\"{}\"", rng.pick(WORDS))).collect();
                writeln!(t, "{name} = {{ version = \"{version}\", features = [{}] }}", features.join(", "))
                    .unwrap()
            }
            _ => writeln!(t, "{name} = {{ version = \"{version}\", optional = true }}").unwrap(),
        }
    }
    t
}

fn prepare() -> Box<dyn FnMut()> {
    let text = generate(&mut Rng::new(0x746f_6d6c));
    Box::new(move || {
        // The document model, as a tool that edits unknown keys would use.
        let table: toml::Table = text.parse().expect("generated TOML parses");
        black_box(&table);

        // Typed configuration, as an application loads it.
        let mut config: Config = toml::from_str(&text).expect("generated TOML matches the structs");
        for (i, server) in config.servers.iter_mut().enumerate() {
            server.weight *= 0.5;
            if i % 3 == 0 {
                server.labels.insert("rebalanced".to_string(), format!("pass {i}"));
            }
            if i % 7 == 0 {
                server.ports.push(8080);
            }
        }
        config.dependencies.retain(|name, _| !name.starts_with("the-"));
        let written = toml::to_string(&config).expect("config serializes");
        let back: Config = toml::from_str(&written).expect("written TOML parses back");
        assert_eq!(back, config);
        drop((back, config));

        let pretty = toml::to_string_pretty(&table).expect("table serializes");
        black_box(&pretty);
        drop((pretty, written, table));
    })
}
