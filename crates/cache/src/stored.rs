//! [`Stored`]: how a key or a value is held in a shard. Short strings (up to 23 bytes,
//! which covers most keys and counters) live inline in the map's slot: no allocation
//! to store them, no pointer to chase to compare or copy them, nothing to free. Longer
//! ones are a shared [`Bytes`].

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use bytes::Bytes;

const INLINE: usize = 23;

/// An owned byte string, inline when short. 32 bytes, like [`Bytes`] itself.
#[derive(Clone)]
pub(crate) enum Stored {
    Inline { len: u8, buf: [u8; INLINE] },
    Shared(Bytes),
}

impl Stored {
    /// A copy of `b` (inline if short, one allocation if not).
    pub fn copy_from(b: &[u8]) -> Stored {
        if b.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..b.len()].copy_from_slice(b);
            Stored::Inline {
                len: b.len() as u8,
                buf,
            }
        } else {
            Stored::Shared(Bytes::copy_from_slice(b))
        }
    }

    /// `b` itself when long (no copy), inline when short.
    pub fn from_bytes(b: Bytes) -> Stored {
        if b.len() <= INLINE {
            Stored::copy_from(&b)
        } else {
            Stored::Shared(b)
        }
    }

    /// The decimal text of `n` (always inline).
    pub fn from_i64(n: i64) -> Stored {
        let mut buf = [0u8; INLINE];
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        let mut m = n.unsigned_abs();
        loop {
            i -= 1;
            tmp[i] = b'0' + (m % 10) as u8;
            m /= 10;
            if m == 0 {
                break;
            }
        }
        let mut len = 0;
        if n < 0 {
            buf[0] = b'-';
            len = 1;
        }
        let d = &tmp[i..];
        buf[len..len + d.len()].copy_from_slice(d);
        Stored::Inline {
            len: (len + d.len()) as u8,
            buf,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Stored::Inline { len, buf } => &buf[..*len as usize],
            Stored::Shared(b) => b,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Stored::Inline { len, .. } => *len as usize,
            Stored::Shared(b) => b.len(),
        }
    }

    /// As [`Bytes`]: shared when long, a fresh copy when inline.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Stored::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            Stored::Shared(b) => b.clone(),
        }
    }
}

impl Borrow<[u8]> for Stored {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

// Hash and equality are the byte string's, as `Borrow<[u8]>` requires.
impl Hash for Stored {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl PartialEq for Stored {
    fn eq(&self, other: &Stored) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Stored {}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn inline_and_shared_behave_alike() {
        assert_eq!(std::mem::size_of::<Stored>(), 32);
        for len in [0, 1, 22, 23, 24, 100] {
            let data: Vec<u8> = (0..len as u8).collect();
            let s = Stored::copy_from(&data);
            assert_eq!(s.as_slice(), &data[..]);
            assert_eq!(s.len(), len);
            assert_eq!(matches!(s, Stored::Inline { .. }), len <= INLINE);
            assert_eq!(Stored::from_bytes(Bytes::from(data.clone())), s);
            assert_eq!(s.to_bytes(), Bytes::from(data.clone()));
            let mut m = HashMap::new();
            m.insert(s, 1);
            assert_eq!(m.get(&data[..]), Some(&1), "lookups by slice find it");
        }
        for n in [0, 7, -7, 1234567890, i64::MAX, i64::MIN] {
            assert_eq!(Stored::from_i64(n).as_slice(), n.to_string().as_bytes());
        }
    }
}
