//! A service's topic subscriptions (`services.NAME.subscribes`): each message published
//! on the topic (`POST /v1/topics/NAME` on the node API, or PUBLISH on the Redis port)
//! is POSTed to `path` on every ready instance (`all`) or on one (`any`). Written as one
//! object or a list of them.

use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::de::Object;
use crate::CallMode;

/// One subscription of a service to a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribesSpec {
    /// The topic: a Redis channel name, not empty.
    pub topic: String,
    /// Where each message is POSTed on an instance; starts with `/`.
    pub path: String,
    /// `all`: every ready instance gets each message; `any`: one of them does.
    #[serde(default = "all")]
    pub mode: CallMode,
}

fn all() -> CallMode {
    CallMode::All
}

/// Expected-value wording shared with the JSON Schema description.
pub(crate) const EXPECT_SUBSCRIBES: &str = "a subscription object (topic, path, mode) or a list of them";

/// `subscribes`: one object, or an array of objects.
pub(crate) fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SubscribesSpec>, D::Error> {
    struct OneOrMany;
    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<SubscribesSpec>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(EXPECT_SUBSCRIBES)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            SubscribesSpec::deserialize(MapAccessDeserializer::new(map)).map(|s| vec![s])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let list = Vec::<Object<SubscribesSpec>>::deserialize(SeqAccessDeserializer::new(seq))?;
            Ok(list.into_iter().map(|o| o.0).collect())
        }
    }
    deserializer.deserialize_any(OneOrMany)
}
