//! Hand-written `Deserialize` impls.
//!
//! `#[serde(untagged)]` tries every variant on a buffered copy of the input and, when
//! none fits, says only "data did not match any variant", with no field named. A route,
//! a setup step and a file are told apart here by the JSON type instead (string or
//! object, array or object) or by their one key, so a typo inside the object reaches
//! the user as "unknown field" at its exact path. Errors are raised in serde's own
//! words ("invalid value: X, expected Y"); `ManifestError::from_serde` rewords them.
//!
//! Also here:
//! - a JSON object with the same key twice is an error for the maps of the manifest
//!   (services, env, files); `BTreeMap`'s own impl would keep the last silently;
//! - [`Object`]: the derived impls also accept a struct written as an array of its
//!   field values in order (`"instances": [1, 4]`); the manifest and its JSON Schema
//!   allow only objects;
//! - [`CallMode`], [`Driver`], [`Network`], [`Seccomp`] and the fsync policy: serde_json reports a number where
//!   an enum is expected as a syntax error ("expected value"), which would blame valid
//!   JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Error, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};

use crate::{CallMode, Driver, FileSpec, FsyncPolicy, Network, RouteFull, RouteSpec, Seccomp, SetupFull, SetupSpec};

/// Expected-value wording shared with the JSON Schema descriptions.
pub(crate) const EXPECT_ROUTE: &str = "a path string or a route object";
pub(crate) const EXPECT_SETUP: &str = "an argv array or an object with run and inputs";
pub(crate) const EXPECT_FILE: &str = "an object with either content or source";

impl<'de> Deserialize<'de> for RouteSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RouteVisitor;
        impl<'de> Visitor<'de> for RouteVisitor {
            type Value = RouteSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECT_ROUTE)
            }
            fn visit_str<E: Error>(self, path: &str) -> Result<RouteSpec, E> {
                Ok(RouteSpec::Prefix(path.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RouteSpec, A::Error> {
                RouteFull::deserialize(MapAccessDeserializer::new(map)).map(RouteSpec::Full)
            }
        }
        deserializer.deserialize_any(RouteVisitor)
    }
}

impl<'de> Deserialize<'de> for SetupSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SetupVisitor;
        impl<'de> Visitor<'de> for SetupVisitor {
            type Value = SetupSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECT_SETUP)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<SetupSpec, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(SetupSpec::Argv)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SetupSpec, A::Error> {
                SetupFull::deserialize(MapAccessDeserializer::new(map)).map(SetupSpec::Full)
            }
        }
        deserializer.deserialize_any(SetupVisitor)
    }
}

impl<'de> Deserialize<'de> for FileSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Both keys optional here so that "both" and "neither" get their own message.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileFields {
            #[serde(default)]
            content: Option<String>,
            #[serde(default)]
            source: Option<String>,
        }
        struct FileVisitor;
        impl<'de> Visitor<'de> for FileVisitor {
            type Value = FileSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECT_FILE)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileSpec, A::Error> {
                let fields = FileFields::deserialize(MapAccessDeserializer::new(map))?;
                match (fields.content, fields.source) {
                    (Some(content), None) => Ok(FileSpec::Content { content }),
                    (None, Some(source)) => Ok(FileSpec::Source { source }),
                    (Some(_), Some(_)) => Err(A::Error::invalid_value(
                        Unexpected::Other("an object with both content and source"),
                        &EXPECT_FILE,
                    )),
                    (None, None) => Err(A::Error::invalid_value(
                        Unexpected::Other("an object with neither content nor source"),
                        &EXPECT_FILE,
                    )),
                }
            }
        }
        deserializer.deserialize_map(FileVisitor)
    }
}

/// `Deserialize` for an enum written as one of a few words: any other word, or any other
/// JSON type, is "expected one of WORD, WORD" (serde_json reports a number where a
/// derived enum would say "unknown variant").
macro_rules! one_of_words {
    ($enum:ident { $first:literal => $first_variant:ident $(, $word:literal => $variant:ident)* $(,)? }) => {
        impl<'de> Deserialize<'de> for $enum {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                const WORDS: &[&str] = &[$first $(, $word)*];
                struct WordVisitor;
                impl Visitor<'_> for WordVisitor {
                    type Value = $enum;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str(concat!("one of ", $first $(, ", ", $word)*))
                    }
                    fn visit_str<E: Error>(self, word: &str) -> Result<$enum, E> {
                        match word {
                            $first => Ok($enum::$first_variant),
                            $($word => Ok($enum::$variant),)*
                            other => Err(E::unknown_variant(other, WORDS)),
                        }
                    }
                }
                deserializer.deserialize_str(WordVisitor)
            }
        }
    };
}

one_of_words!(CallMode { "any" => Any, "all" => All });
one_of_words!(Driver { "process" => Process, "oci" => Oci });
one_of_words!(Network { "host" => Host, "private" => Private });
one_of_words!(Seccomp { "default" => Default, "unconfined" => Unconfined });
one_of_words!(FsyncPolicy { "always" => Always, "interval" => Interval, "none" => None });

/// A struct that must be written as a JSON object.
pub(crate) struct Object<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Object)
            }
        }
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// For `#[serde(deserialize_with)]`: a struct field that must be an object.
pub(crate) fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Object::deserialize(deserializer).map(|o| o.0)
}

/// For `#[serde(deserialize_with)]`: an optional struct field that must be an object or null.
pub(crate) fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Object<T>>::deserialize(deserializer).map(|o| o.map(|o| o.0))
}

/// A string-keyed map that rejects a key given twice ("duplicate key `k`").
pub(crate) fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    unique_map(deserializer, |v: V| v)
}

/// [`unique_keys`] whose values are structs that must be objects.
pub(crate) fn unique_objects<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    unique_map(deserializer, |v: Object<V>| v.0)
}

fn unique_map<'de, D, W, V>(deserializer: D, unwrap: fn(W) -> V) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    W: Deserialize<'de>,
{
    struct MapVisitor<W, V>(fn(W) -> V);
    impl<'de, W: Deserialize<'de>, V> Visitor<'de> for MapVisitor<W, V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(A::Error::custom(format_args!("duplicate key `{key}`")));
                }
                let value = map.next_value::<W>()?;
                out.insert(key, (self.0)(value));
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(MapVisitor(unwrap))
}
