//! The checks of a service's topic subscriptions (`subscribes`).

use super::*;

/// Longest topic name: the node API takes it in its path.
const MAX_TOPIC_BYTES: usize = 256;

pub(super) fn check_subscribes(spec: &ServiceSpec, path: &FieldPath, p: &mut Problems) {
    let path = path.key("subscribes");
    for (i, s) in spec.subscribes.iter().enumerate() {
        let at = path.index(i);
        if s.topic.is_empty() || s.topic.len() > MAX_TOPIC_BYTES || s.topic.chars().any(|c| c < ' ' || c == '\u{7f}') {
            p.add(invalid(
                at.key("topic"),
                format!("a topic name of 1 to {MAX_TOPIC_BYTES} bytes without control characters"),
                quoted(&s.topic),
            ));
        }
        if !s.path.starts_with('/') {
            p.add(invalid(at.key("path"), "a path starting with /", quoted(&s.path)));
        }
        let earlier = spec.subscribes[..i]
            .iter()
            .position(|e| e.topic == s.topic && e.path == s.path);
        if let Some(j) = earlier {
            p.add(invalid(
                at,
                format!("a subscription not already made by subscribes[{j}]"),
                format!("topic {} to {} again", quoted(&s.topic), quoted(&s.path)),
            ));
        }
    }
}
