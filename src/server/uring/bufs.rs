//! Provided receive buffers: the kernel picks a buffer only when data arrives, so an
//! idle connection owns none (REFERENCE.md section 3: 10k connections x 16 KiB each
//! would be 160 MiB).
//!
//! Two ways to hand buffers to the kernel, one per feature level:
//! - **legacy** (`fastpoll`, 5.7+): IORING_OP_PROVIDE_BUFFERS. A consumed buffer goes
//!   back with one more PROVIDE_BUFFERS SQE (no extra syscall: it rides the next enter).
//! - **ring** (`multishot`/`full`, 5.19+): a registered buffer ring shared with the
//!   kernel. A consumed buffer goes back by writing one ring entry and bumping the tail:
//!   no SQE, no CQE, no syscall.
//!
//! Either way the protocol consumes a buffer's bytes during the completion that
//! delivered them (they are copied into the connection's outbox or partial input), so
//! a buffer is back with the kernel before the next `io_uring_enter`: the group only has
//! to cover the receives that complete within one loop turn. When it runs dry anyway,
//! RECV completes with ENOBUFS, the bytes stay in the socket, and the loop re-arms the
//! receive after the turn, once buffers are back.
//!
//! The group is adaptive: it starts with [`START`] buffers and doubles, up to the
//! configured maximum, after each turn that saw ENOBUFS. The kernel cycles through a
//! ring's buffers in order, so every buffer provided ends up resident; starting small
//! keeps a server with few busy connections small.

use std::alloc::{self, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, opcode, squeue, types::BufRingEntry};

/// The buffer group id ringmux uses (one group per ring).
pub const BGID: u16 = 0;
/// Buffers provided at start.
pub const START: u16 = 64;
/// Buffers per allocation: growth adds whole chunks, which never move.
const CHUNK: u16 = 16;

enum Kind {
    Legacy,
    Ring {
        base: *mut BufRingEntry,
        layout: Layout,
        mask: u16,
        tail: u16,
        /// The bid put at each ring position (masked), and the position each bid was
        /// last put at: a bundle's completion names only its first buffer, and the
        /// others are the ones that followed it in the ring.
        at: Box<[u16]>,
        pos: Box<[u16]>,
    },
}

pub struct ProvidedBufs {
    kind: Kind,
    /// Chunks of [`CHUNK`] buffers of `size` bytes each; buffer `bid` lives in chunk
    /// `bid / CHUNK`. Allocated zeroed, so pages become resident only once the kernel
    /// writes into them. A chunk never moves or shrinks while the group lives.
    chunks: Vec<Box<[u8]>>,
    size: usize,
    /// Buffers handed to the kernel so far (bids `0..provided`).
    provided: u16,
    /// The most it may grow to (the ring's capacity).
    max: u16,
}

impl ProvidedBufs {
    fn addr(&mut self, bid: u16) -> *mut u8 {
        let (chunk, i) = ((bid / CHUNK) as usize, (bid % CHUNK) as usize);
        // In bounds: bid < provided, so its chunk exists and holds CHUNK * size bytes.
        self.chunks[chunk][i * self.size..].as_mut_ptr()
    }

    /// Allocate chunks until `provided` reaches `target`; the new bids are
    /// `old..provided`.
    fn add_chunks(&mut self, target: u16) -> std::ops::Range<u16> {
        let old = self.provided;
        let target = target.min(self.max);
        while self.provided < target {
            self.chunks
                .push(vec![0u8; CHUNK as usize * self.size].into_boxed_slice());
            self.provided += CHUNK.min(self.max - self.provided);
        }
        old..self.provided
    }

    /// A legacy group of at most `max` buffers, and the PROVIDE_BUFFERS SQEs that hand
    /// its first buffers to the kernel (push them before any RECV that selects).
    pub fn legacy(max: u16, size: usize) -> (ProvidedBufs, Vec<squeue::Entry>) {
        let mut b = ProvidedBufs {
            kind: Kind::Legacy,
            chunks: Vec::new(),
            size,
            provided: 0,
            max: max.max(1),
        };
        let e = b.grow_to(START);
        (b, e)
    }

    /// Provide more buffers: `target` in all (capped at the maximum). For a legacy
    /// group, the SQEs to push (one per chunk).
    fn grow_to(&mut self, target: u16) -> Vec<squeue::Entry> {
        let new = self.add_chunks(target);
        let mut sqes = Vec::new();
        let mut bid = new.start;
        while bid < new.end {
            let n = (CHUNK - bid % CHUNK).min(new.end - bid);
            match self.kind {
                Kind::Legacy => {
                    let size = self.size as i32;
                    sqes.push(
                        opcode::ProvideBuffers::new(self.addr(bid), size, n, BGID, bid).build(),
                    );
                }
                Kind::Ring { .. } => (bid..bid + n).for_each(|b| self.ring_put(b)),
            }
            bid += n;
        }
        self.ring_publish();
        sqes
    }

    /// Double the group (after a turn that saw ENOBUFS). Returns false at the maximum.
    pub fn grow(&mut self, sqes: &mut Vec<squeue::Entry>) -> bool {
        if self.provided >= self.max {
            return false;
        }
        sqes.extend(self.grow_to(self.provided.saturating_mul(2)));
        true
    }

    /// Buffers handed to the kernel so far.
    pub fn provided(&self) -> u16 {
        self.provided
    }

    /// Register a buffer ring of `entries` (a power of two, at most 32768: the most
    /// buffers the group may grow to) with the kernel and provide the first ones.
    pub fn ring(uring: &IoUring, entries: u16, size: usize) -> io::Result<ProvidedBufs> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring entries must be a power of two up to 32768",
            ));
        }
        let bytes = (entries as usize * std::mem::size_of::<BufRingEntry>()).max(4096);
        let layout = Layout::from_size_align(bytes, 4096).map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc::alloc_zeroed(layout) } as *mut BufRingEntry;
        if base.is_null() {
            alloc::handle_alloc_error(layout);
        }
        crate::server::sys::count(crate::server::sys::Sys::IoUringRegister);
        // SAFETY: `base` is page aligned and holds `entries` entries; it stays allocated
        // until `Drop`, which runs only after the ring (declared before this in the
        // proactor) is gone, or never (a leaked group when ops were still in flight).
        if let Err(e) = unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(base as u64, entries, BGID, 0)
        } {
            // SAFETY: allocated above with this layout, and the kernel never saw it.
            unsafe { alloc::dealloc(base as *mut u8, layout) };
            return Err(e);
        }
        let mut b = ProvidedBufs {
            kind: Kind::Ring {
                base,
                layout,
                mask: entries - 1,
                tail: 0,
                at: vec![0; entries as usize].into_boxed_slice(),
                pos: vec![0; entries as usize].into_boxed_slice(),
            },
            chunks: Vec::new(),
            size,
            provided: 0,
            max: entries,
        };
        b.grow_to(START);
        Ok(b)
    }

    /// The bytes the kernel wrote into buffer `bid`. Valid between the completion that
    /// named `bid` and [`give_back`](Self::give_back).
    pub fn data(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.provided || len > self.size {
            return None;
        }
        let (chunk, i) = ((bid / CHUNK) as usize, (bid % CHUNK) as usize);
        Some(&self.chunks[chunk][i * self.size..i * self.size + len])
    }

    /// The buffers a receive of `len` bytes that began in buffer `first` filled: with
    /// IORING_RECVSEND_BUNDLE the kernel takes consecutive entries of the buffer ring
    /// and names only the first, filling each whole before the next. Returns the
    /// ring position of `first` and how many buffers; the i-th after `first` is
    /// [`bid_at`](Self::bid_at)`(start + i)`. A legacy group has no bundles (one).
    pub fn bundle(&self, first: u16, len: usize) -> (u16, usize) {
        match &self.kind {
            Kind::Ring { pos, .. } if first < self.provided => {
                (pos[first as usize], len.div_ceil(self.size).max(1))
            }
            _ => (first, 1),
        }
    }

    /// The buffer put at ring position `p`. Valid for a bundle's positions until its
    /// buffers are given back: the ring holds at most `max` buffers, and the bundle's
    /// are out of it, so the tail cannot come round to them before.
    pub fn bid_at(&self, p: u16) -> u16 {
        match &self.kind {
            Kind::Ring { at, mask, .. } => at[(p & *mask) as usize],
            Kind::Legacy => p,
        }
    }

    /// The bytes a buffer holds.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Return buffer `bid` to the kernel. For a legacy group this is an SQE to push.
    pub fn give_back(&mut self, bid: u16) -> Option<squeue::Entry> {
        if bid >= self.provided {
            return None;
        }
        match self.kind {
            Kind::Legacy => {
                let size = self.size as i32;
                Some(opcode::ProvideBuffers::new(self.addr(bid), size, 1, BGID, bid).build())
            }
            Kind::Ring { .. } => {
                self.ring_put(bid);
                self.ring_publish();
                None
            }
        }
    }

    fn ring_put(&mut self, bid: u16) {
        let size = self.size as u32;
        let addr = self.addr(bid) as u64;
        let Kind::Ring {
            base,
            mask,
            tail,
            at,
            pos,
            ..
        } = &mut self.kind
        else {
            return;
        };
        at[(*tail & *mask) as usize] = bid;
        pos[bid as usize] = *tail;
        // SAFETY: `base` holds mask+1 entries and the index is masked. Entries between
        // the kernel's head and our published tail belong to the kernel; the one at
        // `tail` is past the published tail, so it is ours to write.
        unsafe {
            let e = &mut *base.add((*tail & *mask) as usize);
            e.set_addr(addr);
            e.set_len(size);
            e.set_bid(bid);
        }
        *tail = tail.wrapping_add(1);
    }

    fn ring_publish(&self) {
        let Kind::Ring { base, tail, .. } = &self.kind else {
            return;
        };
        // SAFETY: the tail lives in the first entry's reserved field, inside the
        // allocation; the kernel reads it, so the store is atomic with Release ordering
        // (the entries written before must be visible first).
        unsafe {
            let t = BufRingEntry::tail(*base) as *const AtomicU16;
            (*t).store(*tail, Ordering::Release);
        }
    }
}

impl Drop for ProvidedBufs {
    fn drop(&mut self) {
        if let Kind::Ring { base, layout, .. } = self.kind {
            // SAFETY: allocated in `ring` with this layout. The proactor drops this only
            // after its ring is closed (or leaks it), so the kernel no longer reads it.
            unsafe { alloc::dealloc(base as *mut u8, layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_group_starts_small_and_grows_by_doubling_to_its_cap() {
        let (mut b, sqes) = ProvidedBufs::legacy(100, 512);
        assert_eq!(b.provided(), START);
        assert_eq!(
            sqes.len(),
            (START / CHUNK) as usize,
            "one PROVIDE_BUFFERS per chunk"
        );
        let mut more = Vec::new();
        assert!(b.grow(&mut more));
        assert_eq!(b.provided(), 100, "doubling is capped at the maximum");
        assert_eq!(more.len(), 3, "bids 64..80, 80..96, 96..100");
        assert!(!b.grow(&mut more), "no growth past the maximum");
        // Every provided buffer is addressable, none beyond.
        assert_eq!(b.data(99, 512).map(<[u8]>::len), Some(512));
        assert!(b.data(100, 1).is_none());
        assert!(b.data(0, 513).is_none());
        assert!(b.give_back(99).is_some());
        assert!(b.give_back(100).is_none());
    }

    #[test]
    fn buffers_do_not_overlap() {
        let (mut b, _) = ProvidedBufs::legacy(64, 256);
        let mut addrs: Vec<usize> = (0..64).map(|bid| b.addr(bid) as usize).collect();
        addrs.sort_unstable();
        assert!(addrs.windows(2).all(|w| w[1] - w[0] >= 256));
    }

    #[test]
    fn ring_group_registers_where_the_kernel_allows() {
        let Ok(ring) = IoUring::new(8) else {
            println!("SKIPPED ring_group_registers_where_the_kernel_allows: no io_uring here");
            return;
        };
        match ProvidedBufs::ring(&ring, 128, 1024) {
            Ok(b) => assert_eq!(b.provided(), START),
            Err(e) => println!(
                "SKIPPED ring_group_registers_where_the_kernel_allows: no buffer rings ({e})"
            ),
        }
        assert!(
            ProvidedBufs::ring(&ring, 100, 1024).is_err(),
            "entries must be a power of two"
        );
    }

    #[test]
    fn a_bundle_is_the_buffers_that_followed_its_first_in_the_ring() {
        let Ok(ring) = IoUring::new(8) else {
            println!("SKIPPED a_bundle_is_...: no io_uring here");
            return;
        };
        let Ok(mut b) = ProvidedBufs::ring(&ring, 128, 1024) else {
            println!("SKIPPED a_bundle_is_...: no buffer rings");
            return;
        };
        // Bids 0..64 sit at positions 0..64. Give 5, 9, 2 back (as after completions):
        // they follow at positions 64, 65, 66.
        for bid in [5, 9, 2] {
            b.give_back(bid);
        }
        let (start, n) = b.bundle(9, 1024 + 1);
        assert_eq!((start, n), (65, 2), "1025 bytes fill two buffers");
        assert_eq!([b.bid_at(start), b.bid_at(start + 1)], [9, 2]);
        assert_eq!(b.bundle(3, 1024), (3, 1));
        assert_eq!(
            b.bundle(3, 0).1,
            1,
            "an empty receive still names its buffer"
        );
        let (legacy, _) = ProvidedBufs::legacy(64, 512);
        assert_eq!(legacy.bundle(7, 4096), (7, 1), "no bundles without a ring");
    }
}
