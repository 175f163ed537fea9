//! A folder's Node app: its package.json's start script (or main file), `npm install`
//! when it lists packages, and the routes its entry file declares.

use super::detect::{words, Folder, Names};
use super::source;
use super::{install, Note, Service, ServiceKind};

impl Folder {
    /// A package.json: `npm start`, or its main file; None when it names nothing to run.
    pub(crate) fn node(&self, names: &mut Names, notes: &mut Vec<Note>) -> Option<Service> {
        let shown = self.shown("package.json");
        let text = self.text("package.json").unwrap_or_default();
        let package: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                notes.push(Note::new(
                    shown.clone(),
                    format!("a package.json that is not JSON ({e})"),
                    "not to run it",
                    "its start script and main cannot be read",
                    "fix the file and run strata init again",
                ));
                return None;
            }
        };
        let start = package["scripts"]["start"].as_str();
        let main = package["main"].as_str().filter(|m| self.path.join(m).is_file());
        let fallback = ["server.js", "index.js", "app.js"].into_iter().find(|f| self.has(f));
        let (run, found, why, entry) = match (start, main, fallback) {
            (Some(script), _, _) => (
                words(&["npm", "start"]),
                format!("{shown} with a start script ({script})"),
                "npm start runs it; strata gives it PORT in its environment".to_string(),
                script_file(script).or(main.map(str::to_string)),
            ),
            (None, Some(main), _) => (
                words(&["node", main]),
                format!("{shown} with main {main} and no start script"),
                "node runs the main file; strata gives it PORT in its environment".to_string(),
                Some(main.to_string()),
            ),
            (None, None, Some(file)) => (
                words(&["node", file]),
                format!("{shown} without a start script or main, and {}", self.shown(file)),
                format!("{file} is what npm start runs by default"),
                Some(file.to_string()),
            ),
            (None, None, None) => {
                notes.push(Note::new(
                    shown.clone(),
                    "a package.json without a start script, a main file or server.js",
                    "not to run it",
                    "it names nothing to start",
                    "add a start script, then run strata init again",
                ));
                return None;
            }
        };
        let name = self.name(names, None, true);
        notes.push(Note::new(
            format!("{name}.run"),
            found,
            run.join(" "),
            why,
            format!("edit services.{name}.run"),
        ));
        let mut service = Service::new(name.clone(), self.rel.clone(), run, ServiceKind::Web);
        if install::lists_packages(&package) {
            let setup = install::node_deps(self);
            notes.push(Note::new(
                format!("{name}.setup"),
                format!("dependencies in {shown}"),
                setup.run.join(" "),
                format!("the step runs again only when {} changes", setup.inputs.join(" or ")),
                format!("edit services.{name}.setup"),
            ));
            service.setup = Some(setup);
        }
        let mut files: Vec<String> = entry.into_iter().collect();
        for file in ["server.js", "index.js", "app.js"] {
            if !files.iter().any(|f| f == file) {
                files.push(file.to_string());
            }
        }
        let scanned: Vec<(String, source::ScriptFile)> = files
            .into_iter()
            .filter_map(|f| Some((f.clone(), source::javascript(&self.text(&f)?))))
            .collect();
        if let Some((file, _)) = scanned.first().filter(|_| !scanned.iter().any(|(_, s)| s.reads_port)) {
            notes.push(Note::new(
                format!("{name}.run"),
                format!("no mention of PORT in {}", self.shown(file)),
                "to run it all the same",
                "an instance must listen on $PORT to be reached",
                "make it listen on process.env.PORT",
            ));
        }
        service.served = scanned.iter().flat_map(|(_, s)| s.routes.clone()).collect();
        let health = scanned.iter().find_map(|(f, s)| Some((f.clone(), s.health.clone()?)));
        let shown_files = match scanned.first() {
            Some((f, _)) => self.shown(f),
            None => shown,
        };
        match health {
            Some((file, path)) => self.health(&mut service, notes, Some(path), &self.shown(&file), "its routes"),
            None => self.health(&mut service, notes, None, &shown_files, "its routes"),
        }
        Some(service)
    }
}

/// The first `.js` file named in a start script (`node server.js`).
fn script_file(script: &str) -> Option<String> {
    script
        .split_whitespace()
        .find(|w| w.ends_with(".js") || w.ends_with(".mjs") || w.ends_with(".cjs"))
        .map(str::to_string)
}
