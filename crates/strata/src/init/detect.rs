//! Finding what a folder can run: the folder itself, then each subfolder holding an app
//! of its own. One folder gives its Procfile's process types, or else one service: a
//! Flask or FastAPI app, a package.json, a Python program that reads PORT, or an
//! executable, in that order. Every choice is a [`Note`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::source::{self, PythonFile};
use super::{Note, Service, ServiceKind};

/// Subfolders never taken for an app of their own: dependencies, build output, assets,
/// tests and helper scripts.
const SKIPPED_DIRS: &[&str] = &[
    "node_modules",
    "__pycache__",
    "venv",
    "env",
    "target",
    "dist",
    "build",
    "static",
    "templates",
    "public",
    "assets",
    "tests",
    "test",
    "docs",
    "bin",
    "scripts",
    "migrations",
    "vendor",
];

/// Executables that are tools, not servers.
const NOT_SERVERS: &[&str] = &[
    "configure",
    "gradlew",
    "mvnw",
    "setup.py",
    "manage.py",
    "strata",
    "build.sh",
    "install.sh",
    "setup.sh",
    "test.sh",
    "bootstrap.sh",
    "deploy.sh",
];

/// File names taken first when a folder has several executables.
const PREFERRED_EXE: &[&str] = &["server", "serve", "app", "start", "run", "main", "web"];
/// Largest source file read.
const MAX_SOURCE_BYTES: u64 = 1 << 20;

/// What `init` found in a folder and its subfolders.
pub(crate) struct Detected {
    pub services: Vec<Service>,
    pub notes: Vec<Note>,
    /// What was there but not recognised, for the message when nothing is found.
    pub seen: Vec<String>,
}

pub(crate) fn detect(root: &Path) -> Result<Detected> {
    let mut out = Detected {
        services: Vec::new(),
        notes: Vec::new(),
        seen: Vec::new(),
    };
    let mut names = Names::default();
    let top = Folder::read(root, None)?;
    out.services = top.services(&mut names, &mut out.notes, &mut out.seen);
    if top.has("Procfile") {
        let apps: Vec<&String> = top.dirs.iter().filter(|d| !skipped(d)).collect();
        if !apps.is_empty() {
            out.notes.push(Note::new(
                "subfolders",
                format!("a Procfile and {} subfolder(s)", apps.len()),
                "not to look in the subfolders",
                "the Procfile lists every process of the app",
                "add a service with workdir set to the subfolder",
            ));
        }
        return Ok(out);
    }
    for dir in &top.dirs {
        if skipped(dir) {
            continue;
        }
        // A subfolder that cannot be read holds no app init can see.
        let Ok(folder) = Folder::read(root, Some(dir.clone())) else {
            continue;
        };
        let first_note = out.notes.len();
        let found = folder.services(&mut names, &mut out.notes, &mut out.seen);
        for service in &found {
            out.notes.insert(
                first_note,
                Note::new(
                    format!("{}.workdir", service.name),
                    format!("an app of its own in {dir}/"),
                    format!("a separate service {} with workdir {dir}", service.name),
                    "each folder with its own app is a pool of its own, scaled on its own",
                    format!("remove services.{} or merge it into another", service.name),
                ),
            );
        }
        out.services.extend(found);
    }
    Ok(out)
}

fn skipped(dir: &str) -> bool {
    dir.starts_with('.') || SKIPPED_DIRS.contains(&dir)
}

/// What a folder may run, in the order it is tried.
#[derive(Debug, Clone, Copy)]
enum Candidate {
    PythonWeb,
    Node,
    PythonProgram,
    Executable,
}

/// Service names in use; a name wanted twice gets a number.
#[derive(Default)]
pub(crate) struct Names(BTreeSet<String>);

impl Names {
    fn claim(&mut self, wanted: &str) -> String {
        let base = service_name(wanted);
        let mut name = base.clone();
        let mut n = 2;
        while !self.0.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        name
    }
}

/// Lowercase letters, digits and `-`, starting with a letter (what a manifest accepts).
pub(crate) fn service_name(text: &str) -> String {
    let mut name = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_matches('-').to_string();
    match name.chars().next() {
        None => "app".to_string(),
        Some(c) if !c.is_ascii_lowercase() => format!("app-{name}"),
        Some(_) => name,
    }
}

/// One folder's listing.
pub(crate) struct Folder {
    pub path: PathBuf,
    /// Relative to the app's folder; None for the app's folder itself.
    pub rel: Option<String>,
    pub files: Vec<String>,
    pub dirs: Vec<String>,
    pub executables: Vec<String>,
}

impl Folder {
    fn read(root: &Path, rel: Option<String>) -> Result<Folder> {
        let path = match &rel {
            Some(rel) => root.join(rel),
            None => root.to_path_buf(),
        };
        let mut folder = Folder {
            path,
            rel,
            files: Vec::new(),
            dirs: Vec::new(),
            executables: Vec::new(),
        };
        let entries = std::fs::read_dir(&folder.path).with_context(|| format!("read {}", folder.path.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("read {}", folder.path.display()))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // Follows symlinks: a linked file or folder counts as what it points to.
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                folder.dirs.push(name);
            } else if meta.is_file() {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o111 != 0 && !name.starts_with('.') {
                    folder.executables.push(name.clone());
                }
                folder.files.push(name);
            }
        }
        folder.files.sort();
        folder.dirs.sort();
        folder.executables.sort();
        Ok(folder)
    }

    pub(crate) fn has(&self, file: &str) -> bool {
        self.files.iter().any(|f| f == file)
    }

    /// A file's path as the user knows it: relative to the app's folder.
    pub(crate) fn shown(&self, file: &str) -> String {
        match &self.rel {
            Some(rel) => format!("{rel}/{file}"),
            None => file.to_string(),
        }
    }

    pub(crate) fn text(&self, file: &str) -> Option<String> {
        let path = self.path.join(file);
        let meta = std::fs::metadata(&path).ok()?;
        if meta.len() > MAX_SOURCE_BYTES {
            return None;
        }
        std::fs::read(&path)
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The name of a service of this folder: `web` for the app's folder, the folder's
    /// name for a subfolder; a Procfile's process type is kept (prefixed with the
    /// subfolder's name unless it is the folder's only process).
    pub(crate) fn name(&self, names: &mut Names, process: Option<&str>, only: bool) -> String {
        match (&self.rel, process) {
            (None, None) => names.claim("web"),
            (None, Some(kind)) => names.claim(kind),
            (Some(dir), Some(kind)) if !only => names.claim(&format!("{dir}-{kind}")),
            (Some(dir), _) => names.claim(dir),
        }
    }

    /// The services this folder holds (none, one, or a Procfile's).
    fn services(&self, names: &mut Names, notes: &mut Vec<Note>, seen: &mut Vec<String>) -> Vec<Service> {
        if self.has("Procfile") {
            return self.procfile_services(names, notes);
        }
        let python: Vec<(String, PythonFile)> = self
            .files
            .iter()
            .filter(|f| f.ends_with(".py"))
            .filter_map(|f| Some((f.clone(), source::python(&self.text(f)?))))
            .collect();
        let web: Vec<&(String, PythonFile)> = python.iter().filter(|(_, p)| p.framework.is_some()).collect();
        let port_readers: Vec<&(String, PythonFile)> = python
            .iter()
            .filter(|(_, p)| p.framework.is_none() && p.reads_port && p.runs_as_script)
            .collect();
        let executables: Vec<&String> = self
            .executables
            .iter()
            .filter(|e| !NOT_SERVERS.contains(&e.as_str()))
            .collect();

        // In the order they are tried: the first that gives a service is the folder's.
        let mut candidates: Vec<(Candidate, String)> = Vec::new();
        if let Some((file, _)) = web.first() {
            candidates.push((Candidate::PythonWeb, self.shown(file)));
        }
        if self.has("package.json") {
            candidates.push((Candidate::Node, self.shown("package.json")));
        }
        if let Some((file, _)) = port_readers.first() {
            candidates.push((Candidate::PythonProgram, self.shown(file)));
        }
        if let Some(exe) = executables.first() {
            candidates.push((Candidate::Executable, self.shown(exe)));
        }

        let mut chosen = None;
        let mut unusable = Vec::new();
        for (kind, found) in &candidates {
            let service = match kind {
                Candidate::PythonWeb => Some(self.python_web(names, notes, &web)),
                Candidate::Node => self.node(names, notes),
                Candidate::PythonProgram => Some(self.python_program(names, notes, &port_readers)),
                Candidate::Executable => Some(self.executable(names, notes, &executables)),
            };
            match service {
                Some(service) => {
                    chosen = Some((service, found.clone()));
                    break;
                }
                None => unusable.push(found.clone()),
            }
        }
        let Some((service, used)) = chosen else {
            if !python.is_empty() {
                seen.push(format!(
                    "{} Python file(s) in {} (none imports flask or fastapi and creates its app, or reads PORT)",
                    python.len(),
                    self.label()
                ));
            }
            return Vec::new();
        };
        for (_, found) in candidates.iter().filter(|(_, f)| *f != used && !unusable.contains(f)) {
            notes.push(Note::new(
                &service.name,
                found.clone(),
                format!("not to run it: {} already is this folder's service", used),
                "one folder is one service",
                format!("add a service for {found} (with its own run) if it is a server too"),
            ));
        }
        vec![service]
    }

    fn label(&self) -> String {
        match &self.rel {
            Some(rel) => format!("{rel}/"),
            None => "the app folder".to_string(),
        }
    }

    /// An executable file, run as it is.
    fn executable(&self, names: &mut Names, notes: &mut Vec<Note>, executables: &[&String]) -> Service {
        let file = PREFERRED_EXE
            .iter()
            .find_map(|p| {
                executables
                    .iter()
                    .find(|e| e.as_str() == *p || e.split('.').next() == Some(p))
            })
            .or(executables.first())
            .map(|e| e.as_str())
            .unwrap_or_default();
        let name = self.name(names, None, true);
        let run = vec![format!("./{file}")];
        let mut found = format!("the executable {}", self.shown(file));
        let others: Vec<&str> = executables.iter().map(|e| e.as_str()).filter(|e| *e != file).collect();
        if !others.is_empty() {
            found.push_str(&format!(" (besides {})", others.join(", ")));
        }
        notes.push(Note::new(
            format!("{name}.run"),
            found,
            run.join(" "),
            "strata gives it PORT in its environment; it must listen there",
            format!(
                "edit services.{name}.run (for a port given as an argument: [\"./{file}\", \"--port\", \"${{PORT}}\"])"
            ),
        ));
        let mut service = Service::new(name, self.rel.clone(), run, ServiceKind::Web);
        self.health(
            &mut service,
            notes,
            None,
            &self.shown(file),
            "a compiled or unknown program",
        );
        service
    }

    /// Sets the health path when the source shows one, and says why either way.
    pub(crate) fn health(
        &self,
        service: &mut Service,
        notes: &mut Vec<Note>,
        path: Option<String>,
        file: &str,
        looked_at: &str,
    ) {
        let name = &service.name;
        let note = match &path {
            Some(path) => Note::new(
                format!("{name}.health"),
                format!("{path} in {file}"),
                format!("health.path {path}"),
                "an instance is taken into the pool once it answers 2xx there, and restarted when it stops",
                format!("remove services.{name}.health"),
            ),
            None => Note::new(
                format!("{name}.health"),
                format!("no health route in {file} ({looked_at})"),
                "no health path",
                "an instance is ready when its port accepts",
                format!("add \"health\": {{\"path\": \"/...\"}} to services.{name} if it has one"),
            ),
        };
        notes.push(note);
        service.health = path;
    }
}

/// The preferred file among candidates, else the first.
pub(crate) fn preferred<'a, T>(candidates: &[&'a (String, T)], names: &[&str]) -> &'a (String, T) {
    names
        .iter()
        .find_map(|n| candidates.iter().find(|(f, _)| f == n))
        .or(candidates.first())
        .copied()
        .expect("at least one candidate")
}

pub(crate) fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_manifest_accepts() {
        assert_eq!(service_name("My_API"), "my-api");
        assert_eq!(service_name("2d"), "app-2d");
        assert_eq!(service_name("__"), "app");
        let mut names = Names::default();
        assert_eq!(names.claim("web"), "web");
        assert_eq!(names.claim("web"), "web-2");
    }
}
