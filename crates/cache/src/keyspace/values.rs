//! The keyspace operations that change a value in place: INCR, INCRBYFLOAT, APPEND,
//! SETRANGE, SETBIT. Each is one lock of the key's shard (or uses the shard the
//! keyspace holds), reads the value and writes the new one under it.

use bytes::{Bytes, BytesMut};

use super::{FloatError, Keyspace, StringError, WrongType};
use crate::cache::{parse_i64, CacheError};
use crate::long_double::{self, LongDouble};
use crate::shard::{Deadlines, Encoding};
use crate::stored::Stored;
use crate::value::Value;

/// The string in `v`, or [`WrongType`] for another type.
fn string(v: &Value) -> Result<&Stored, WrongType> {
    v.str().ok_or(WrongType)
}

impl Keyspace<'_> {
    /// Adds `delta` to the integer in `key` (missing counts as 0); keeps its deadline.
    pub fn incr_by(&mut self, key: &[u8], delta: i64) -> Result<i64, CacheError> {
        let now = self.now;
        let mut s = self.shard(key);
        let r = s.modify(key, now, |e| {
            let Ok(v) = string(&e.value) else {
                return (Err(CacheError::WrongType), false);
            };
            let Some(n) = parse_i64(v.as_slice()) else {
                return (Err(CacheError::NotAnInteger), false);
            };
            let Some(n) = n.checked_add(delta) else {
                return (Err(CacheError::Overflow), false);
            };
            e.value = Stored::from_i64(n).into();
            e.encoding = Encoding::Whole;
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

    /// INCRBYFLOAT: adds `by` to the number in `key` (missing counts as 0) in Redis'
    /// extended precision; keeps its deadline; answers the new value as stored.
    pub fn incr_by_float(&mut self, key: &[u8], by: LongDouble) -> Result<Stored, FloatError> {
        let now = self.now;
        let sum = |current: &[u8]| -> Result<Stored, FloatError> {
            let v = long_double::parse(current).ok_or(FloatError::NotAFloat)?;
            let sum = long_double::add(v, by);
            if !sum.is_finite() {
                return Err(FloatError::NotFinite);
            }
            Ok(Stored::copy_from(long_double::format(sum).as_bytes()))
        };
        let mut s = self.shard(key);
        let r = s.modify(key, now, |e| match string(&e.value).map(|v| sum(v.as_slice())) {
            Err(WrongType) => (Err(FloatError::WrongType), false),
            Ok(Err(err)) => (Err(err), false),
            Ok(Ok(v)) => {
                e.value = v.clone().into();
                e.encoding = Encoding::Float;
                (Ok(v), true)
            }
        });
        match r {
            Some(r) => r,
            None => {
                let v = sum(b"0")?;
                s.insert_as(key, v.clone().into(), Deadlines::NONE, now, Encoding::Float);
                Ok(v)
            }
        }
    }

    /// Appends `data` to `key`'s value (creating it); returns the new length. The value
    /// may not grow past `max` bytes.
    pub fn append(&mut self, key: &[u8], data: &[u8], max: usize) -> Result<usize, StringError> {
        let now = self.now;
        let mut s = self.shard(key);
        let r = s.modify(key, now, |e| {
            let Ok(old) = string(&e.value) else {
                return (Err(StringError::WrongType), false);
            };
            if old.len() + data.len() > max {
                return (Err(StringError::TooLong), false);
            }
            let mut v = BytesMut::with_capacity(old.len() + data.len());
            v.extend_from_slice(old.as_slice());
            v.extend_from_slice(data);
            let len = v.len();
            e.value = Stored::from_bytes(v.freeze()).into();
            e.encoding = Encoding::Raw;
            (Ok(len), true)
        });
        match r {
            Some(r) => r,
            None if data.len() > max => Err(StringError::TooLong),
            None => {
                s.insert(key, Stored::copy_from(data), Deadlines::NONE, now);
                Ok(data.len())
            }
        }
    }

    /// SETRANGE: writes `data` at `offset` in `key`'s value, padding with zero bytes
    /// (creating the key unless `data` is empty); returns the new length. The value may
    /// not grow past `max` bytes.
    pub fn set_range(&mut self, key: &[u8], offset: usize, data: &[u8], max: usize) -> Result<usize, StringError> {
        let now = self.now;
        let fits = offset.checked_add(data.len()).is_some_and(|end| end <= max);
        let mut s = self.shard(key);
        let r = s.modify(key, now, |e| {
            let Ok(old) = string(&e.value) else {
                return (Err(StringError::WrongType), false);
            };
            if data.is_empty() {
                return (Ok(old.len()), false);
            }
            if !fits {
                return (Err(StringError::TooLong), false);
            }
            let mut v = old.as_slice().to_vec();
            if v.len() < offset + data.len() {
                v.resize(offset + data.len(), 0);
            }
            v[offset..offset + data.len()].copy_from_slice(data);
            let len = v.len();
            e.value = Stored::from_bytes(Bytes::from(v)).into();
            e.encoding = Encoding::Raw;
            (Ok(len), true)
        });
        match r {
            Some(r) => r,
            None if data.is_empty() => Ok(0),
            None if !fits => Err(StringError::TooLong),
            None => {
                let mut v = vec![0u8; offset + data.len()];
                v[offset..].copy_from_slice(data);
                let len = v.len();
                s.insert_as(
                    key,
                    Stored::from_bytes(Bytes::from(v)).into(),
                    Deadlines::NONE,
                    now,
                    Encoding::Raw,
                );
                Ok(len)
            }
        }
    }

    /// SETBIT: sets bit `bit` (0 is the most significant bit of the first byte) of
    /// `key`'s value to `on`, growing it with zero bytes as needed; returns the bit's
    /// previous value. The caller bounds `bit`.
    pub fn set_bit(&mut self, key: &[u8], bit: u64, on: bool) -> Result<bool, WrongType> {
        let now = self.now;
        let byte = (bit >> 3) as usize;
        let mask = 1u8 << (7 - (bit & 7));
        let mut s = self.shard(key);
        let r = s.modify(key, now, |e| {
            let Ok(value) = string(&e.value) else {
                return (Err(WrongType), false);
            };
            let old = value.as_slice().get(byte).is_some_and(|b| b & mask != 0);
            let grow = value.len() <= byte;
            // Redis makes the value raw whatever happens, and signals only a change.
            e.encoding = Encoding::Raw;
            if !grow && old == on {
                return (Ok(old), false);
            }
            let mut v = value.as_slice().to_vec();
            if grow {
                v.resize(byte + 1, 0);
            }
            if on {
                v[byte] |= mask;
            } else {
                v[byte] &= !mask;
            }
            e.value = Stored::from_bytes(Bytes::from(v)).into();
            (Ok(old), true)
        });
        match r {
            Some(old) => old,
            None => {
                let mut v = vec![0u8; byte + 1];
                if on {
                    v[byte] |= mask;
                }
                s.insert_as(
                    key,
                    Stored::from_bytes(Bytes::from(v)).into(),
                    Deadlines::NONE,
                    now,
                    Encoding::Raw,
                );
                Ok(false)
            }
        }
    }
}
