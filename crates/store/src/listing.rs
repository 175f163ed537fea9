//! Listing: a page of keys (or blob names) of a namespace with a prefix, after a cursor,
//! merged from two sources: redb's table and the overlay's newer effects over it (an
//! overlay entry wins over the table's; a deleted one hides it).

use std::ops::Bound;

use redb::ReadableTable;

use crate::overlay::{Pending, PendingValue};
use crate::record::{corrupt, db_err, table_key, value_body, value_header, BlobRecord};
use crate::{BlobItem, ListItem, Page, StoreError};

/// The start of a listing (exclusive: the cursor; inclusive: the prefix) and the
/// prefix every table key of it starts with.
pub(crate) fn list_bounds(ns: &str, prefix: &str, after: Option<&str>) -> (Vec<u8>, bool, Vec<u8>) {
    let prefix_key = table_key(ns, prefix);
    match after.map(|a| table_key(ns, a)) {
        Some(a) if a >= prefix_key => (a, true, prefix_key),
        _ => (prefix_key.clone(), false, prefix_key),
    }
}

/// A page of `ns`'s values: [`scan`] over the `values` table and the overlay's values.
pub(crate) fn list_values(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    ns: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    pending: Vec<(Vec<u8>, Pending<PendingValue>)>,
) -> Result<Page<ListItem>, StoreError> {
    let pending = pending.into_iter().map(|(k, p)| {
        let version = p.version;
        (k, p.item.map(|v| ((v.updated_ms, v.value.len() as u64), version)))
    });
    scan(
        table,
        ns,
        prefix,
        after,
        limit,
        pending,
        |stored| {
            let (version, updated_ms) = value_header(stored)?;
            Ok(((updated_ms, value_body(stored).len() as u64), version))
        },
        |key, ((updated_ms, size), version)| ListItem {
            key,
            version,
            size,
            updated_ms,
        },
    )
}

/// A page of `ns`'s blobs: [`scan`] over the `blobs` table and the overlay's blobs.
pub(crate) fn list_blobs(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    ns: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    pending: Vec<(Vec<u8>, Pending<BlobRecord>)>,
) -> Result<Page<BlobItem>, StoreError> {
    let pending = pending.into_iter().map(|(k, p)| (k, p.item.map(|r| r.meta())));
    scan(
        table,
        ns,
        prefix,
        after,
        limit,
        pending.map(|(k, m)| (k, m.map(|m| (m, 0)))),
        |stored| Ok((BlobRecord::decode(stored)?.meta(), 0)),
        |name, (meta, _)| BlobItem { name, meta },
    )
}

/// Up to `limit` entries of `ns` whose key starts with `prefix` and sorts after `after`,
/// in key order, and whether more follow: the table's entries, overridden by `pending`
/// (the overlay's entries of that range, in key order; None: deleted).
#[allow(clippy::too_many_arguments)]
fn scan<D, T>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    ns: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    pending: impl Iterator<Item = (Vec<u8>, Option<D>)>,
    decode: impl Fn(&[u8]) -> Result<D, StoreError>,
    item: impl Fn(String, D) -> T,
) -> Result<Page<T>, StoreError> {
    let (start, exclusive, prefix_key) = list_bounds(ns, prefix, after);
    let lower = match exclusive {
        true => Bound::Excluded(start.as_slice()),
        false => Bound::Included(start.as_slice()),
    };
    let mut stored = table.range::<&[u8]>((lower, Bound::Unbounded)).map_err(db_err)?;
    let mut next_stored = || -> Result<Option<(Vec<u8>, D)>, StoreError> {
        match stored.next() {
            None => Ok(None),
            Some(entry) => {
                let (k, v) = entry.map_err(db_err)?;
                let k = k.value();
                if !k.starts_with(&prefix_key) {
                    return Ok(None);
                }
                Ok(Some((k.to_vec(), decode(v.value())?)))
            }
        }
    };
    let mut pending = pending.filter(|(k, _)| !exclusive || *k > start).peekable();
    let skip = ns.len() + 1;
    let mut items = Vec::new();
    let mut last: Option<String> = None;
    let mut next = None;
    let mut from_table = next_stored()?;
    loop {
        // The smaller key of the two; on a tie the overlay's entry wins.
        let take_pending = match (pending.peek(), &from_table) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((pk, _)), Some((tk, _))) => pk <= tk,
        };
        let (k, d) = if take_pending {
            let (k, d) = pending.next().expect("peeked");
            if from_table.as_ref().is_some_and(|(tk, _)| *tk == k) {
                from_table = next_stored()?;
            }
            match d {
                Some(d) => (k, d),
                None => continue,
            }
        } else {
            let entry = from_table.take().expect("checked");
            from_table = next_stored()?;
            entry
        };
        if items.len() == limit {
            next = last.take();
            break;
        }
        let key = String::from_utf8(k[skip..].to_vec()).map_err(|_| corrupt("key"))?;
        last = Some(key.clone());
        items.push(item(key, d));
    }
    Ok(Page { items, next })
}
