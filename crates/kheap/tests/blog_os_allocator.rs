//! Blog OS's heap setup (`src/allocator.rs` as the "Heap Allocation" post builds it, from the
//! post's text at blog_os commit 1132d7a: linked_list_allocator 0.9's `init(usize, usize)`,
//! x86_64 0.15), compiled
//! unchanged but for its `use linked_list_allocator::LockedHeap;` line, which now names
//! kheap's drop-in, then Blog OS's heap tests (`tests/heap_allocation.rs`) run against it.
//!
//! What is not Blog OS's: the `x86_64` crate's paging types are stubbed below (as little as the
//! file needs) by a host "mapper" that maps each page at its virtual address with `mmap`, so
//! `HEAP_START` (0x4444_4444_0000) is real memory in this test process; and
//! `#[global_allocator]` is left to a kernel build (the test harness keeps the system
//! allocator, which runs before `init_heap` can), so the tests call the allocator directly.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]
// The file is kept verbatim, so its lints are allowed rather than fixed.
#![allow(missing_docs, clippy::undocumented_unsafe_blocks, dead_code)]

// Blog OS's `src/allocator.rs`, heap part, verbatim but for the `use` line of the allocator
// and the `#[global_allocator]` attribute (commented out, see above). Included at the crate
// root, as in a kernel, so its `use x86_64::...` finds the stub below.
include!("blog_os/allocator.rs");

/// The few `x86_64` crate items the file uses, with the crate's signatures; mapping is done by
/// the host (see the file's header).
mod x86_64 {
    use core::ops::{Add, Sub};

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct VirtAddr(u64);

    impl VirtAddr {
        pub fn new(addr: u64) -> VirtAddr {
            VirtAddr(addr)
        }
    }

    impl Add<u64> for VirtAddr {
        type Output = VirtAddr;
        fn add(self, rhs: u64) -> VirtAddr {
            VirtAddr(self.0 + rhs)
        }
    }

    impl Sub<u64> for VirtAddr {
        type Output = VirtAddr;
        fn sub(self, rhs: u64) -> VirtAddr {
            VirtAddr(self.0 - rhs)
        }
    }

    pub mod structures {
        pub mod paging {
            use core::marker::PhantomData;

            use super::super::VirtAddr;

            #[derive(Clone, Copy, Debug)]
            pub struct Size4KiB;

            #[derive(Clone, Copy, Debug)]
            pub struct Page<S = Size4KiB>(pub u64, PhantomData<S>);

            impl Page<Size4KiB> {
                pub fn containing_address(addr: VirtAddr) -> Self {
                    Page(addr.0 & !0xfff, PhantomData)
                }

                pub fn range_inclusive(start: Self, end: Self) -> impl Iterator<Item = Self> {
                    (start.0..=end.0).step_by(4096).map(|a| Page(a, PhantomData))
                }
            }

            #[derive(Clone, Copy, Debug)]
            pub struct PhysFrame<S = Size4KiB>(pub u64, PhantomData<S>);

            impl PhysFrame<Size4KiB> {
                pub fn number(n: u64) -> Self {
                    PhysFrame(n, PhantomData)
                }
            }

            #[derive(Clone, Copy, Debug)]
            pub struct PageTableFlags(u64);

            impl PageTableFlags {
                pub const PRESENT: PageTableFlags = PageTableFlags(1);
                pub const WRITABLE: PageTableFlags = PageTableFlags(2);
            }

            impl core::ops::BitOr for PageTableFlags {
                type Output = PageTableFlags;
                fn bitor(self, rhs: Self) -> Self {
                    PageTableFlags(self.0 | rhs.0)
                }
            }

            /// # Safety
            ///
            /// Returned frames are unused.
            pub unsafe trait FrameAllocator<S> {
                fn allocate_frame(&mut self) -> Option<PhysFrame<S>>;
            }

            pub struct MapperFlush<S>(PhantomData<S>);

            impl<S> MapperFlush<S> {
                pub fn new() -> Self {
                    MapperFlush(PhantomData)
                }

                pub fn flush(self) {}
            }

            pub trait Mapper<S> {
                /// # Safety
                ///
                /// The caller makes sure the mapping breaks no memory safety.
                unsafe fn map_to<A: FrameAllocator<Size4KiB> + ?Sized>(
                    &mut self,
                    page: Page<S>,
                    frame: PhysFrame<S>,
                    flags: PageTableFlags,
                    frame_allocator: &mut A,
                ) -> Result<MapperFlush<S>, mapper::MapToError<S>>;
            }

            pub mod mapper {
                #[derive(Debug)]
                pub enum MapToError<S> {
                    FrameAllocationFailed,
                    ParentEntryHugePage,
                    PageAlreadyMapped(super::PhysFrame<S>),
                }
            }
        }
    }
}

use x86_64::structures::paging::{MapperFlush, PhysFrame};

/// Maps each page at its own address in this process, with `mmap`.
struct HostMapper;

extern "C" {
    fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, offset: i64) -> *mut u8;
}

impl Mapper<Size4KiB> for HostMapper {
    unsafe fn map_to<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size4KiB>,
        frame: PhysFrame<Size4KiB>,
        _flags: PageTableFlags,
        _frame_allocator: &mut A,
    ) -> Result<MapperFlush<Size4KiB>, MapToError<Size4KiB>> {
        const PROT_READ_WRITE: i32 = 1 | 2;
        const MAP_PRIVATE_ANONYMOUS_FIXED_NOREPLACE: i32 = 0x02 | 0x20 | 0x10_0000;
        let at = std::ptr::without_provenance_mut::<u8>(page.0 as usize);
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; a fresh anonymous page
        // touches nothing of this process.
        let mapped = unsafe { mmap(at, 4096, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS_FIXED_NOREPLACE, -1, 0) };
        if mapped != at {
            return Err(MapToError::PageAlreadyMapped(frame));
        }
        Ok(MapperFlush::new())
    }
}

/// Hands out frame numbers, up to a limit.
struct Frames(u64);

// SAFETY: the numbers are never handed out twice (and the host mapper ignores them).
unsafe impl FrameAllocator<Size4KiB> for Frames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.0 = self.0.checked_sub(1)?;
        Some(PhysFrame::number(self.0))
    }
}

use core::alloc::{GlobalAlloc, Layout};

/// Blog OS's `tests/heap_allocation.rs`, through the allocator directly: a `Box<u64>`, a vector
/// of 1000 `u64` grown by doubling, `HEAP_SIZE` boxes freed in turn, and the same while one long
/// lived box stays. Each allocation's bytes are written and read back.
fn heap_allocation_tests() {
    let alloc = |layout: Layout| {
        // SAFETY: non-zero sizes.
        let p = unsafe { ALLOCATOR.alloc(layout) };
        assert!(!p.is_null(), "{layout:?} refused");
        assert!((HEAP_START..HEAP_START + HEAP_SIZE).contains(&(p as usize)));
        // SAFETY: the block holds `layout.size()` bytes.
        unsafe { p.write_bytes(0x5a, layout.size()) };
        p
    };
    // SAFETY: each block is freed once, with its layout.
    let free = |p: *mut u8, layout: Layout| unsafe { ALLOCATOR.dealloc(p, layout) };

    let boxed = Layout::new::<u64>();
    let (a, b) = (alloc(boxed), alloc(boxed));
    assert_ne!(a, b);
    free(a, boxed);
    free(b, boxed);

    let mut capacity = 4;
    let mut vec = alloc(Layout::array::<u64>(capacity).unwrap());
    while capacity < 1000 {
        let grown = alloc(Layout::array::<u64>(capacity * 2).unwrap());
        free(vec, Layout::array::<u64>(capacity).unwrap());
        (vec, capacity) = (grown, capacity * 2);
    }
    free(vec, Layout::array::<u64>(capacity).unwrap());

    let long_lived = alloc(boxed);
    for _ in 0..HEAP_SIZE {
        let x = alloc(boxed);
        free(x, boxed);
    }
    // SAFETY: written with 0x5a above and not freed.
    assert_eq!(unsafe { long_lived.read() }, 0x5a);
    free(long_lived, boxed);
}

#[test]
fn blog_os_init_heap_runs_unchanged_on_kheap() {
    init_heap(&mut HostMapper, &mut Frames(1000)).expect("init_heap failed");
    {
        let heap = ALLOCATOR.lock();
        assert_eq!((heap.bottom() as usize, heap.size()), (HEAP_START, HEAP_SIZE));
        assert_eq!(heap.top() as usize, HEAP_START + HEAP_SIZE);
        assert_eq!(heap.used(), 0);
        assert!(heap.free() > HEAP_SIZE * 9 / 10, "free: {}", heap.free());
    }
    heap_allocation_tests();
    assert_eq!(ALLOCATOR.lock().used(), 0);
    ALLOCATOR.check_invariants().unwrap();

    // `extend`, as a Blog OS kernel grows its heap: map the next pages, then extend by them.
    let mut mapper = HostMapper;
    let next = Page::containing_address(x86_64::VirtAddr::new((HEAP_START + HEAP_SIZE) as u64));
    for page in Page::range_inclusive(
        next,
        Page::containing_address(x86_64::VirtAddr::new((HEAP_START + 2 * HEAP_SIZE - 1) as u64)),
    ) {
        // SAFETY: the host mapper maps fresh pages only.
        unsafe { mapper.map_to(page, PhysFrame::number(0), PageTableFlags::PRESENT, &mut Frames(1)) }
            .unwrap();
    }
    let before = ALLOCATOR.lock().free();
    // SAFETY: the pages above `top()` were just mapped and nothing else uses them.
    unsafe { ALLOCATOR.lock().extend(HEAP_SIZE) };
    assert_eq!(ALLOCATOR.lock().size(), 2 * HEAP_SIZE);
    assert!(ALLOCATOR.lock().free() > before + HEAP_SIZE * 9 / 10);
    let big = Layout::from_size_align(128 * 1024, 8).unwrap();
    // SAFETY: non-zero size; freed at once.
    unsafe {
        let p = ALLOCATOR.alloc(big);
        assert!(!p.is_null(), "the extended heap has no 128 KiB block");
        ALLOCATOR.dealloc(p, big);
    }
}
