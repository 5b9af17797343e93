//! serde_json: an API-style document of orders is parsed into the dynamic
//! `Value` tree and into typed structs, aggregated, and written back out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;

use serde::{Deserialize, Serialize};

use super::{words, Rng, Workload, WORDS};

pub const WORKLOAD: Workload = Workload {
    name: "json",
    krate: "serde_json",
    what: "parses a generated ~1.3 MB JSON API response (2500 orders with customers, line items, tags and \
           free-form metadata) into serde_json::Value and into typed structs, aggregates per customer, \
           edits the Value tree, and serializes both (compact and pretty)",
    prepare,
};

const ORDERS: usize = 2500;

#[derive(Debug, Serialize, Deserialize)]
struct Response {
    page: u32,
    orders: Vec<Order>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: Customer,
    items: Vec<Item>,
    tags: Vec<String>,
    note: Option<String>,
    metadata: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Customer {
    name: String,
    email: String,
    address: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Item {
    sku: String,
    quantity: u32,
    price: f64,
}

fn generate(rng: &mut Rng) -> String {
    let mut j = String::from("{\"page\": 1, \"orders\": [\n");
    for i in 0..ORDERS {
        if i > 0 {
            j.push_str(",\n");
        }
        let customer = rng.below(300);
        write!(
            j,
            "{{\"id\": {}, \"customer\": {{\"name\": \"{} {customer}\", \"email\": \"c{customer}@example.com\", \
             \"address\": [\"{} street {}\", \"{} city\"]}}, \"items\": [",
            100_000 + i,
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.below(200),
            rng.pick(WORDS)
        )
        .unwrap();
        for k in 0..1 + rng.index(8) {
            if k > 0 {
                j.push_str(", ");
            }
            write!(
                j,
                "{{\"sku\": \"{}-{:04}\", \"quantity\": {}, \"price\": {}.{:02}}}",
                rng.pick(WORDS),
                rng.below(10_000),
                1 + rng.below(9),
                rng.below(500),
                rng.below(100)
            )
            .unwrap();
        }
        j.push_str("], \"tags\": [");
        for k in 0..rng.index(5) {
            if k > 0 {
                j.push_str(", ");
            }
            write!(j, "\"{}\"", rng.pick(WORDS)).unwrap();
        }
        j.push_str("], \"note\": ");
        if rng.chance(40) {
            let n = 3 + rng.index(12);
            write!(j, "\"{} \\\"quoted\\\" \\u00e9\"", words(rng, n)).unwrap();
        } else {
            j.push_str("null");
        }
        j.push_str(", \"metadata\": {");
        for k in 0..rng.index(6) {
            if k > 0 {
                j.push_str(", ");
            }
            match rng.below(4) {
                0 => write!(j, "\"m{k}\": {}", rng.below(1 << 40)).unwrap(),
                1 => write!(j, "\"m{k}\": \"{}\"", words(rng, 2)).unwrap(),
                2 => write!(j, "\"m{k}\": [true, false, null, {}.5]", rng.below(100)).unwrap(),
                _ => write!(j, "\"m{k}\": {{\"nested\": {{\"depth\": {}, \"ok\": true}}}}", rng.below(9))
                    .unwrap(),
            }
        }
        j.push_str("}}");
    }
    j.push_str("\n]}\n");
    j
}

fn prepare() -> Box<dyn FnMut()> {
    let text = generate(&mut Rng::new(0x6a73_6f6e));
    Box::new(move || {
        // Dynamic tree: edit it as a proxy or a test fixture rewriter would.
        let mut value: serde_json::Value = serde_json::from_str(&text).expect("generated JSON parses");
        if let Some(orders) = value["orders"].as_array_mut() {
            for order in orders.iter_mut() {
                let items = order["items"].as_array().map_or(0, |a| a.len());
                order["item_count"] = serde_json::Value::from(items);
                if let Some(tags) = order["tags"].as_array_mut() {
                    tags.retain(|t| t != "the");
                }
            }
        }
        let compact = serde_json::to_string(&value).expect("value serializes");
        black_box(&compact);
        drop((value, compact));

        // Typed: aggregate the orders per customer.
        let response: Response = serde_json::from_str(&text).expect("generated JSON matches the structs");
        let mut totals: BTreeMap<&str, (u32, f64, Vec<u64>)> = BTreeMap::new();
        for order in &response.orders {
            let entry = totals.entry(order.customer.email.as_str()).or_default();
            for item in &order.items {
                entry.0 += item.quantity;
                entry.1 += f64::from(item.quantity) * item.price;
            }
            entry.2.push(order.id);
        }
        let pretty = serde_json::to_string_pretty(&totals).expect("totals serialize");
        let again = serde_json::to_vec_pretty(&response).expect("response serializes");
        black_box((&pretty, &again));
        drop((pretty, again, totals));
        drop(response);
    })
}
