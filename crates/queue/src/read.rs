//! Reading leased records: from the writer's buffers kept in memory, or from the segment
//! files with one read per run of records that lie back to back. What the page cache
//! holds is read on the caller's thread (`preadv2` with `RWF_NOWAIT`); anything else on
//! tokio's blocking pool, so that disk work never blocks the runtime.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use strata_os::disk::Disk;

use crate::index::Located;
use crate::segment;
use crate::QueueError;

/// A leased message still to be read.
pub(crate) struct Lease<D: Disk> {
    pub offset: u64,
    pub deliveries: u32,
    pub at: Located<D>,
}

/// Reads the records of `leases`, in order: (offset, deliveries, its bytes or the error
/// reading them). Fails only when the blocking read task does.
pub(crate) async fn read<D: Disk>(leases: Vec<Lease<D>>) -> Result<Vec<(u64, u32, io::Result<Bytes>)>, QueueError> {
    let needs_disk = leases.iter().any(|l| matches!(l.at, Located::Disk { .. }));
    Ok(if needs_disk {
        match read_all(&leases, true) {
            Some(raw) => raw,
            None => tokio::task::spawn_blocking(move || read_all(&leases, false).expect("blocking reads complete"))
                .await
                .map_err(|e| QueueError::Io(format!("read task failed: {e}")))?,
        }
    } else {
        read_all(&leases, true).expect("memory reads complete")
    })
}

/// Reads leased records: from memory, or from disk with one read per run of records
/// that lie back to back in one segment. With `cached_only`, `None` when some record is
/// not in the page cache (nothing waited for the disk).
fn read_all<D: Disk>(leases: &[Lease<D>], cached_only: bool) -> Option<Vec<(u64, u32, io::Result<Bytes>)>> {
    let mut out = Vec::with_capacity(leases.len());
    let mut i = 0;
    while i < leases.len() {
        let Located::Disk { file, pos, len } = &leases[i].at else {
            let Located::Memory(b) = &leases[i].at else {
                unreachable!()
            };
            out.push((leases[i].offset, leases[i].deliveries, Ok(b.clone())));
            i += 1;
            continue;
        };
        // Extend the run while the next record starts where this one ends.
        let (start, mut end, mut j) = (*pos, *pos + u64::from(*len), i + 1);
        while let Some(Located::Disk {
            file: f,
            pos: p,
            len: l,
        }) = leases.get(j).map(|l| &l.at)
        {
            if !Arc::ptr_eq(f, file) || *p != end || end - start > 4 << 20 {
                break;
            }
            end += u64::from(*l);
            j += 1;
        }
        let read = if cached_only {
            segment::read_cached(&**file, start, (end - start) as usize).transpose()?
        } else {
            segment::read(&**file, start, (end - start) as usize)
        };
        match read {
            Ok(run) => {
                for l in &leases[i..j] {
                    let Located::Disk { pos, len, .. } = &l.at else {
                        unreachable!()
                    };
                    let at = (pos - start) as usize;
                    out.push((l.offset, l.deliveries, Ok(run.slice(at..at + *len as usize))));
                }
            }
            Err(e) if j - i == 1 => {
                let l = &leases[i];
                out.push((l.offset, l.deliveries, Err(e)));
            }
            Err(_) => {
                // One bad spot should not cost the whole run: read its records one by one.
                for l in &leases[i..j] {
                    let Located::Disk { pos, len, .. } = &l.at else {
                        unreachable!()
                    };
                    out.push((l.offset, l.deliveries, segment::read(&**file, *pos, *len as usize)));
                }
            }
        }
        i = j;
    }
    Some(out)
}
