//! petgraph: build a random road-network-like weighted graph and run the
//! library's classic algorithms on it.

use std::hint::black_box;

use petgraph::algo::{
    condensation, connected_components, dijkstra, kosaraju_scc, min_spanning_tree, tarjan_scc, toposort,
};
use petgraph::data::FromElements;
use petgraph::graph::{DiGraph, NodeIndex, UnGraph};
use petgraph::graphmap::DiGraphMap;
use petgraph::stable_graph::StableDiGraph;

use super::{Rng, Workload};

pub const WORKLOAD: Workload = Workload {
    name: "graph",
    krate: "petgraph",
    what: "builds a random directed graph (20000 nodes, 70000 weighted edges, mostly local) edge by edge, \
           runs Dijkstra from 4 sources, Tarjan and Kosaraju SCC, condensation + toposort, an undirected \
           copy's connected components and minimum spanning tree, then a StableGraph of the same edges with \
           5000 random node removals (repeats are no-ops) and edge re-insertions, and a GraphMap of the \
           edges among the first 4000 nodes with Dijkstra",
    prepare,
};

const NODES: usize = 20_000;
const EDGES: usize = 70_000;

fn prepare() -> Box<dyn FnMut()> {
    let mut rng = Rng::new(0x67_7261_7068);
    // Mostly short edges (neighbouring ids) plus some long ones, like a road
    // network with highways: gives a few large SCCs and many small ones.
    let edges: Vec<(u32, u32, u32)> = (0..EDGES)
        .map(|_| {
            let a = rng.index(NODES);
            let b = if rng.chance(85) { (a + 1 + rng.index(20)) % NODES } else { rng.index(NODES) };
            let b = if rng.chance(45) { (a + NODES - 1 - rng.index(20)) % NODES } else { b };
            (a as u32, b as u32, 1 + rng.below(100) as u32)
        })
        .collect();
    let removals: Vec<usize> = (0..5000).map(|_| rng.index(NODES)).collect();
    Box::new(move || {
        let mut g: DiGraph<u32, u32> = DiGraph::new();
        for i in 0..NODES {
            g.add_node(i as u32);
        }
        for &(a, b, w) in &edges {
            g.add_edge(NodeIndex::new(a as usize), NodeIndex::new(b as usize), w);
        }

        for source in [0, NODES / 4, NODES / 2, NODES - 1] {
            let distances = dijkstra(&g, NodeIndex::new(source), None, |e| *e.weight());
            black_box(distances);
        }
        black_box(tarjan_scc(&g));
        black_box(kosaraju_scc(&g));
        let dag = condensation(g.clone(), true);
        black_box(toposort(&dag, None).expect("a condensation is acyclic"));
        drop(dag);

        let ug: UnGraph<u32, u32> = g.clone().into_edge_type();
        black_box(connected_components(&ug));
        let mst: UnGraph<u32, u32> = UnGraph::from_elements(min_spanning_tree(&ug));
        black_box(mst.edge_count());
        drop((mst, ug));

        // A StableGraph keeps indices valid across removals (free-list reuse).
        let mut sg: StableDiGraph<u32, u32> = StableDiGraph::new();
        let ids: Vec<_> = (0..NODES as u32).map(|i| sg.add_node(i)).collect();
        for &(a, b, w) in &edges {
            sg.add_edge(ids[a as usize], ids[b as usize], w);
        }
        for &r in &removals {
            sg.remove_node(ids[r]);
        }
        for &(a, b, w) in edges.iter().take(10_000) {
            let (a, b) = (ids[a as usize], ids[b as usize]);
            if sg.contains_node(a) && sg.contains_node(b) {
                sg.add_edge(a, b, w);
            }
        }
        black_box(tarjan_scc(&sg));
        drop((sg, ids));

        // GraphMap: nodes are keys in a hash map, edges in another.
        let mut gm: DiGraphMap<u32, u32> = DiGraphMap::new();
        for &(a, b, w) in &edges {
            if (a as usize) < 4000 && (b as usize) < 4000 {
                gm.add_edge(a, b, w);
            }
        }
        black_box(dijkstra(&gm, 0, None, |(_, _, w)| *w));
        drop(gm);
        drop(g);
    })
}
