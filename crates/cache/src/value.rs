//! [`Value`]: a key's value as a shard holds it, a string or a Redis hash, and what
//! memory accounting charges for it.

use crate::hash::HashValue;
use crate::stored::Stored;

/// A key's value: a string, or a hash.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Str(Stored),
    Hash(Box<HashValue>),
}

impl Value {
    /// Bytes charged for the value.
    pub fn charge(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            Value::Hash(h) => h.bytes(),
        }
    }

    /// The string, if it is one.
    pub fn str(&self) -> Option<&Stored> {
        match self {
            Value::Str(s) => Some(s),
            Value::Hash(_) => None,
        }
    }

    /// TYPE's answer.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
        }
    }
}

impl From<Stored> for Value {
    fn from(s: Stored) -> Value {
        Value::Str(s)
    }
}
