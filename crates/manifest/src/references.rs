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
}
