//! The checks of a function: its name against the services', its trigger (HTTP, queue,
//! store, timer, cron), its instances, concurrency, timeout and keep-warm bounds.

use super::*;

pub(super) fn check_function(m: &Manifest, name: &str, f: &FunctionSpec, path: &FieldPath, p: &mut Problems) {
    let before = p.len();
    if m.services.contains_key(name) {
        p.add(invalid(
            path.clone(),
            "a name no service uses (a function runs as a pool of its own name)",
            format!("{}, also a service", quoted(name)),
        ));
    }
    let trigger = &f.trigger;
    let tpath = path.key("trigger");
    let set: Vec<&str> = [
        ("queue", trigger.queue.is_some()),
        ("store", trigger.store.is_some()),
        ("timer", trigger.timer.is_some()),
        ("http", trigger.http.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    if set.len() != 1 {
        let found = if set.is_empty() {
            "none of them".to_string()
        } else {
            set.join(" and ")
        };
        p.add(invalid(
            tpath.clone(),
            "exactly one of queue, store, timer or http",
            found,
        ));
    }
    if let Some(q) = &trigger.queue {
        let qpath = tpath.key("queue");
        if !m.queues.contains_key(&q.queue) {
            let declared: Vec<&str> = m.queues.keys().map(String::as_str).collect();
            p.add(invalid(
                qpath.key("queue"),
                format!("a queue declared under queues ({})", declared.join(", ")),
                quoted(&q.queue),
            ));
        }
        let group = q.group.as_deref().unwrap_or(name);
        if !is_queue_name(group) {
            p.add(invalid(qpath.key("group"), EXPECT_QUEUE_NAME, quoted(group)));
        }
        if !(1..=10_000).contains(&q.batch) {
            p.add(invalid(
                qpath.key("batch"),
                "between 1 and 10000 messages",
                q.batch.to_string(),
            ));
        }
        // One consumer group shared by two pools would split its messages between them.
        let services = m.services.iter().filter_map(|(n, s)| {
            let c = s.consumes.as_ref()?;
            Some((format!("service {n:?}"), &c.queue, c.group.clone()))
        });
        let functions = m
            .functions
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .filter_map(|(n, f)| {
                let t = f.trigger.queue.as_ref()?;
                Some((
                    format!("function {n:?}"),
                    &t.queue,
                    t.group.clone().unwrap_or_else(|| n.clone()),
                ))
            });
        if let Some((who, _, _)) = services
            .chain(functions)
            .find(|(_, queue, g)| **queue == q.queue && g == group)
        {
            p.add(invalid(
                qpath.key("group"),
                format!("a consumer group of {} no other pool consumes", q.queue),
                format!(
                    "{} (by default the function's name), also consumed by {who}",
                    quoted(group)
                ),
            ));
        }
    }
    if let Some(s) = &trigger.store {
        if !is_queue_name(&s.namespace) {
            p.add(invalid(
                tpath.key("store").key("namespace"),
                EXPECT_QUEUE_NAME,
                quoted(&s.namespace),
            ));
        }
    }
    if let Some(t) = &trigger.timer {
        let timer = tpath.key("timer");
        match (t.interval_ms, &t.cron) {
            (Some(ms), None) => {
                p.check(positive(timer.key("interval_ms"), ms, "milliseconds"));
            }
            (None, Some(cron)) => {
                if let Err(e) = crate::cron::Cron::parse(cron) {
                    p.add(invalid(
                        timer.key("cron"),
                        format!("a cron schedule such as \"*/5 * * * *\" ({e})"),
                        quoted(cron),
                    ));
                }
            }
            (None, None) => p.add(invalid(timer, "one of interval_ms or cron", "neither")),
            (Some(_), Some(_)) => p.add(invalid(timer, "one of interval_ms or cron", "both")),
        }
    }
    if let Some(route) = &trigger.http {
        let rpath = match route {
            RouteSpec::Prefix(_) => tpath.key("http"),
            RouteSpec::Full(_) => tpath.key("http").key("path"),
        };
        if !route.path().starts_with('/') {
            p.add(invalid(rpath, "a path starting with /", quoted(route.path())));
        }
    }
    if !f.path.starts_with('/') {
        p.add(invalid(path.key("path"), "a path starting with /", quoted(&f.path)));
    }
    if f.concurrency == 0 {
        p.add(invalid(path.key("concurrency"), "at least 1 event per instance", "0"));
    }
    if f.max_instances == 0 || f.max_instances > MAX_INSTANCES {
        p.add(invalid(
            path.key("max_instances"),
            format!("between 1 and {MAX_INSTANCES}"),
            f.max_instances.to_string(),
        ));
    }
    p.check(positive(path.key("keep_warm_ms"), f.keep_warm_ms, "milliseconds"));
    p.check(positive(path.key("timeout_ms"), f.timeout_ms, "milliseconds"));
    // The rest (run, env, files, setup, health) is checked as the service it runs as.
    // Its instances and relay are max_instances, keep_warm_ms and timeout_ms again: once
    // those were reported above, the service's words for them would only repeat them.
    let mut as_service = Problems::default();
    check_service(m, name, &f.service(name), path, &mut as_service);
    let reported = p.len() > before;
    let repeats = [path.key("instances").to_string(), path.key("relay").to_string()];
    for problem in as_service.0 {
        let at = problem.path().unwrap_or_default();
        if !(reported && repeats.iter().any(|r| at.starts_with(r.as_str()))) {
            p.add(problem);
        }
    }
}
