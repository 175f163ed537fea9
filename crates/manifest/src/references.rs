//! `${NAME}` references that expand to nothing: a name neither strata nor the service's
//! `env` sets, and not in the environment the node is started from. Not an error (the
//! node's environment at `strata up` may differ from `strata validate`'s), but likely a
//! typo (`${PROT}`): `strata validate` and `strata up` say so.

use crate::validate::CONTRACT_ENV;
use crate::{FileSpec, Manifest};

/// The names strata sets for every instance besides the contract's (`PATH` and `HOME`
/// for containers).
const ALSO_SET_BY_STRATA: [&str; 3] = ["TMPDIR", "HOME", "PATH"];

impl Manifest {
    /// A note per `${NAME}` in a service's `run`, `env` values and inline `files` that
    /// nothing sets: not strata, not the service's `env`, and `is_set(NAME)` false (the
    /// node's own environment).
    pub fn unset_references(&self, is_set: impl Fn(&str) -> bool) -> Vec<String> {
        let mut notes = Vec::new();
        for (name, spec) in &self.services {
            // Each text, and the env keys set when it is expanded: `env` values are
            // expanded in key order, each seeing only the keys before it.
            let mut texts: Vec<(String, &str, Option<&str>)> = Vec::new();
            // `$PORT` (a Procfile's habit) is passed as it is unless a shell runs it.
            let shell = spec.run.len() >= 2
                && matches!(
                    spec.run[0].rsplit('/').next(),
                    Some("sh" | "bash" | "dash" | "zsh" | "ash")
                )
                && spec.run[1] == "-c";
            for (i, arg) in spec.run.iter().enumerate() {
                if shell {
                    break;
                }
                if let Some(var) = bare_reference(arg) {
                    notes.push(format!(
                        "services.{name}.run[{i}]: ${var} is passed to the program as it is: strata expands ${{{var}}} (with braces), and only a shell expands ${var} (run it as [\"sh\", \"-c\", \"...\"])"
                    ));
                }
            }
            for (i, arg) in spec.run.iter().enumerate() {
                texts.push((format!("services.{name}.run[{i}]"), arg, None));
            }
            for (key, value) in &spec.env {
                texts.push((format!("services.{name}.env.{key}"), value, Some(key)));
            }
            for (file, source) in &spec.files {
                if let FileSpec::Content { content } = source {
                    texts.push((format!("services.{name}.files.{file}"), content, None));
                }
            }
            for (path, text, before) in texts {
                for var in references(text) {
                    let in_env = spec.env.contains_key(var) && before.is_none_or(|key| var < key);
                    let by_strata = CONTRACT_ENV.contains(&var) || ALSO_SET_BY_STRATA.contains(&var);
                    let known = by_strata || in_env || is_set(var);
                    if !known {
                        notes.push(format!(
                            "{path}: ${{{var}}} is set by nothing (not the instance contract, not the service's env, not this environment): it expands to nothing"
                        ));
                    }
                }
            }
        }
        notes
    }
}

/// The first `$NAME` in `text` without braces (a name: a letter or `_`, then letters,
/// digits and `_`).
fn bare_reference(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(i) = text[at..].find('$') {
        let start = at + i + 1;
        let len = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        if len > 0 && !bytes[start].is_ascii_digit() {
            return Some(&text[start..start + len]);
        }
        at = start;
    }
    None
}

/// The names of the `${NAME}` references in `text`.
fn references(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_reference_nothing_sets_is_noted_with_its_field() {
        let m = crate::parse(
            r#"{"strata": 1, "app": "a", "services": {"web": {
                "run": ["python3", "app.py", "--port", "${PROT}", "${PORT}", "${HOME_DIR}"],
                "env": {"A_NAME": "x", "GREETING": "${A_NAME}", "KEY": "${MY_SECRET}", "LATE": "${ZED}", "ZED": "z"},
                "files": {"conf.ini": {"content": "port=${PORT} key=${NOPE}"}}
            }}}"#,
        )
        .unwrap();
        let notes = m.unset_references(|name| name == "HOME_DIR");
        assert_eq!(notes.len(), 4, "{notes:#?}");
        assert!(
            notes[0].starts_with("services.web.run[3]: ${PROT} is set by nothing"),
            "{notes:#?}"
        );
        assert!(notes[1].starts_with("services.web.env.KEY: ${MY_SECRET}"), "{notes:#?}");
        // ZED is set, but after LATE: LATE's value is expanded before it is.
        assert!(notes[2].starts_with("services.web.env.LATE: ${ZED}"), "{notes:#?}");
        assert!(
            notes[3].starts_with("services.web.files.conf.ini: ${NOPE}"),
            "{notes:#?}"
        );
        assert!(m.unset_references(|_| true).is_empty());
    }

    #[test]
    fn a_reference_without_braces_is_noted_unless_a_shell_runs_it() {
        let bare = |run: &str| {
            let m = crate::parse(&format!(
                r#"{{"strata": 1, "app": "a", "services": {{"web": {{"run": {run}}}}}}}"#
            ))
            .unwrap();
            m.unset_references(|_| true)
        };
        let notes = bare(r#"["python3", "-m", "http.server", "$PORT", "--bind", "127.0.0.1"]"#);
        assert_eq!(notes.len(), 1, "{notes:#?}");
        assert!(
            notes[0].starts_with("services.web.run[3]: $PORT is passed to the program as it is"),
            "{notes:#?}"
        );
        assert!(bare(r#"["gunicorn", "-b", "127.0.0.1:$PORT", "app:app"]"#)[0].contains("$PORT"));
        assert!(bare(r#"["sh", "-c", "exec python3 -m http.server $PORT"]"#).is_empty());
        assert!(bare(r#"["/bin/bash", "-c", "python3 app.py $PORT"]"#).is_empty());
        assert!(bare(r#"["python3", "app.py", "${PORT}", "cost: $5", "a$"]"#).is_empty());
    }
}
