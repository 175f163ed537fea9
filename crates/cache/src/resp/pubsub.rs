//! Publish/subscribe on the Redis port: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE,
//! PUNSUBSCRIBE, PUBLISH and PUBSUB, with Redis 7.0's replies word for word, and a
//! connection's subscriptions ([`Subscriptions`]). The registry shared by every worker
//! thread is `crate::pubsub`; a subscribed connection's server loop also waits on its
//! mailbox and writes what arrives (`server`).
//!
//! Messages reach the client in RESP2 as arrays, in RESP3 as push frames (`>3 message
//! channel payload`). A RESP2 connection with subscriptions runs only (P)SUBSCRIBE,
//! (P)UNSUBSCRIBE, PING, QUIT and RESET ([`refused_while_subscribed`]); a RESP3 one runs
//! anything. Messages waiting in the mailbox are written before the reply of any
//! command the connection runs, and an unsubscribe takes the channel off the registry
//! before writing what waits, so no message of a channel follows its `unsubscribe`.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use super::parse::Args;
use super::reply::Reply;
use super::table::Cmd;
use crate::pubsub::{Message, PubSub, Subscriber};

/// A connection's subscriptions and its mailbox.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    /// Made at the first subscription, kept for the connection's life.
    mailbox: Option<Arc<Subscriber>>,
    channels: HashSet<Bytes>,
    /// In the order subscribed (PUNSUBSCRIBE without arguments goes in that order, as
    /// Redis 7.0's list of a client's patterns does).
    patterns: Vec<Bytes>,
}

impl Subscriptions {
    /// Channels and patterns subscribed.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Whether any subscription is held (Redis' pub/sub context).
    pub fn active(&self) -> bool {
        self.count() > 0
    }

    /// The mailbox to wait on, while subscribed.
    pub fn mailbox(&self) -> Option<&Arc<Subscriber>> {
        self.mailbox.as_ref().filter(|_| self.active())
    }

    fn mailbox_or_new(&mut self) -> Arc<Subscriber> {
        self.mailbox.get_or_insert_with(Default::default).clone()
    }

    /// Writes the messages waiting in the mailbox (all, or about `budget` bytes of them);
    /// false if it overflowed (the connection is to be closed).
    pub fn write_pending(&self, r: &mut Reply<'_>, budget: Option<usize>) -> bool {
        let Some(mailbox) = &self.mailbox else {
            return true;
        };
        if mailbox.overflowed() {
            return false;
        }
        mailbox.drain(budget, |m| message(r, &m));
        true
    }

    /// Drops every subscription without a reply (RESET, and the connection closing).
    pub fn end(&mut self, ps: &PubSub) {
        let Some(mailbox) = &self.mailbox else {
            return;
        };
        for c in self.channels.drain() {
            ps.unsubscribe(&c, mailbox);
        }
        for p in self.patterns.drain(..) {
            ps.punsubscribe(&p, mailbox);
        }
        mailbox.drain(None, |_| {});
    }
}

/// A message as the client receives it.
fn message(r: &mut Reply<'_>, m: &Message) {
    match &m.pattern {
        Some(p) => {
            r.push(4);
            r.bulk(b"pmessage");
            r.bulk(p);
        }
        None => {
            r.push(3);
            r.bulk(b"message");
        }
    }
    r.bulk(&m.channel);
    r.bulk(&m.payload);
}

fn confirm(r: &mut Reply<'_>, kind: &[u8], name: Option<&[u8]>, count: usize) {
    r.push(3);
    r.bulk(kind);
    r.bulk_or_null(name);
    r.int(count as i64);
}

pub(crate) fn subscribe(r: &mut Reply<'_>, subs: &mut Subscriptions, ps: &PubSub, args: Args<'_>) {
    let mailbox = subs.mailbox_or_new();
    for name in args.iter().skip(1) {
        if !subs.channels.contains(name) {
            let name = Bytes::copy_from_slice(name);
            ps.subscribe(&name, &mailbox);
            subs.channels.insert(name);
        }
        confirm(r, b"subscribe", Some(name), subs.count());
    }
}

pub(crate) fn psubscribe(r: &mut Reply<'_>, subs: &mut Subscriptions, ps: &PubSub, args: Args<'_>) {
    let mailbox = subs.mailbox_or_new();
    for name in args.iter().skip(1) {
        if !subs.patterns.iter().any(|p| p == name) {
            let name = Bytes::copy_from_slice(name);
            ps.psubscribe(&name, &mailbox);
            subs.patterns.push(name);
        }
        confirm(r, b"psubscribe", Some(name), subs.count());
    }
}

/// UNSUBSCRIBE: the channels named, or all (in no particular order, as Redis' dict).
pub(crate) fn unsubscribe(r: &mut Reply<'_>, subs: &mut Subscriptions, ps: &PubSub, args: Args<'_>) {
    let names: Vec<Bytes> = if args.len() > 1 {
        args.iter().skip(1).map(Bytes::copy_from_slice).collect()
    } else {
        subs.channels.iter().cloned().collect()
    };
    if names.is_empty() {
        return confirm(r, b"unsubscribe", None, subs.count());
    }
    for name in names {
        if subs.channels.remove(&name) {
            if let Some(mailbox) = &subs.mailbox {
                ps.unsubscribe(&name, mailbox);
            }
            subs.write_pending(r, None);
        }
        confirm(r, b"unsubscribe", Some(&name), subs.count());
    }
}

/// PUNSUBSCRIBE: the patterns named, or all in the order subscribed.
pub(crate) fn punsubscribe(r: &mut Reply<'_>, subs: &mut Subscriptions, ps: &PubSub, args: Args<'_>) {
    let names: Vec<Bytes> = if args.len() > 1 {
        args.iter().skip(1).map(Bytes::copy_from_slice).collect()
    } else {
        subs.patterns.clone()
    };
    if names.is_empty() {
        return confirm(r, b"punsubscribe", None, subs.count());
    }
    for name in names {
        if let Some(i) = subs.patterns.iter().position(|p| *p == name) {
            subs.patterns.remove(i);
            if let Some(mailbox) = &subs.mailbox {
                ps.punsubscribe(&name, mailbox);
            }
            subs.write_pending(r, None);
        }
        confirm(r, b"punsubscribe", Some(&name), subs.count());
    }
}

/// PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB / HELP (there are no
/// shard channels here: always none). The subcommand and its arity were checked at
/// dispatch (`Spec::subcommand`); CHANNELS' most arguments are checked here, with
/// Redis' older wording, as Redis 7.0 does.
pub(crate) fn pubsub(r: &mut Reply<'_>, ps: &PubSub, args: Args<'_>) {
    let sub = args.get(1);
    let is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    let n = args.len();
    let wrong = |r: &mut Reply<'_>| {
        r.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
            super::reply::truncated(sub, 128)
        ))
    };
    if is(b"channels") || is(b"shardchannels") {
        if n > 3 {
            return wrong(r);
        }
        let found = if is(b"channels") {
            ps.channels((n == 3).then(|| args.get(2)))
        } else {
            Vec::new()
        };
        r.array(found.len());
        for c in found {
            r.bulk(&c);
        }
    } else if is(b"numsub") || is(b"shardnumsub") {
        r.array((n - 2) * 2);
        for c in args.iter().skip(2) {
            r.bulk(c);
            r.int(if is(b"numsub") { ps.numsub(c) as i64 } else { 0 });
        }
    } else if is(b"numpat") {
        r.int(ps.numpat() as i64);
    } else if is(b"help") {
        let lines = [
            "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT",
            "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels, excluding",
            "    pattern subscriptions(default: no channels).",
            "SHARDCHANNELS [<pattern>]",
            "    Return the currently active shard level channels matching a <pattern> (default: '*').",
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Return the number of subscribers for the specified shard level channel(s)",
            "HELP",
            "    Prints this help.",
        ];
        r.array(lines.len());
        for l in lines {
            r.simple(l);
        }
    } else {
        r.error(&super::table::unknown_subcommand("pubsub", sub));
    }
}

/// PING in a RESP2 connection with subscriptions: `pong` and the argument (or an empty
/// string) as an array, as Redis answers there.
pub(crate) fn ping(r: &mut Reply<'_>, args: Args<'_>) {
    r.array(2);
    r.bulk(b"pong");
    r.bulk(if args.len() > 1 { args.get(1) } else { b"" });
}

/// The error a RESP2 connection with subscriptions gets for a command it may not run
/// there; None if it may. `name` is the command's name as Redis writes it
/// (`client|id` for a subcommand).
pub(crate) fn refused_while_subscribed(cmd: Cmd, args: Args<'_>, name: &str) -> Option<String> {
    let allowed = matches!(
        cmd,
        Cmd::Subscribe | Cmd::Unsubscribe | Cmd::Psubscribe | Cmd::Punsubscribe | Cmd::Ping | Cmd::Quit | Cmd::Reset
    );
    if allowed {
        return None;
    }
    let full = match cmd {
        Cmd::Client | Cmd::Config | Cmd::Command | Cmd::Object | Cmd::Pubsub if args.len() > 1 => {
            format!("{name}|{}", String::from_utf8_lossy(args.get(1)).to_ascii_lowercase())
        }
        _ => name.to_string(),
    };
    Some(format!(
        "ERR Can't execute '{full}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    ))
}
