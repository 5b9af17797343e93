//! The collections a kernel gets from `alloc` once a global allocator is installed, each
//! checked against values computed independently of it.

use alloc::collections::{BTreeMap, BTreeSet, LinkedList, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::{ensure, ensure_eq, TestResult};
use crate::config::SEED;
use crate::fnv::FnvBuildHasher;
use crate::rng::Rng;

pub fn string() -> TestResult {
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&i.to_string());
        text.push(',');
    }
    // 10 one-digit, 90 two-digit and 900 three-digit numbers, each with a comma.
    ensure_eq!(text.len(), 10 * 2 + 90 * 3 + 900 * 4);
    let numbers: Vec<usize> =
        text.split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(usize::MAX)).collect();
    ensure_eq!(numbers.len(), 1000);
    ensure!(numbers.iter().enumerate().all(|(i, &n)| i == n), "numbers do not read back in order");
    let shout = format!("{}-{}", "kheap", 42).to_uppercase();
    ensure_eq!(shout.as_str(), "KHEAP-42");
    Ok(())
}

pub fn vec_growth() -> TestResult {
    let mut v: Vec<u64> = Vec::new();
    let mut moves = 0;
    let mut capacity = v.capacity();
    for i in 0..20_000u64 {
        v.push(i * 3);
        if v.capacity() != capacity {
            capacity = v.capacity();
            moves += 1;
        }
    }
    ensure!(moves >= 10, "capacity changed only {moves} times on the way to 20000");
    ensure!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3), "contents changed while growing");
    ensure_eq!(v.iter().sum::<u64>(), 3 * 19_999 * 20_000 / 2);
    v.truncate(10);
    v.shrink_to_fit();
    ensure_eq!(v.as_slice(), &[0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
    Ok(())
}

pub fn vec_deque() -> TestResult {
    let mut queue: VecDeque<i32> = VecDeque::new();
    for i in 0..1000 {
        if i % 2 == 0 {
            queue.push_back(i);
        } else {
            queue.push_front(i);
        }
    }
    // Odd numbers descending at the front, even numbers ascending at the back.
    ensure_eq!(queue.front().copied(), Some(999));
    ensure_eq!(queue.back().copied(), Some(998));
    queue.rotate_left(500);
    ensure_eq!(queue.front().copied(), Some(0));
    let drained: Vec<i32> = queue.drain(..500).collect();
    ensure!(drained.iter().enumerate().all(|(i, &x)| x == 2 * i as i32), "even half out of order");
    ensure_eq!(queue.len(), 500);
    Ok(())
}

pub fn linked_list() -> TestResult {
    let mut list: LinkedList<String> = (0..300).map(|i| format!("node {i}")).collect();
    let mut tail = list.split_off(100);
    ensure_eq!(list.len(), 100);
    ensure_eq!(tail.front().map(String::as_str), Some("node 100"));
    tail.append(&mut list);
    ensure_eq!(tail.len(), 300);
    ensure_eq!(tail.back().map(String::as_str), Some("node 99"));
    ensure!(list.is_empty(), "append left the list non-empty");
    Ok(())
}

pub fn btree_map() -> TestResult {
    let mut rng = Rng::new(SEED, "btree_map");
    let mut map = BTreeMap::new();
    let mut reference: Vec<(u32, u32)> = Vec::new();
    for _ in 0..3000 {
        let key = rng.below(5000) as u32;
        let value = rng.next_u64() as u32;
        map.insert(key, value);
        match reference.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => reference.push((key, value)),
        }
    }
    reference.sort_unstable();
    ensure_eq!(map.len(), reference.len());
    ensure!(
        map.iter().map(|(&k, &v)| (k, v)).eq(reference.iter().copied()),
        "map differs from the sorted reference"
    );
    map.retain(|k, _| k % 2 == 0);
    ensure_eq!(map.len(), reference.iter().filter(|(k, _)| k % 2 == 0).count());
    ensure_eq!(
        map.range(1000..2000).count(),
        reference.iter().filter(|(k, _)| k % 2 == 0 && (1000..2000).contains(k)).count()
    );
    Ok(())
}

pub fn btree_set() -> TestResult {
    let threes: BTreeSet<u32> = (0..3000).step_by(3).collect();
    let fives: BTreeSet<u32> = (0..3000).step_by(5).collect();
    let both: Vec<u32> = threes.intersection(&fives).copied().collect();
    ensure_eq!(both.len(), 200);
    ensure!(both.iter().all(|x| x % 15 == 0), "intersection holds a non-multiple of 15");
    ensure_eq!(threes.union(&fives).count(), 1000 + 600 - 200);
    ensure_eq!(threes.difference(&fives).count(), 800);
    Ok(())
}

pub fn rc_refcell() -> TestResult {
    let shared = Rc::new(RefCell::new(Vec::new()));
    let writers: Vec<Rc<RefCell<Vec<usize>>>> = (0..10).map(|_| Rc::clone(&shared)).collect();
    ensure_eq!(Rc::strong_count(&shared), 11);
    for (i, writer) in writers.iter().enumerate() {
        writer.borrow_mut().extend(i * 10..i * 10 + 10);
    }
    ensure!(shared.borrow().iter().copied().eq(0..100), "writes through clones got lost");
    let weak = Rc::downgrade(&shared);
    drop(writers);
    drop(shared);
    ensure!(weak.upgrade().is_none(), "value outlived its last Rc");
    Ok(())
}

pub fn arc_spin_mutex() -> TestResult {
    let counter = Arc::new(spin::Mutex::new(0u64));
    let handles: Vec<Arc<spin::Mutex<u64>>> = (0..64).map(|_| Arc::clone(&counter)).collect();
    for (i, handle) in handles.iter().enumerate() {
        *handle.lock() += i as u64;
    }
    ensure_eq!(*counter.lock(), 63 * 64 / 2);
    ensure_eq!(Arc::strong_count(&counter), 65);
    drop(handles);
    ensure_eq!(Arc::strong_count(&counter), 1);
    let value = Arc::try_unwrap(counter).map_err(|_| "still shared".to_string())?.into_inner();
    ensure_eq!(value, 2016);
    Ok(())
}

/// The tutorial's "dynamic dictionary": word counts in a `hashbrown::HashMap`.
pub fn hashbrown_dictionary() -> TestResult {
    let mut rng = Rng::new(SEED, "hashbrown");
    let mut dictionary: hashbrown::HashMap<String, usize, FnvBuildHasher> =
        hashbrown::HashMap::with_hasher(FnvBuildHasher);
    let mut reference: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..4000 {
        let word = format!("word{}", rng.below(700));
        *dictionary.entry(word.clone()).or_insert(0) += 1;
        *reference.entry(word).or_insert(0) += 1;
    }
    ensure_eq!(dictionary.len(), reference.len());
    ensure!(
        reference.iter().all(|(word, n)| dictionary.get(word) == Some(n)),
        "a count differs from the BTreeMap reference"
    );
    ensure_eq!(dictionary.values().sum::<usize>(), 4000);
    dictionary.retain(|_, n| *n > 5);
    ensure_eq!(dictionary.len(), reference.values().filter(|&&n| n > 5).count());
    ensure!(dictionary.get("not a word").is_none(), "found a word never inserted");
    Ok(())
}
