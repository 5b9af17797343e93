//! Misuse: a call that breaks the heap contract and that a heap detected and refused.

use core::alloc::Layout;
use core::fmt;

/// What kind of mistake a refused `deallocate` (or resize) was.
///
/// ```
/// use kheap::MisuseKind;
///
/// assert_eq!(MisuseKind::DoubleFree.describe(), "the block is already free (double free)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MisuseKind {
    /// The pointer is null.
    Null,
    /// The pointer lies outside every region of this heap: it was never allocated here.
    Foreign,
    /// The pointer lies in one of the heap's regions but not at the start of a block: an
    /// interior pointer, or one that was never handed out.
    NotBlockStart,
    /// The block is already free: a double free, or a free of a block that was never
    /// handed out.
    DoubleFree,
    /// A block starts at the pointer, but not one of the size and alignment the layout asks
    /// for: the layout is not the one the block was allocated with.
    WrongLayout,
    /// The pointer lies in the heap's own bookkeeping.
    Bookkeeping,
    /// No block of this heap can have the layout given (too large, or aligned beyond what
    /// the heap supports), so the pointer cannot be one of its allocations.
    ImpossibleLayout,
    /// Debug mode: the red zone around the block was overwritten (a write past its end or
    /// before its start); [`Misuse::at`] is the offset of the first changed byte.
    Overrun,
    /// Debug mode: a freed block's poison was overwritten while it waited in quarantine (a write
    /// after free); found when the block left quarantine, so `ptr` is that block, not
    /// necessarily the one the refused call named. [`Misuse::at`] is the first changed byte.
    UseAfterFree,
    /// Debug mode: the block's guard header no longer checks out against the heap's secret
    /// (overwritten by a stray write), while the heap below says a block starts there.
    CorruptedHeader,
    /// Hardened heaps ([`TlsfHeap::hardened`](crate::TlsfHeap::hardened)): the links or size tags
    /// that a free block keeps inside its own memory were overwritten (a write after free, or
    /// past the end of the block before it). `ptr` is where the check failed (the damaged free
    /// block, or the one whose list neighbour is), `layout` that of the call that found it; the
    /// heap did not follow the damaged records, left the caller's block as it was, rebuilt its
    /// free lists from its bit map and set the damaged free memory aside.
    CorruptedFreeBlock,
}

impl MisuseKind {
    /// The mistake in words.
    pub const fn describe(self) -> &'static str {
        match self {
            MisuseKind::Null => "the pointer is null",
            MisuseKind::Foreign => "the pointer is not inside this heap",
            MisuseKind::NotBlockStart => "the pointer is not the start of an allocated block",
            MisuseKind::DoubleFree => "the block is already free (double free)",
            MisuseKind::WrongLayout => "the layout is not the one the block was allocated with",
            MisuseKind::Bookkeeping => "the pointer lies in the heap's own bookkeeping",
            MisuseKind::ImpossibleLayout => "no block of this heap has that layout",
            MisuseKind::Overrun => "the red zone around the block was overwritten (overrun)",
            MisuseKind::UseAfterFree => "a freed block was written to while in quarantine (use after free)",
            MisuseKind::CorruptedHeader => "the block's guard header was overwritten",
            MisuseKind::CorruptedFreeBlock => {
                "a free block's links or size tags were overwritten (write after free or overrun)"
            }
        }
    }

    /// The state of the block at the pointer, as far as the kind says: for a report.
    ///
    /// ```
    /// assert_eq!(kheap::MisuseKind::Overrun.block_state(), "allocated");
    /// ```
    pub const fn block_state(self) -> &'static str {
        match self {
            MisuseKind::Null | MisuseKind::Foreign | MisuseKind::ImpossibleLayout => "no block",
            MisuseKind::NotBlockStart => "not a block start",
            MisuseKind::DoubleFree => "free",
            MisuseKind::WrongLayout | MisuseKind::Overrun => "allocated",
            MisuseKind::UseAfterFree => "freed, in quarantine",
            MisuseKind::Bookkeeping => "bookkeeping",
            MisuseKind::CorruptedHeader => "unknown (header overwritten)",
            MisuseKind::CorruptedFreeBlock => "free, damaged",
        }
    }
}

/// A detected misuse, refused by the heap, which is left unchanged.
///
/// Names the call's pointer and layout and, where the heap knows it, the block it found at
/// that address, so that a report can point at the mistake.
///
/// ```
/// use core::alloc::Layout;
/// use kheap::{BuddyHeap, Counted, MisuseKind, RawHeap};
///
/// let memory: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
/// let mut heap = BuddyHeap::new();
/// // SAFETY: the leaked buffer lives for ever and only the heap uses it.
/// unsafe { heap.add_region(core::ptr::NonNull::from(memory)) }.unwrap();
/// let layout = Layout::new::<[u64; 2]>();
/// let block = heap.allocate(layout).unwrap().cast::<u8>();
/// // SAFETY: live, with its layout.
/// unsafe { heap.deallocate(block, layout) }.unwrap();
/// // A second free is refused, named, and changes nothing. (Not UB here only because the heap
/// // detects it exactly; `deallocate`'s obligations still forbid it.)
/// // SAFETY: see above: BuddyHeap detects every double free.
/// let misuse = unsafe { heap.deallocate(block, layout) }.unwrap_err();
/// assert_eq!(misuse.kind, MisuseKind::DoubleFree);
/// assert!(misuse.to_string().contains("double free"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Misuse {
    /// What is wrong.
    pub kind: MisuseKind,
    /// The pointer the caller passed.
    pub ptr: *const u8,
    /// The layout the caller passed.
    pub layout: Layout,
    /// The block the heap found at `ptr` (its size and alignment), when it found one: in debug
    /// mode, the layout the block was allocated with.
    pub found: Option<Layout>,
    /// Debug mode: the offset from `ptr` of the first overwritten guard or poison byte
    /// (negative: before the block), when the report is about one.
    pub at: Option<isize>,
}

// SAFETY: `ptr` is only an address to print; a `Misuse` never dereferences it.
unsafe impl Send for Misuse {}
// SAFETY: as above; shared access reads only the address.
unsafe impl Sync for Misuse {}

impl Misuse {
    /// A misuse of `kind` by a call with `ptr` and `layout`.
    #[cold]
    pub const fn new(kind: MisuseKind, ptr: *const u8, layout: Layout) -> Self {
        Misuse { kind, ptr, layout, found: None, at: None }
    }

    /// The same misuse, with the block the heap found at the pointer.
    #[cold]
    pub const fn found(mut self, block: Layout) -> Self {
        self.found = Some(block);
        self
    }

    /// The same misuse, naming the first overwritten byte, `offset` bytes from `ptr`.
    #[cold]
    pub const fn at(mut self, offset: isize) -> Self {
        self.at = Some(offset);
        self
    }
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == MisuseKind::CorruptedFreeBlock {
            // Found by some call, not caused by it: name the damaged block first.
            return write!(
                f,
                "kheap: the free block at {:p} is damaged: {}; found serving a call with size {}, align {}",
                self.ptr,
                self.kind.describe(),
                self.layout.size(),
                self.layout.align()
            );
        }
        write!(
            f,
            "kheap: deallocate({:p}, size {}, align {}): {}",
            self.ptr,
            self.layout.size(),
            self.layout.align(),
            self.kind.describe()
        )?;
        if let Some(block) = self.found {
            write!(f, "; the block there has size {} and align {}", block.size(), block.align())?;
        }
        if let Some(at) = self.at {
            let side = if at < 0 { "before the block" } else { "counted from the block's start" };
            write!(f, "; first bad byte at offset {at} ({side})")?;
        }
        write!(f, "; block state: {}", self.kind.block_state())
    }
}

impl core::error::Error for Misuse {}
