//! `strata init`: looks at an app's folder, guesses the services it runs, and writes a
//! `strata.json` to start from, saying for each guess what it found, what it chose, why,
//! and what to edit if the guess is wrong.
//!
//! Layout:
//! - this file: [`run`], the command; the guessed [`Service`]s, their routes, and the
//!   [`Note`] that explains each choice.
//! - `detect`: which folders hold an app and which kind each runs, in order: a
//!   Procfile, Flask or FastAPI, a package.json, a Python program reading PORT, an
//!   executable.
//! - `python`, `node`: a folder's Python app (Flask, FastAPI, a program reading PORT)
//!   and its Node app (package.json).
//! - `procfile`: a Procfile, one service per process type.
//! - `source`: what the source text says: framework, app name, routes, PORT.
//! - `install`: the setup steps (pip into `.deps`, npm install).
//! - `write`: the manifest text, its validation, and writing it without overwriting
//!   unasked.
//!
//! The manifest is checked with [`strata_manifest::parse`] before anything is written.

mod detect;
mod install;
mod node;
mod procfile;
mod python;
mod source;
mod write;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Result};

/// The gateway address written into the manifest (the manifest's default).
const GATEWAY_LISTEN: &str = "127.0.0.1:8080";

/// Subfolders whose app is taken to serve the site's root when the app's folder holds
/// no app itself.
const FRONT_NAMES: &[&str] = &["web", "www", "site", "frontend", "front", "ui", "client", "app"];

pub struct InitOptions {
    /// The app's folder.
    pub dir: PathBuf,
    /// Take every guess without asking.
    pub yes: bool,
    /// Replace an existing strata.json.
    pub force: bool,
    /// Print the manifest instead of writing it.
    pub stdout: bool,
}

/// A service as guessed, before it is written.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub name: String,
    pub workdir: Option<String>,
    pub run: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub setup: Option<Setup>,
    pub routes: Vec<String>,
    pub health: Option<String>,
    pub bindings: Vec<String>,
    pub kind: ServiceKind,
    /// Paths the source declares routes for (to pick a route prefix).
    pub served: Vec<String>,
}

impl Service {
    pub(crate) fn new(name: String, workdir: Option<String>, run: Vec<String>, kind: ServiceKind) -> Service {
        Service {
            name,
            workdir,
            run,
            env: BTreeMap::new(),
            setup: None,
            routes: Vec::new(),
            health: None,
            bindings: Vec::new(),
            kind,
            served: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// Serves requests: gets a route.
    Web,
    /// A Procfile process other than web: no route.
    Worker,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Setup {
    pub run: Vec<String>,
    /// Files whose change makes the step run again.
    pub inputs: Vec<String>,
}

/// One decision, printed as one line.
#[derive(Debug, Clone)]
pub(crate) struct Note {
    /// The manifest field (`web.run`) or file it is about.
    pub subject: String,
    pub found: String,
    pub chose: String,
    pub why: String,
    /// What to edit if the guess is wrong.
    pub edit: String,
}

impl Note {
    pub(crate) fn new(
        subject: impl Into<String>,
        found: impl Into<String>,
        chose: impl Into<String>,
        why: impl Into<String>,
        edit: impl Into<String>,
    ) -> Note {
        Note {
            subject: subject.into(),
            found: found.into(),
            chose: chose.into(),
            why: why.into(),
            edit: edit.into(),
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: found {}; chose {}, because {}; if wrong, {}",
            self.subject, self.found, self.chose, self.why, self.edit
        )
    }
}

/// `strata init`: detect, explain, validate, write.
pub fn run(options: InitOptions) -> Result<()> {
    // `-C app init .` is app/./: say app.
    let mut dir: PathBuf = options.dir.components().filter(|c| *c != Component::CurDir).collect();
    if dir.as_os_str().is_empty() {
        dir = PathBuf::from(".");
    }
    let dir = &dir;
    if !dir.is_dir() {
        bail!(
            "{} is not a folder; run strata init in your app's folder, or name it: strata init PATH",
            dir.display()
        );
    }
    let target = dir.join("strata.json");
    let interactive = !options.yes && std::io::stdin().is_terminal();
    let exists = target.exists();
    if exists && !options.stdout && !options.force && !interactive {
        bail!(
            "{} already exists and was left as it is; pass --force to replace it, or --stdout to print \
             the guess and compare",
            target.display()
        );
    }
    let app = app_name(dir);
    let detected = detect::detect(dir)?;
    // With --stdout the manifest goes to stdout: the explanation goes to stderr.
    let mut say: Box<dyn Write> = if options.stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    if detected.services.is_empty() {
        for note in &detected.notes {
            writeln!(say, "  {note}")?;
        }
        bail!(nothing_found(dir, &detected.seen));
    }
    let mut services = detected.services;
    let mut notes = detected.notes;
    assign_routes(&mut services, &mut notes);
    notes.push(Note::new(
        "gateway.listen",
        "no address to serve on",
        GATEWAY_LISTEN,
        "it is the default",
        "edit gateway.listen, or run strata up --listen ADDR",
    ));
    notes.push(Note::new(
        "instances",
        "nothing about load",
        "one instance of each service (min 1, max 1)",
        "it is the least that serves",
        "raise services.NAME.instances.max and add \"autoscale\": {} to follow the load",
    ));
    let text = write::render(&app, &services);
    strata_manifest::parse(&text).map_err(|e| {
        anyhow!("the manifest guessed is not valid ({e}); this is a bug in strata init. It was:\n{text}")
    })?;

    writeln!(say, "strata init: {} (app {app})", dir.display())?;
    for note in ordered(&notes, &services) {
        writeln!(say, "  {note}")?;
    }
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    if interactive {
        let question = format!("take these guesses ({} service(s): {})?", names.len(), names.join(", "));
        if !write::confirm(&question, true)? {
            writeln!(
                say,
                "nothing written; strata init --stdout prints the manifest to edit by hand"
            )?;
            return Ok(());
        }
    }
    if options.stdout {
        crate::out::stdout(|out| out.write_all(text.as_bytes()))?;
        return Ok(());
    }
    if !write::write(&target, &text, exists, options.force, interactive)? {
        writeln!(say, "{} left as it was", target.display())?;
        return Ok(());
    }
    writeln!(
        say,
        "wrote {} ({} service(s): {}); edit it as you like, check it with `strata validate`, run it with `strata up`",
        target.display(),
        names.len(),
        names.join(", ")
    )?;
    Ok(())
}

/// The app's name: its folder's, as a manifest accepts it.
fn app_name(dir: &Path) -> String {
    let full = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let base = full.file_name().and_then(|n| n.to_str()).unwrap_or("app");
    detect::service_name(base)
}

/// Routes: a web service of the app's folder (or the only one) gets `/`; one in a
/// subfolder gets the prefix its own routes share, else `/NAME` (a subfolder named like
/// a front end gets `/` when nothing else has it). Workers get none.
fn assign_routes(services: &mut [Service], notes: &mut Vec<Note>) {
    let web_count = services.iter().filter(|s| s.kind == ServiceKind::Web).count();
    let root_has_web = services
        .iter()
        .any(|s| s.kind == ServiceKind::Web && s.workdir.is_none());
    let mut taken: Vec<String> = Vec::new();
    for service in services.iter_mut().filter(|s| s.kind == ServiceKind::Web) {
        let name = service.name.clone();
        let dir = service.workdir.clone().unwrap_or_default();
        let prefix = source::common_prefix(&service.served);
        let (route, why) = if service.workdir.is_none() {
            ("/".to_string(), "it is the app folder's own app".to_string())
        } else if web_count == 1 {
            ("/".to_string(), "it is the only service".to_string())
        } else if !root_has_web && FRONT_NAMES.contains(&dir.as_str()) && !taken.iter().any(|t| t == "/") {
            ("/".to_string(), format!("{dir}/ reads as the front end"))
        } else if let Some(prefix) = prefix.filter(|p| !taken.contains(p)) {
            (
                prefix.clone(),
                format!("every route it declares is under {prefix}; the gateway passes the whole path on"),
            )
        } else {
            (
                format!("/{name}"),
                format!(
                    "it is the service's name (the gateway passes the whole path on: the app must serve /{name}/...)"
                ),
            )
        };
        if taken.contains(&route) {
            notes.push(Note::new(
                format!("{name}.routes"),
                format!("{route} already taken"),
                "no route",
                "two services cannot claim one route",
                format!("add services.{name}.routes"),
            ));
            continue;
        }
        notes.push(Note::new(
            format!("{name}.routes"),
            if service.served.is_empty() {
                "no declared routes".to_string()
            } else {
                format!("routes {}", service.served.join(", "))
            },
            format!("route {route}"),
            why,
            format!("edit services.{name}.routes"),
        ));
        taken.push(route.clone());
        service.routes.push(route);
    }
    if web_count > 1 && !taken.iter().any(|t| t == "/") {
        notes.push(Note::new(
            "routes",
            "no service for the site's root",
            "no route /",
            "no app is in the app folder itself and no subfolder is named like a front end",
            "give one service the route / if requests to / should reach it",
        ));
    }
}

/// Notes grouped by service, in service order; the rest after.
fn ordered<'a>(notes: &'a [Note], services: &[Service]) -> Vec<&'a Note> {
    let rank = |note: &Note| {
        services
            .iter()
            .position(|s| note.subject == s.name || note.subject.starts_with(&format!("{}.", s.name)))
            .unwrap_or(services.len())
    };
    let mut out: Vec<&Note> = notes.iter().collect();
    out.sort_by_key(|n| rank(n));
    out
}

fn nothing_found(dir: &Path, seen: &[String]) -> String {
    let empty = std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false);
    let mut text = if empty {
        format!("{} is empty: there is nothing to run.", dir.display())
    } else {
        format!("found nothing to run in {}.", dir.display())
    };
    text.push_str(
        "\nstrata init looks, in the folder and in each subfolder, for:\n  \
         - a Procfile (one service per process type)\n  \
         - a Python file that imports flask or fastapi and creates its app (Flask(...), FastAPI(...))\n  \
         - a package.json with a start script or a main file\n  \
         - a Python program that reads PORT from its environment\n  \
         - an executable file",
    );
    for s in seen {
        text.push_str(&format!("\nIt saw {s}."));
    }
    text.push_str(
        "\nAdd one of these and run strata init again, or write strata.json by hand: an instance is any \
         program serving HTTP on 127.0.0.1:$PORT; README.md (\"The manifest\") shows one, and \
         `strata validate` checks it.",
    );
    text
}
