//! The keyspace operations that change a value in place: INCR, APPEND. Each is one lock of the key's shard (or uses the shard the
//! keyspace holds), reads the value and writes the new one under it.

use bytes::BytesMut;

use super::{Keyspace, TooLong};
use crate::cache::{parse_i64, CacheError};
use crate::shard::Deadlines;
use crate::stored::Stored;

impl Keyspace<'_> {
    /// Adds `delta` to the integer in `key` (missing counts as 0); keeps its deadline.
    pub fn incr_by(&mut self, key: &[u8], delta: i64) -> Result<i64, CacheError> {
        let now = self.now;
        let mut s = self.shard(key);
        let r = s.modify(key, now, |e| {
            let Some(n) = parse_i64(e.value.as_slice()) else {
                return (Err(CacheError::NotAnInteger), false);
            };
            let Some(n) = n.checked_add(delta) else {
                return (Err(CacheError::Overflow), false);
            };
            e.value = Stored::from_i64(n);
            (Ok(n), true)
        });
        match r {
            Some(r) => r,
            None => {
                s.insert(key, Stored::from_i64(delta), Deadlines::NONE, now);
                Ok(delta)
            }
        }
    }

    /// Appends `data` to `key`'s value (creating it); returns the new length. The value
    /// may not grow past `max` bytes.
    pub fn append(&mut self, key: &[u8], data: &[u8], max: usize) -> Result<usize, TooLong> {
        let now = self.now;
        let mut s = self.shard(key);
        let r = s.modify(key, now, |e| {
            if e.value.len() + data.len() > max {
                return (Err(TooLong), false);
            }
            let mut v = BytesMut::with_capacity(e.value.len() + data.len());
            v.extend_from_slice(e.value.as_slice());
            v.extend_from_slice(data);
            e.value = Stored::from_bytes(v.freeze());
            (Ok(e.value.len()), true)
        });
        match r {
            Some(r) => r,
            None if data.len() > max => Err(TooLong),
            None => {
                s.insert(key, Stored::copy_from(data), Deadlines::NONE, now);
                Ok(data.len())
            }
        }
    }
}
