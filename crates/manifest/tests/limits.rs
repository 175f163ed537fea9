//! The node-wide bounds of the manifest: `queue_limits` (how many queues, how much disk,
//! how large a segment a queue made through the API may have) and `store` (the largest
//! blob): their defaults, and every number bounded, naming the field.

use serde_json::{json, Value};
use strata_manifest::{parse, ManifestError, QueueLimitsSpec, StoreSpec};

fn with(edit: impl Fn(&mut Value)) -> Result<strata_manifest::Manifest, ManifestError> {
    let mut v = json!({"strata": 1, "app": "a", "services": {"web": {"run": ["x"]}}});
    edit(&mut v);
    parse(&v.to_string())
}

fn invalid(edit: impl Fn(&mut Value)) -> (String, String, String) {
    match with(edit) {
        Err(ManifestError::Invalid { path, expected, found }) => (path, expected, found),
        other => panic!("want an Invalid error, got {other:?}"),
    }
}

#[test]
fn defaults_bound_queues_and_blobs_but_not_total_queue_disk() {
    let m = with(|_| {}).unwrap();
    assert_eq!(m.queue_limits, QueueLimitsSpec::default());
    assert_eq!(m.queue_limits.max_queues, 1000);
    assert_eq!(m.queue_limits.max_total_bytes, None);
    assert_eq!(m.queue_limits.max_segment_bytes, 16 << 20);
    assert_eq!(m.store, StoreSpec::default());
    assert_eq!(m.store.max_blob_bytes, 5 << 30);
    let m = with(|v| {
        v["queue_limits"] = json!({"max_queues": 3, "max_total_bytes": 1 << 30, "max_segment_bytes": 1 << 20});
        v["store"] = json!({"max_blob_bytes": 1024});
    })
    .unwrap();
    assert_eq!(m.queue_limits.max_total_bytes, Some(1 << 30));
    assert_eq!(m.store.max_blob_bytes, 1024);
}

#[test]
fn every_number_is_bounded_and_named() {
    // (section, its value, the field named, expected, found)
    let cases = [
        (
            "queue_limits",
            json!({"max_queues": 0}),
            "queue_limits.max_queues",
            "between 1 and 100000 queues",
            "0",
        ),
        (
            "queue_limits",
            json!({"max_segment_bytes": 1024}),
            "queue_limits.max_segment_bytes",
            "between 65536 and 1073741824 bytes",
            "1024",
        ),
        (
            "queue_limits",
            json!({"max_segment_bytes": u64::MAX}),
            "queue_limits.max_segment_bytes",
            "between 65536 and 1073741824 bytes",
            "18446744073709551615",
        ),
        (
            "queue_limits",
            json!({"max_total_bytes": u64::MAX}),
            "queue_limits.max_total_bytes",
            "between 131072 and 1125899906842624 bytes",
            "18446744073709551615",
        ),
        (
            "store",
            json!({"max_blob_bytes": 0}),
            "store.max_blob_bytes",
            "between 1 and 17592186044416 bytes",
            "0",
        ),
        (
            "store",
            json!({"max_blob_bytes": u64::MAX}),
            "store.max_blob_bytes",
            "between 1 and 17592186044416 bytes",
            "18446744073709551615",
        ),
    ];
    for (section, value, path, expected, found) in cases {
        let (p, e, f) = invalid(|v| v[section] = value.clone());
        assert_eq!(p, path);
        assert!(e.contains(expected), "{path}: {e}");
        assert_eq!(f, found, "{path}");
    }
}

#[test]
fn the_declared_queues_must_fit_the_bounds() {
    let (path, expected, found) = invalid(|v| {
        v["queues"] = json!({"a": {}, "b": {}, "c": {}});
        v["queue_limits"] = json!({"max_queues": 2});
    });
    assert_eq!(path, "queues");
    assert_eq!(expected, "at most queue_limits.max_queues (2) queues");
    assert_eq!(found, "3 queues");
    // Two 16 MiB segments for each of two queues: 64 MiB at least.
    let (path, expected, _) = invalid(|v| {
        v["queues"] = json!({"a": {}, "b": {}});
        v["queue_limits"] = json!({"max_total_bytes": 32 << 20});
    });
    assert_eq!(path, "queue_limits.max_total_bytes");
    assert!(expected.starts_with("between 67108864 and"), "{expected}");
    with(|v| {
        v["queues"] = json!({"a": {}, "b": {}});
        v["queue_limits"] = json!({"max_queues": 2, "max_total_bytes": 64 << 20});
    })
    .unwrap();
    // Declared queues are not held to the bound of queues made through the API.
    with(|v| {
        v["queues"] = json!({"big": {"segment_bytes": 1 << 30}});
        v["queue_limits"] = json!({"max_segment_bytes": 1 << 20});
    })
    .unwrap();
}
