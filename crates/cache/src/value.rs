//! [`Value`]: a key's value as a shard holds it, a string, a Redis hash, set, list or
//! sorted set, and what memory accounting charges for it.

use crate::hash::HashValue;
use crate::list::ListValue;
use crate::set::SetValue;
use crate::stored::Stored;
use crate::zset::ZsetValue;

/// A key's value: a string, a hash, a set, a list or a sorted set.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Str(Stored),
    Hash(Box<HashValue>),
    Set(Box<SetValue>),
    List(Box<ListValue>),
    Zset(Box<ZsetValue>),
}

impl Value {
    /// Bytes charged for the value.
    pub fn charge(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            Value::Hash(h) => h.bytes(),
            Value::Set(s) => s.bytes(),
            Value::List(l) => l.bytes(),
            Value::Zset(z) => z.bytes(),
        }
    }

    /// The string, if it is one.
    pub fn str(&self) -> Option<&Stored> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// TYPE's answer.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::List(_) => "list",
            Value::Zset(_) => "zset",
        }
    }
}

impl From<Stored> for Value {
    fn from(s: Stored) -> Value {
        Value::Str(s)
    }
}

/// A Redis collection as a [`Value`] holds it (a hash, a set, a list, a sorted set):
/// what the keyspace's typed reads and writes (`keyspace::typed`) need of each.
pub(crate) trait Collection: Default {
    fn of(v: &Value) -> Option<&Self>;
    fn of_mut(v: &mut Value) -> Option<&mut Self>;
    fn into_value(self) -> Value;
    /// Fields, members or elements: a collection left with none is removed.
    fn count(&self) -> usize;
}

macro_rules! collection {
    ($ty:ty, $variant:ident) => {
        impl Collection for $ty {
            fn of(v: &Value) -> Option<&Self> {
                match v {
                    Value::$variant(c) => Some(c),
                    _ => None,
                }
            }
            fn of_mut(v: &mut Value) -> Option<&mut Self> {
                match v {
                    Value::$variant(c) => Some(c),
                    _ => None,
                }
            }
            fn into_value(self) -> Value {
                Value::$variant(Box::new(self))
            }
            fn count(&self) -> usize {
                self.len()
            }
        }
    };
}

collection!(HashValue, Hash);
collection!(SetValue, Set);
collection!(ListValue, List);
collection!(ZsetValue, Zset);
