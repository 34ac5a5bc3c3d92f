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

use std::alloc::{self, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, opcode, squeue, types::BufRingEntry};

/// The buffer group id ringmux uses (one group per ring).
pub const BGID: u16 = 0;

enum Kind {
    Legacy,
    Ring { base: *mut BufRingEntry, layout: Layout, mask: u16, tail: u16 },
}

pub struct ProvidedBufs {
    kind: Kind,
    /// `entries` buffers of `size` bytes each, back to back. Allocated zeroed, so pages
    /// become resident only once the kernel writes into them.
    mem: Box<[u8]>,
    size: usize,
    entries: u16,
}

impl ProvidedBufs {
    fn storage(entries: u16, size: usize) -> Box<[u8]> {
        vec![0u8; entries as usize * size].into_boxed_slice()
    }

    fn addr(&mut self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.entries);
        // In bounds: bid < entries and mem holds entries * size bytes.
        self.mem[bid as usize * self.size..].as_mut_ptr()
    }

    /// A legacy group, and the one PROVIDE_BUFFERS SQE that hands all of it to the
    /// kernel (push it before any RECV that selects from the group).
    pub fn legacy(entries: u16, size: usize) -> (ProvidedBufs, squeue::Entry) {
        let mut b = ProvidedBufs { kind: Kind::Legacy, mem: Self::storage(entries, size), size, entries };
        let e = opcode::ProvideBuffers::new(b.addr(0), size as i32, entries, BGID, 0).build();
        (b, e)
    }

    /// Register a buffer ring of `entries` (a power of two, at most 32768) with the
    /// kernel and fill it.
    pub fn ring(uring: &IoUring, entries: u16, size: usize) -> io::Result<ProvidedBufs> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "buffer ring entries must be a power of two up to 32768"));
        }
        let bytes = (entries as usize * std::mem::size_of::<BufRingEntry>()).max(4096);
        let layout = Layout::from_size_align(bytes, 4096).map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc::alloc_zeroed(layout) } as *mut BufRingEntry;
        if base.is_null() {
            alloc::handle_alloc_error(layout);
        }
        super::super::sys::count(super::super::sys::Sys::IoUringRegister);
        // SAFETY: `base` is page aligned and holds `entries` entries; it stays allocated
        // until `Drop`, which runs only after the ring (declared before this in the
        // proactor) is gone, or never (a leaked group when ops were still in flight).
        if let Err(e) = unsafe { uring.submitter().register_buf_ring_with_flags(base as u64, entries, BGID, 0) } {
            // SAFETY: allocated above with this layout, and the kernel never saw it.
            unsafe { alloc::dealloc(base as *mut u8, layout) };
            return Err(e);
        }
        let mut b = ProvidedBufs {
            kind: Kind::Ring { base, layout, mask: entries - 1, tail: 0 },
            mem: Self::storage(entries, size),
            size,
            entries,
        };
        for bid in 0..entries {
            b.ring_put(bid);
        }
        b.ring_publish();
        Ok(b)
    }

    pub fn is_ring(&self) -> bool {
        matches!(self.kind, Kind::Ring { .. })
    }

    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// The bytes the kernel wrote into buffer `bid`. Valid between the completion that
    /// named `bid` and [`give_back`](Self::give_back).
    pub fn data(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.entries || len > self.size {
            return None;
        }
        let start = bid as usize * self.size;
        Some(&self.mem[start..start + len])
    }

    /// Return buffer `bid` to the kernel. For a legacy group this is an SQE to push.
    pub fn give_back(&mut self, bid: u16) -> Option<squeue::Entry> {
        if bid >= self.entries {
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
        let Kind::Ring { base, mask, tail, .. } = &mut self.kind else { return };
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
        let Kind::Ring { base, tail, .. } = &self.kind else { return };
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
