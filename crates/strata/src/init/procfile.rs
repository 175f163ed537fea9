//! A `Procfile` (`TYPE: command` per line, as Heroku and foreman read it): one service
//! per process type, its command turned into the service's `run` argv.

use std::collections::BTreeMap;

use super::detect::{words, Folder, Names};
use super::source::{self, Framework};
use super::{install, Note, Service, ServiceKind};

/// Programs pip installs as scripts into `.deps/bin`, which is not on PATH: run as
/// `python3 -m NAME` instead.
const PYTHON_SCRIPTS: &[&str] = &["gunicorn", "uvicorn", "flask", "celery", "hypercorn"];

impl Folder {
    /// One service per process type of the folder's Procfile. `web` is the one the
    /// gateway routes to; the folder's setup step runs once, with the first service.
    pub(crate) fn procfile_services(&self, names: &mut Names, notes: &mut Vec<Note>) -> Vec<Service> {
        let shown = self.shown("Procfile");
        let (mut processes, malformed) = parse(&self.text("Procfile").unwrap_or_default());
        if !malformed.is_empty() {
            let lines: Vec<String> = malformed.iter().map(usize::to_string).collect();
            notes.push(Note::new(
                shown.clone(),
                format!("line(s) {} not of the form TYPE: command", lines.join(", ")),
                "to skip them",
                "they name no process",
                "fix them and run strata init again",
            ));
        }
        for release in processes.iter().filter(|p| p.kind == "release") {
            notes.push(Note::new(
                shown.clone(),
                format!("release: {}", release.command),
                "not to run it",
                "a release command runs once per deploy, not as a pool of instances",
                "make it the setup step of a service if it must run before the app starts",
            ));
        }
        processes.retain(|p| p.kind != "release");
        // web first: it carries the setup step the others wait for.
        processes.sort_by_key(|p| p.kind != "web");
        let only = processes.len() == 1;
        let setup = self.procfile_setup();
        let python = install::python_deps(self).is_some();
        let mut services: Vec<Service> = Vec::new();
        for process in &processes {
            let name = self.name(names, Some(&process.kind), only);
            let mut service = self.process_service(&name, process, python, notes);
            match (&setup, services.first()) {
                (Some((setup, found)), None) => {
                    notes.push(Note::new(
                        format!("{name}.setup"),
                        found.clone(),
                        setup.run.join(" "),
                        format!("the step runs again only when {} changes", setup.inputs.join(" or ")),
                        format!("edit services.{name}.setup"),
                    ));
                    service.setup = Some(setup.clone());
                }
                (Some(_), Some(first)) => {
                    notes.push(Note::new(
                        format!("{name}.bindings"),
                        format!("the setup step of {}", first.name),
                        format!("to bind {name} to {}", first.name),
                        "the packages are installed once, into the same folder, before either starts",
                        format!(
                            "remove the binding and copy services.{}.setup to services.{name} if it must start alone",
                            first.name
                        ),
                    ));
                    service.bindings.push(first.name.clone());
                }
                (None, _) => {}
            }
            services.push(service);
        }
        if setup.is_none() {
            notes.push(Note::new(
                shown,
                "no requirements.txt, pyproject.toml or package.json with dependencies",
                "no setup step",
                "nothing lists packages to install",
                "add services.NAME.setup to install what the processes need",
            ));
        }
        services
    }

    fn process_service(&self, name: &str, process: &Process, python: bool, notes: &mut Vec<Note>) -> Service {
        let shown = self.shown("Procfile");
        let found = format!("{}: {} in {shown}", process.kind, process.command);
        let command = command(&process.command);
        let mut argv = command.argv;
        let mut why = format!("{} is a process type of the Procfile", process.kind);
        match command.shell {
            Some(reason) => {
                why.push_str(&format!(", run by sh -c as it is because {reason}"));
                if let Some(text) = mangled_expansion(&argv[2]) {
                    notes.push(Note::new(
                        format!("{name}.run"),
                        format!("{text} in the command"),
                        "to keep it",
                        "strata expands ${...} in run itself, before sh sees it, and an unknown name to nothing",
                        format!("write it without braces in services.{name}.run"),
                    ));
                }
            }
            None => {
                if argv[0] == "python" && !install::on_path("python") {
                    argv[0] = "python3".into();
                    why.push_str("; python is not on PATH here, python3 is taken for it");
                }
                if python && PYTHON_SCRIPTS.contains(&argv[0].as_str()) {
                    let script = argv.remove(0);
                    argv.splice(0..0, words(&["python3", "-m", &script]));
                    why.push_str(&format!(
                        "; {script} is installed into .deps, whose scripts are not on PATH"
                    ));
                }
            }
        }
        notes.push(Note::new(
            format!("{name}.run"),
            found,
            argv.join(" "),
            why,
            format!("edit services.{name}.run"),
        ));
        let kind = if process.kind == "web" {
            ServiceKind::Web
        } else {
            ServiceKind::Worker
        };
        let mut service = Service::new(name.to_string(), self.rel.clone(), argv, kind);
        service.env = command.env;
        if python {
            service.env.insert("PYTHONPATH".into(), ".deps".into());
        }
        self.process_source(&mut service, process, notes);
        service
    }

    /// Health path and routes from the files the command names (`app.py`, `app:app`).
    fn process_source(&self, service: &mut Service, process: &Process, notes: &mut Vec<Note>) {
        let name = service.name.clone();
        let mut files: Vec<String> = Vec::new();
        for word in process.command.split_whitespace() {
            let module = word.split(':').next().unwrap_or(word);
            for file in [word.to_string(), format!("{module}.py")] {
                if self.has(&file) && !files.contains(&file) {
                    files.push(file);
                }
            }
        }
        let mut health = None;
        for file in &files {
            let text = self.text(file).unwrap_or_default();
            if file.ends_with(".py") {
                let py = source::python(&text);
                if py.framework == Some(Framework::Flask)
                    && !py.reads_port
                    && !process.command.contains("PORT")
                    && process.command.split_whitespace().any(|w| w == file)
                {
                    let module = file.trim_end_matches(".py");
                    notes.push(Note::new(
                        format!("{name}.run"),
                        format!("{} running Flask's own server without reading PORT", self.shown(file)),
                        "the Procfile's command as it is",
                        "the Procfile says how it runs, but app.run() listens on 5000, not $PORT",
                        format!(
                            "use python3 -m flask --app {module} run --host 127.0.0.1 --port ${{PORT}} in services.{name}.run"
                        ),
                    ));
                }
                service.served.extend(py.routes);
                health = health.or(py.health.map(|h| (file.clone(), h)));
            } else if file.ends_with(".js") {
                let js = source::javascript(&text);
                service.served.extend(js.routes);
                health = health.or(js.health.map(|h| (file.clone(), h)));
            }
        }
        if service.kind == ServiceKind::Worker {
            notes.push(Note::new(
                format!("{name}.routes"),
                format!("the process type {}", process.kind),
                "no routes and no health path",
                "only web gets requests through the gateway; an instance counts as ready once its port \
                 accepts, so a worker serving nothing on $PORT is restarted after 60 s",
                format!(
                    "make it answer on $PORT (a /healthz is enough), or feed it from a queue with services.{name}.consumes"
                ),
            ));
            return;
        }
        let looked_at = if files.is_empty() {
            "the command names no file of this folder".to_string()
        } else {
            "its routes".to_string()
        };
        let (file, path) = match health {
            Some((file, path)) => (self.shown(&file), Some(path)),
            None => (
                files
                    .first()
                    .map(|f| self.shown(f))
                    .unwrap_or_else(|| self.shown("Procfile")),
                None,
            ),
        };
        self.health(service, notes, path, &file, &looked_at);
    }

    /// The folder's install step: Python packages, npm packages, or both; with what it
    /// was made from.
    fn procfile_setup(&self) -> Option<(super::Setup, String)> {
        let python = install::python_deps(self);
        let package = self
            .text("package.json")
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let node = package
            .filter(install::lists_packages)
            .map(|_| install::node_deps(self));
        let mut found: Vec<String> = Vec::new();
        for setup in python.iter().chain(node.iter()) {
            found.push(self.shown(&setup.inputs[0]));
        }
        let setup = match (python, node) {
            (Some(p), Some(n)) => install::both(p, n),
            (Some(s), None) | (None, Some(s)) => s,
            (None, None) => return None,
        };
        Some((setup, found.join(" and ")))
    }
}

/// One line of a Procfile.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Process {
    pub kind: String,
    pub command: String,
}

/// The process types in file order; blank lines, comments and malformed lines skipped
/// (their line numbers returned).
pub(crate) fn parse(text: &str) -> (Vec<Process>, Vec<usize>) {
    let mut processes = Vec::new();
    let mut malformed = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((kind, command))
                if !kind.is_empty()
                    && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    && !command.trim().is_empty() =>
            {
                processes.push(Process {
                    kind: kind.to_string(),
                    command: command.trim().to_string(),
                })
            }
            _ => malformed.push(i + 1),
        }
    }
    (processes, malformed)
}

/// A command as a service runs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Command {
    pub argv: Vec<String>,
    /// Leading `NAME=value` words, moved into the service's env.
    pub env: BTreeMap<String, String>,
    /// Why it runs under `sh -c`, when it does.
    pub shell: Option<&'static str>,
}

/// Splits a simple command into words, with `$NAME` written as strata's `${NAME}`;
/// anything a shell must interpret (quotes, pipes, `&&`, globs, `$(...)`) runs under
/// `sh -c` as it is. `${PORT:-default}` becomes `${PORT}`: strata always sets PORT.
pub(crate) fn command(text: &str) -> Command {
    let text = port_defaults_dropped(text);
    let shell = |why| Command {
        argv: vec!["sh".into(), "-c".into(), text.clone()],
        env: BTreeMap::new(),
        shell: Some(why),
    };
    if text.contains(['\'', '"', '\\']) {
        return shell("it quotes or escapes words");
    }
    if text.contains(['|', '&', ';', '<', '>', '(', ')', '`']) {
        return shell("it uses pipes, redirections, `&&`, `;` or subshells");
    }
    if text.contains(['*', '?', '[', ']', '~']) {
        return shell("it uses wildcards or ~");
    }
    let mut env = BTreeMap::new();
    let mut argv = Vec::new();
    for word in text.split_whitespace() {
        let Some(word) = variables_braced(word) else {
            return shell("it uses shell parameter expansion");
        };
        match word.split_once('=') {
            Some((name, value)) if argv.is_empty() && is_var_name(name) => {
                env.insert(name.to_string(), value.to_string());
            }
            _ => argv.push(word),
        }
    }
    if argv.is_empty() {
        return shell("it only sets variables");
    }
    Command { argv, env, shell: None }
}

/// The first `${...}` in `text` that is not a plain `${NAME}`: strata expands `${...}`
/// in argv itself (an unknown name to nothing), before a shell would see it.
pub(crate) fn mangled_expansion(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let end = after.find('}')?;
        if !is_var_name(&after[..end]) {
            return Some(format!("${{{}}}", &after[..end]));
        }
        rest = &after[end + 1..];
    }
    None
}

fn port_defaults_dropped(text: &str) -> String {
    let mut out = text.to_string();
    for form in [":-", "-", ":="] {
        while let Some(at) = out.find(&format!("${{PORT{form}")) {
            match out[at..].find('}') {
                Some(end) => out.replace_range(at..at + end + 1, "${PORT}"),
                None => break,
            }
        }
    }
    out
}

/// `$NAME` and `${NAME}` as `${NAME}`; None for any other use of `$`.
fn variables_braced(word: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(inner) => {
                let end = inner.find('}')?;
                (&inner[..end], &inner[end + 1..])
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        if !is_var_name(name) {
            return None;
        }
        out.push_str(&format!("${{{name}}}"));
        rest = tail;
    }
    out.push_str(rest);
    Some(out)
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_types_in_order() {
        let (p, bad) = parse("# comment\nweb: gunicorn app:app\n\nworker:python3 worker.py\nnonsense\n");
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].kind.as_str(), p[0].command.as_str()), ("web", "gunicorn app:app"));
        assert_eq!(
            (p[1].kind.as_str(), p[1].command.as_str()),
            ("worker", "python3 worker.py")
        );
        assert_eq!(bad, [5]);
    }

    #[test]
    fn simple_commands_become_words() {
        let c = command("python3 -m http.server $PORT --bind=127.0.0.1");
        assert_eq!(c.argv, ["python3", "-m", "http.server", "${PORT}", "--bind=127.0.0.1"]);
        assert!(c.shell.is_none());
        let c = command("WEB_CONCURRENCY=2 gunicorn -b 0.0.0.0:${PORT:-5000} app:app");
        assert_eq!(c.argv, ["gunicorn", "-b", "0.0.0.0:${PORT}", "app:app"]);
        assert_eq!(c.env["WEB_CONCURRENCY"], "2");
    }

    #[test]
    fn shell_syntax_runs_under_sh() {
        for text in ["cd api && ./serve", "echo 'a b'", "run ${X:-1}", "serve $(cat port)"] {
            let c = command(text);
            assert_eq!(c.argv[..2], ["sh", "-c"], "{text}");
            assert!(c.shell.is_some());
        }
        assert_eq!(mangled_expansion("run ${X:-1} ${PORT}").as_deref(), Some("${X:-1}"));
        assert_eq!(mangled_expansion("run $X ${PORT}"), None);
    }
}
