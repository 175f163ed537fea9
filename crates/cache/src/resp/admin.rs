//! Connection and server commands: HELLO, AUTH, CLIENT, COMMAND, CONFIG (INFO is `info`). Enough of
//! each for client libraries' handshakes and for people poking with redis-cli. AUTH (and
//! HELLO's AUTH) check the default user's password when one is set
//! ([`super::RespConfig::password`]).

use super::parse::Args;
use super::reply::{truncated, Reply, SYNTAX};
use super::state::{ConnectionContext, Session};
use super::table::{lookup_full, unknown_subcommand, Spec, Subcommand, COMMANDS};
use crate::cache::{parse_i64, CacheStats};
use crate::glob;
use crate::keyspace::Keyspace;

/// The Redis version the port follows, reported to clients (INFO's `redis_version`,
/// HELLO's `version`). Plain dotted numbers: clients parse it (rq takes
/// `int(i) for i in version.split('.')[:3]`, Python's `packaging.version` rejects
/// anything else), so strata's own version is a field of its own, INFO's
/// `strata_version` (`STRATA_VERSION`).
pub const REDIS_VERSION: &str = "7.0.0";

/// strata's own version (INFO's `strata_version`).
pub(crate) const STRATA_VERSION: &str = env!("CARGO_PKG_VERSION");

/// HELLO [protover [AUTH username password] [SETNAME clientname]]: options checked
/// first, then the credentials, then (authenticated) the name and protocol, as Redis 7.0.
pub(crate) fn hello(r: &mut Reply<'_>, session: &mut Session, shared: &ConnectionContext, args: Args<'_>) {
    let mut proto = if session.resp3 { 3 } else { 2 };
    let mut i = 1;
    if args.len() > 1 {
        match parse_i64(args.get(1)) {
            None => return r.error("ERR Protocol version is not an integer or out of range"),
            Some(2) => proto = 2,
            Some(3) => proto = 3,
            Some(_) => return r.error("NOPROTO unsupported protocol version"),
        }
        i = 2;
    }
    let mut name = None;
    let mut credentials = None;
    while i < args.len() {
        let o = args.get(i);
        if o.eq_ignore_ascii_case(b"auth") && i + 2 < args.len() {
            credentials = Some((args.get(i + 1), args.get(i + 2)));
            i += 3;
        } else if o.eq_ignore_ascii_case(b"setname") && i + 1 < args.len() {
            name = Some(args.get(i + 1));
            i += 2;
        } else {
            return r.error(&format!("ERR Syntax error in HELLO option '{}'", truncated(o, 128)));
        }
    }
    if let Some((user, password)) = credentials {
        if let Err(e) = check_auth(shared, user, password) {
            return r.error(e);
        }
        session.authenticated = true;
    }
    if !session.authenticated {
        return r.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(name) = name {
        if let Err(e) = check_name(name) {
            return r.error(e);
        }
    }
    if let Some(name) = name {
        session.name = (!name.is_empty()).then(|| name.to_vec());
    }
    session.resp3 = proto == 3;
    r.resp3 = session.resp3;
    r.map(7);
    r.bulk(b"server");
    r.bulk(b"redis");
    r.bulk(b"version");
    r.bulk(REDIS_VERSION.as_bytes());
    r.bulk(b"proto");
    r.int(proto);
    r.bulk(b"id");
    r.int(session.id as i64);
    r.bulk(b"mode");
    r.bulk(b"standalone");
    r.bulk(b"role");
    r.bulk(b"master");
    r.bulk(b"modules");
    r.array(0);
}

/// There is one user, `default`. Without a password set it is Redis' `nopass` user (any
/// password logs in, as in a fresh Redis); with one, only that password does. Other
/// users do not exist.
fn check_auth(shared: &ConnectionContext, user: &[u8], password: &[u8]) -> Result<(), &'static str> {
    const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
    let matches = match &shared.server.password {
        None => true,
        Some(p) => constant_time_eq(p, password),
    };
    if user == b"default" && matches {
        Ok(())
    } else {
        Err(WRONGPASS)
    }
}

/// Compares without stopping at the first difference, so that the time taken tells an
/// attacker nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// AUTH [username] password.
pub(crate) fn auth(r: &mut Reply<'_>, session: &mut Session, shared: &ConnectionContext, args: Args<'_>) {
    let checked = match args.len() {
        2 if shared.server.password.is_none() => {
            return r.error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            )
        }
        2 => check_auth(shared, b"default", args.get(1)),
        3 => check_auth(shared, args.get(1), args.get(2)),
        _ => return r.error(SYNTAX),
    };
    match checked {
        Ok(()) => {
            session.authenticated = true;
            r.ok();
        }
        Err(e) => r.error(e),
    }
}

fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err("ERR Client names cannot contain spaces, newlines or special characters.")
    }
}

/// CLIENT's subcommands (known, with their arities: checked at dispatch,
/// `Spec::subcommand`).
pub(crate) fn client(r: &mut Reply<'_>, session: &mut Session, shared: &ConnectionContext, args: Args<'_>) {
    let sub = args.get(1);
    let is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    if is(b"setname") {
        match check_name(args.get(2)) {
            Ok(()) => {
                let name = args.get(2);
                session.name = (!name.is_empty()).then(|| name.to_vec());
                r.ok();
            }
            Err(e) => r.error(e),
        }
    } else if is(b"getname") {
        r.bulk_or_null(session.name.as_deref());
    } else if is(b"id") {
        r.int(session.id as i64);
    } else if is(b"info") {
        let line = client_line(session, shared, "client|info");
        r.verbatim(&line);
    } else if is(b"list") {
        client_list(r, session, shared, args);
    } else if is(b"setinfo") {
        let attr = args.get(2);
        if attr.eq_ignore_ascii_case(b"lib-name") {
            session.lib_name = String::from_utf8_lossy(args.get(3)).into_owned();
            r.ok();
        } else if attr.eq_ignore_ascii_case(b"lib-ver") {
            session.lib_ver = String::from_utf8_lossy(args.get(3)).into_owned();
            r.ok();
        } else {
            r.error(&format!("ERR Unrecognized option '{}'", truncated(attr, 128)));
        }
    } else if is(b"reply") {
        // Redis' flags (`state::Replies`): OFF and SKIP answer nothing themselves.
        let mode = args.get(2);
        if mode.eq_ignore_ascii_case(b"on") {
            session.replies.off = false;
            session.replies.skip = false;
            r.ok();
        } else if mode.eq_ignore_ascii_case(b"off") {
            session.replies.off = true;
        } else if mode.eq_ignore_ascii_case(b"skip") {
            if !session.replies.off {
                session.replies.skip_next = true;
            }
        } else {
            r.error(SYNTAX);
        }
    } else if is(b"no-evict") || is(b"no-touch") {
        // Accepted and without effect: no client is evicted for its output, and reads
        // do not count as touches here. The argument is checked as Redis checks it.
        let on_off = args.get(2);
        if on_off.eq_ignore_ascii_case(b"on") || on_off.eq_ignore_ascii_case(b"off") {
            r.ok();
        } else {
            r.error(SYNTAX);
        }
    } else if is(b"help") {
        help(
            r,
            &[
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)|ID <id> [<id> ...]]",
                "    Return information about client connections (this one only, when it",
                "    is of that type or has one of those ids).",
                "NO-EVICT (ON|OFF)",
                "    Accepted; no client is evicted here.",
                "REPLY (ON|OFF|SKIP)",
                "    Control the replies sent to the current connection.",
                "SETINFO <option> <value>",
                "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "HELP",
                "    Prints this help.",
            ],
        );
    } else {
        r.error(&unknown_subcommand("client", sub));
    }
}

/// A reply of HELP: one simple string per line.
fn help(r: &mut Reply<'_>, lines: &[&str]) {
    r.array(lines.len());
    for l in lines {
        r.simple(l);
    }
}

/// CLIENT LIST [TYPE type | ID id...]: the options as Redis 7.0 parses them. Only this
/// connection is ever listed, as the workers keep no registry of each other's clients,
/// so a filter lists it or nothing (an id listed twice lists it twice, as Redis).
fn client_list(r: &mut Reply<'_>, session: &Session, shared: &ConnectionContext, args: Args<'_>) {
    let times = if args.len() == 4 && args.get(2).eq_ignore_ascii_case(b"type") {
        let wanted = args.get(3);
        // Redis' types; this connection is `pubsub` while subscribed, else `normal`.
        let this: &[u8] = if session.subs.active() { b"pubsub" } else { b"normal" };
        let known = [&b"normal"[..], b"slave", b"replica", b"pubsub", b"master"];
        if !known.iter().any(|t| t.eq_ignore_ascii_case(wanted)) {
            return r.error(&format!("ERR Unknown client type '{}'", truncated(wanted, usize::MAX)));
        }
        usize::from(this.eq_ignore_ascii_case(wanted))
    } else if args.len() > 3 && args.get(2).eq_ignore_ascii_case(b"id") {
        let mut times = 0;
        for id in args.iter().skip(3) {
            match parse_i64(id) {
                Some(id) => times += usize::from(id == session.id as i64),
                None => return r.error("ERR Invalid client ID"),
            }
        }
        times
    } else if args.len() == 2 {
        1
    } else {
        return r.error(SYNTAX);
    };
    r.verbatim(&client_line(session, shared, "client|list").repeat(times));
}

/// This connection's line of CLIENT INFO and CLIENT LIST; `cmd` is the command being
/// run (Redis' `client|info`, `client|list`).
fn client_line(session: &Session, shared: &ConnectionContext, cmd: &str) -> String {
    let age = session.created.elapsed().as_secs();
    format!(
        "id={} addr={} laddr={} fd=0 name={} age={age} idle=0 flags={} db=0 sub={} psub={} ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={cmd} user=default redir=-1 resp={} lib-name={} lib-ver={}\n",
        session.id,
        session.peer,
        shared.server.addr(),
        String::from_utf8_lossy(session.name.as_deref().unwrap_or_default()),
        if session.subs.active() { "P" } else { "N" },
        session.subs.channel_count(),
        session.subs.pattern_count(),
        if session.resp3 { 3 } else { 2 },
        session.lib_name,
        session.lib_ver,
    )
}

/// COMMAND, and its subcommands (checked at dispatch, as CLIENT's).
pub(crate) fn command(r: &mut Reply<'_>, args: Args<'_>) {
    if args.len() == 1 {
        return all_commands(r);
    }
    let sub = args.get(1);
    let is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    if is(b"count") {
        r.int(COMMANDS.len() as i64);
    } else if is(b"info") {
        if args.len() == 2 {
            return all_commands(r);
        }
        // Each by its full name, a subcommand's too (`client|list`), as Redis 7.0.
        r.array(args.len() - 2);
        for i in 2..args.len() {
            match lookup_full(args.get(i)) {
                Some((spec, None)) => command_entry(r, spec),
                Some((spec, Some(sub))) => subcommand_entry(r, spec, sub),
                None => r.null(),
            }
        }
    } else if is(b"getkeys") {
        super::getkeys::getkeys(r, args);
    } else if is(b"docs") {
        // No documentation to give: clients fall back to their own hints.
        r.map(0);
    } else if is(b"list") {
        command_list(r, args);
    } else if is(b"help") {
        help(
            r,
            &[
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all Redis commands.",
                "COUNT",
                "    Return the total number of commands in this Redis server.",
                "LIST [FILTERBY (MODULE <module-name>|PATTERN <pattern>)]",
                "    Return a list of all commands in this Redis server (subcommands too).",
                "GETKEYS <full-command>",
                "    Return the keys from a full Redis command.",
                "INFO [<command-name> ...]",
                "    Return details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple Redis commands (strata has",
                "    none: an empty map).",
                "HELP",
                "    Prints this help.",
            ],
        );
    } else {
        r.error(&unknown_subcommand("command", sub));
    }
}

/// COMMAND LIST [FILTERBY (MODULE name | ACLCAT category | PATTERN pattern)]: every
/// command and subcommand by its full name (`client|list`), as Redis 7.0 lists them, the
/// pattern a glob matched regardless of case. There are no modules, so a MODULE filter
/// lists nothing, and no ACL categories, so an ACLCAT filter is refused rather than
/// answered wrongly.
fn command_list(r: &mut Reply<'_>, args: Args<'_>) {
    let pattern = match args.len() {
        2 => None,
        5 if args.get(2).eq_ignore_ascii_case(b"filterby") => {
            let kind = args.get(3);
            if kind.eq_ignore_ascii_case(b"pattern") {
                Some(args.get(4))
            } else if kind.eq_ignore_ascii_case(b"module") {
                return r.array(0);
            } else if kind.eq_ignore_ascii_case(b"aclcat") {
                return r.error(
                    "ERR COMMAND LIST FILTERBY ACLCAT is not supported: strata's commands have no ACL categories",
                );
            } else {
                return r.error(SYNTAX);
            }
        }
        _ => return r.error(SYNTAX),
    };
    let names: Vec<String> = COMMANDS
        .iter()
        .flat_map(|spec| {
            let subs = spec.subcommands().iter();
            std::iter::once(spec.name.to_string()).chain(subs.map(|s| format!("{}|{}", spec.name, s.name)))
        })
        .filter(|name| pattern.is_none_or(|p| glob::matches(p, name.as_bytes(), true)))
        .collect();
    r.array(names.len());
    for name in names {
        r.bulk(name.as_bytes());
    }
}

fn all_commands(r: &mut Reply<'_>) {
    r.array(COMMANDS.len());
    for spec in COMMANDS {
        command_entry(r, spec);
    }
}

/// A command's entry, its subcommands' entries last (as Redis 7.0 lists them).
fn command_entry(r: &mut Reply<'_>, spec: &Spec) {
    let keys = (spec.first_key, spec.last_key, spec.step);
    entry_fields(r, spec.name, spec.arity, spec.flags, keys);
    let subs = spec.subcommands();
    r.array(subs.len());
    for sub in subs {
        subcommand_entry(r, spec, sub);
    }
}

/// A subcommand's entry, under its full name (`client|list`).
fn subcommand_entry(r: &mut Reply<'_>, spec: &Spec, sub: &Subcommand) {
    let name = format!("{}|{}", spec.name, sub.name);
    let keys = if sub.key > 0 { (sub.key, sub.key, 1) } else { (0, 0, 0) };
    entry_fields(r, &name, sub.arity, sub.flags, keys);
    r.array(0);
}

/// An entry's first nine fields: name, arity, flags, first key, last key, step, then
/// ACL categories, tips and key specifications (none: strata has no ACLs).
fn entry_fields(r: &mut Reply<'_>, name: &str, arity: i32, flags: &[&str], (first, last, step): (i32, i32, i32)) {
    r.array(10);
    r.bulk(name.as_bytes());
    r.int(arity as i64);
    r.set(flags.len());
    for f in flags {
        r.simple(f);
    }
    r.int(first as i64);
    r.int(last as i64);
    r.int(step as i64);
    r.set(0);
    r.set(0);
    r.array(0);
}

/// CONFIG's subcommands (checked at dispatch, as CLIENT's); the keyspace holds every
/// shard (for the figures).
pub(crate) fn config(r: &mut Reply<'_>, shared: &ConnectionContext, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let sub = args.get(1);
    if sub.eq_ignore_ascii_case(b"get") {
        let t = CacheStats::from_shards(ks.stats()).total;
        let server = &shared.server;
        let params: [(&str, String); 22] = [
            ("save", String::new()),
            ("appendonly", "no".into()),
            ("maxmemory", t.max_bytes.to_string()),
            ("maxmemory-policy", "allkeys-lru".into()),
            ("maxmemory-samples", shared.cache.config().eviction_samples.to_string()),
            ("databases", "1".into()),
            ("proto-max-bulk-len", server.limits.max_bulk.to_string()),
            ("port", server.addr().port().to_string()),
            // Whole seconds, as Redis has it (0: never), rounded up.
            (
                "timeout",
                server
                    .timeouts
                    .idle
                    .map_or(0, |t| t.as_secs_f64().ceil() as u64)
                    .to_string(),
            ),
            ("maxclients", server.max_clients.to_string()),
            ("client-query-buffer-limit", server.max_query_bytes.to_string()),
            ("maxmemory-clients", server.client_memory.max().to_string()),
            // No keyspace notifications are sent (libraries read this before relying
            // on them).
            ("notify-keyspace-events", String::new()),
            // The built-in encoding limits (fixed here), under Redis 7's names and the
            // older ones it still answers to.
            (
                "hash-max-listpack-entries",
                crate::hash::LISTPACK_MAX_ENTRIES.to_string(),
            ),
            ("hash-max-listpack-value", crate::hash::LISTPACK_MAX_VALUE.to_string()),
            (
                "hash-max-ziplist-entries",
                crate::hash::LISTPACK_MAX_ENTRIES.to_string(),
            ),
            ("hash-max-ziplist-value", crate::hash::LISTPACK_MAX_VALUE.to_string()),
            (
                "zset-max-listpack-entries",
                crate::zset::LISTPACK_MAX_ENTRIES.to_string(),
            ),
            ("zset-max-listpack-value", crate::zset::LISTPACK_MAX_VALUE.to_string()),
            (
                "zset-max-ziplist-entries",
                crate::zset::LISTPACK_MAX_ENTRIES.to_string(),
            ),
            ("zset-max-ziplist-value", crate::zset::LISTPACK_MAX_VALUE.to_string()),
            ("set-max-intset-entries", crate::set::INTSET_MAX_ENTRIES.to_string()),
        ];
        let matched: Vec<&(&str, String)> = params
            .iter()
            .filter(|(name, _)| args.iter().skip(2).any(|p| glob::matches(p, name.as_bytes(), true)))
            .collect();
        r.map(matched.len());
        for (name, value) in matched {
            r.bulk(name.as_bytes());
            r.bulk(value.as_bytes());
        }
    } else if sub.eq_ignore_ascii_case(b"set") {
        r.error("ERR CONFIG SET is not supported: strata's cache is configured by the node");
    } else if sub.eq_ignore_ascii_case(b"resetstat") {
        // INFO's counters start again from here (as Redis' resetServerStats): commands,
        // errors, traffic, connections, keyspace hits and misses, expiries, evictions;
        // and the memory peak from what is used now.
        let stats = CacheStats::from_shards(ks.stats());
        let (totals, counters) = super::info::counted(shared, &stats);
        shared.server.baseline.reset(totals, &counters);
        shared
            .server
            .memory_peak
            .store(stats.total.bytes, std::sync::atomic::Ordering::Relaxed);
        r.ok();
    } else if sub.eq_ignore_ascii_case(b"help") {
        help(
            r,
            &[
                "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Not supported: strata's cache is configured by the node.",
                "RESETSTAT",
                "    Reset the statistics reported by the INFO command.",
                "HELP",
                "    Prints this help.",
            ],
        );
    } else {
        r.error(&unknown_subcommand("config", sub));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redis_version_is_three_numbers_as_clients_parse_it() {
        // rq: `tuple(int(i) for i in version.split('.')[:3])`.
        let parts: Vec<u32> = REDIS_VERSION
            .split('.')
            .map(|p| {
                p.parse()
                    .unwrap_or_else(|_| panic!("{p:?} in {REDIS_VERSION:?} is no number"))
            })
            .collect();
        assert_eq!(parts.len(), 3, "{REDIS_VERSION:?}");
        assert_eq!(parts[..2], [7, 0], "the level the port follows");
    }
}
