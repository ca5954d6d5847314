//! A global allocator that keeps freed large blocks for the next allocation of the same
//! size, so a training loop stops paying the kernel for fresh pages every step.
//!
//! candle gives every op's output a new `Vec`, and its backward pass adds each gradient to
//! a new zero tensor. Blocks above glibc's mmap threshold (at most 32 MiB) are fresh
//! `mmap` pages every time: each 4 KiB page costs a page fault and a kernel zero-fill on
//! first touch, and `munmap` gives them back at the end. A training step allocates the
//! same sizes in the same order every time, so keeping the freed blocks of a few sizes and
//! handing them out again removes almost all of that work (measured: about 30% of the
//! samples of a SimCLR step were in page-fault paths).
//!
//! Only blocks of at least [`ReusingAllocator::MIN_CACHED_BYTES`] are kept, at most
//! [`SLOTS`] of them and never more bytes than the limit given to
//! [`ReusingAllocator::new`]; the oldest kept block is freed first when space runs out.
//! Reuse needs the exact size and alignment the block was made with. A binary opts in with
//! `#[global_allocator] static ALLOCATOR: ReusingAllocator = ReusingAllocator::new(LIMIT);`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::{self, NonNull};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many freed blocks are kept at most.
pub const SLOTS: usize = 64;

/// A kept block: where it is and the layout it was allocated with.
#[derive(Clone, Copy)]
struct Block {
    start: NonNull<u8>,
    size: usize,
    align: usize,
}

/// Kept blocks, oldest first (a fixed array: the allocator must not allocate itself).
struct Cache {
    blocks: [Option<Block>; SLOTS],
    len: usize,
    bytes: usize,
}

// SAFETY: a kept block is owned by the cache alone (nobody else holds its pointer), so
// moving the cache between threads is as safe as moving a `Box`.
unsafe impl Send for Cache {}

impl Cache {
    /// Takes out the newest kept block with exactly this size and alignment (the one most
    /// likely to be still in the CPU caches).
    fn take(&mut self, size: usize, align: usize) -> Option<Block> {
        let index = self.blocks[..self.len]
            .iter()
            .rposition(|b| b.is_some_and(|b| b.size == size && b.align == align))?;
        let block = self.remove(index);
        Some(block)
    }

    fn remove(&mut self, index: usize) -> Block {
        let block = self.blocks[index].take().expect("slot below len is filled");
        self.blocks.copy_within(index + 1..self.len, index);
        self.len -= 1;
        self.blocks[self.len] = None;
        self.bytes -= block.size;
        block
    }

    fn push(&mut self, block: Block) {
        self.blocks[self.len] = Some(block);
        self.len += 1;
        self.bytes += block.size;
    }
}

/// The system allocator with a cache of freed large blocks (see the module docs).
pub struct ReusingAllocator {
    limit_bytes: AtomicUsize,
    cache: Mutex<Cache>,
    reused: AtomicUsize,
}

impl ReusingAllocator {
    /// Blocks smaller than this go straight to the system allocator, whose own free lists
    /// already reuse them.
    pub const MIN_CACHED_BYTES: usize = 1 << 20;

    /// An allocator that keeps at most `limit_bytes` of freed blocks.
    pub const fn new(limit_bytes: usize) -> Self {
        Self {
            limit_bytes: AtomicUsize::new(limit_bytes),
            cache: Mutex::new(Cache {
                blocks: [None; SLOTS],
                len: 0,
                bytes: 0,
            }),
            reused: AtomicUsize::new(0),
        }
    }

    /// Changes the limit on kept bytes (0 turns reuse off), freeing kept blocks beyond it.
    /// For comparisons in one process, such as the per-layer benchmark's.
    pub fn set_limit_bytes(&self, limit_bytes: usize) {
        self.limit_bytes.store(limit_bytes, Ordering::Relaxed);
        loop {
            let evicted = {
                let mut cache = self.lock();
                if cache.bytes <= limit_bytes || cache.len == 0 {
                    break;
                }
                cache.remove(0)
            };
            // SAFETY: kept blocks came from `System` with exactly this size and alignment.
            unsafe { free(evicted) };
        }
    }

    /// How many allocations were served from kept blocks so far.
    pub fn reused_blocks(&self) -> usize {
        self.reused.load(Ordering::Relaxed)
    }

    /// How many bytes of freed blocks are kept now.
    pub fn kept_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Nothing panics while the lock is held, but a poisoned cache is still consistent.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, layout: Layout) -> bool {
        let limit_bytes = self.limit_bytes.load(Ordering::Relaxed);
        layout.size() >= Self::MIN_CACHED_BYTES && layout.size() <= limit_bytes
    }

    fn take(&self, layout: Layout) -> Option<NonNull<u8>> {
        let block = self.lock().take(layout.size(), layout.align())?;
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(block.start)
    }
}

// SAFETY: every pointer handed out comes from `System` with the caller's exact layout
// (kept blocks are only reused for that same size and alignment), and every pointer given
// back to `System` is freed with the layout it was allocated with.
unsafe impl GlobalAlloc for ReusingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.cached(layout)
            && let Some(start) = self.take(layout)
        {
            return start.as_ptr();
        }
        // SAFETY: the caller's layout has a non-zero size, as `alloc` requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.cached(layout)
            && let Some(start) = self.take(layout)
        {
            // SAFETY: the block is `layout.size()` bytes long and now ours alone.
            unsafe { ptr::write_bytes(start.as_ptr(), 0, layout.size()) };
            return start.as_ptr();
        }
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, start: *mut u8, layout: Layout) {
        let Some(start_nonnull) = NonNull::new(start).filter(|_| self.cached(layout)) else {
            // SAFETY: `start` came from `System` with this layout.
            unsafe { System.dealloc(start, layout) };
            return;
        };

        let block = Block {
            start: start_nonnull,
            size: layout.size(),
            align: layout.align(),
        };
        let limit_bytes = self.limit_bytes.load(Ordering::Relaxed);
        let mut evicted = [None; SLOTS];
        let mut evicted_count = 0;
        {
            let mut cache = self.lock();
            while cache.len > 0 && (cache.len == SLOTS || cache.bytes + block.size > limit_bytes) {
                evicted[evicted_count] = Some(cache.remove(0));
                evicted_count += 1;
            }
            cache.push(block);
        }

        // Freed outside the lock so other threads are not held up by `munmap`.
        for old in evicted.into_iter().flatten() {
            // SAFETY: kept blocks came from `System` with exactly this size and alignment.
            unsafe { free(old) };
        }
    }
}

/// Gives a kept block back to the system allocator.
///
/// # Safety
/// `block` must have come from `System` with its size and alignment, and nobody may use
/// it afterwards.
unsafe fn free(block: Block) {
    // SAFETY: the caller's promise; the layout is the one the block was made with.
    unsafe {
        System.dealloc(
            block.start.as_ptr(),
            Layout::from_size_align_unchecked(block.size, block.align),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn layout(bytes: usize) -> Layout {
        Layout::from_size_align(bytes, 64).unwrap()
    }

    #[test]
    fn a_freed_large_block_is_handed_out_again_for_the_same_size_and_zeroed_on_request() {
        let allocator = ReusingAllocator::new(16 * MIB);
        unsafe {
            let first = allocator.alloc(layout(2 * MIB));
            first.write_bytes(0xAB, 2 * MIB);
            allocator.dealloc(first, layout(2 * MIB));
            assert_eq!(allocator.kept_bytes(), 2 * MIB);

            let second = allocator.alloc_zeroed(layout(2 * MIB));
            assert_eq!(second, first);
            assert_eq!(allocator.reused_blocks(), 1);
            assert_eq!(allocator.kept_bytes(), 0);
            let bytes = std::slice::from_raw_parts(second, 2 * MIB);
            assert!(bytes.iter().all(|&b| b == 0));
            allocator.dealloc(second, layout(2 * MIB));
        }
    }

    #[test]
    fn other_sizes_alignments_and_small_blocks_are_not_reused() {
        let allocator = ReusingAllocator::new(16 * MIB);
        unsafe {
            let block = allocator.alloc(layout(2 * MIB));
            allocator.dealloc(block, layout(2 * MIB));

            let bigger = allocator.alloc(layout(3 * MIB));
            let other_align = allocator.alloc(Layout::from_size_align(2 * MIB, 128).unwrap());
            assert_eq!(allocator.reused_blocks(), 0);

            let small = allocator.alloc(layout(1024));
            allocator.dealloc(small, layout(1024));
            assert_eq!(allocator.kept_bytes(), 2 * MIB);

            allocator.dealloc(bigger, layout(3 * MIB));
            allocator.dealloc(other_align, Layout::from_size_align(2 * MIB, 128).unwrap());
        }
    }

    #[test]
    fn kept_bytes_never_exceed_the_limit_and_the_oldest_block_goes_first() {
        let allocator = ReusingAllocator::new(5 * MIB);
        unsafe {
            let blocks: Vec<_> = (0..3).map(|_| allocator.alloc(layout(2 * MIB))).collect();
            for &block in &blocks {
                allocator.dealloc(block, layout(2 * MIB));
                assert!(allocator.kept_bytes() <= 5 * MIB);
            }
            assert_eq!(allocator.kept_bytes(), 4 * MIB);

            // The first block was evicted; the two later ones come back, newest first.
            assert_eq!(allocator.alloc(layout(2 * MIB)), blocks[2]);
            assert_eq!(allocator.alloc(layout(2 * MIB)), blocks[1]);
            allocator.dealloc(blocks[1], layout(2 * MIB));
            allocator.dealloc(blocks[2], layout(2 * MIB));

            // A block larger than the whole limit is never kept.
            let huge = allocator.alloc(layout(6 * MIB));
            allocator.dealloc(huge, layout(6 * MIB));
            assert_eq!(allocator.kept_bytes(), 4 * MIB);
        }
    }

    #[test]
    fn no_more_than_the_slot_count_of_blocks_is_kept() {
        let allocator = ReusingAllocator::new(usize::MAX);
        unsafe {
            let blocks: Vec<_> = (0..SLOTS + 3)
                .map(|_| allocator.alloc(layout(MIB)))
                .collect();
            for &block in &blocks {
                allocator.dealloc(block, layout(MIB));
            }
            assert_eq!(allocator.kept_bytes(), SLOTS * MIB);

            // Lowering the limit frees kept blocks; at 0 nothing is kept or reused.
            allocator.set_limit_bytes(3 * MIB);
            assert_eq!(allocator.kept_bytes(), 3 * MIB);
            allocator.set_limit_bytes(0);
            assert_eq!(allocator.kept_bytes(), 0);
            let block = allocator.alloc(layout(MIB));
            allocator.dealloc(block, layout(MIB));
            assert_eq!(allocator.kept_bytes(), 0);
        }
    }
}
