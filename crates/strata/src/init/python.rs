//! A folder's Python app: a Flask or FastAPI app run by its framework's server on
//! `$PORT`, or a program of no known framework that reads PORT itself; and the setup
//! step that installs its packages into `.deps`.

use super::detect::{preferred, words, Folder, Names};
use super::source::{Framework, PythonFile};
use super::{install, Note, Service, ServiceKind, Setup};

/// File names taken first when a folder has several candidates.
const PREFERRED_PY: &[&str] = &[
    "app.py",
    "main.py",
    "wsgi.py",
    "asgi.py",
    "server.py",
    "application.py",
    "api.py",
];

impl Folder {
    /// A Flask or FastAPI app: run by the framework's own server on `$PORT`.
    pub(crate) fn python_web(
        &self,
        names: &mut Names,
        notes: &mut Vec<Note>,
        web: &[&(String, PythonFile)],
    ) -> Service {
        let (file, app) = preferred(web, PREFERRED_PY);
        let name = self.name(names, None, true);
        let framework = app.framework.unwrap_or(Framework::Flask);
        let module = file.trim_end_matches(".py");
        let target = match &app.app_var {
            Some(var) => format!("{module}:{var}"),
            None if app.factory => format!("{module}:create_app"),
            None => format!("{module}:app"),
        };
        let class = framework.class();
        let how = match &app.app_var {
            Some(var) => format!("{} creating {class}(...) as {var}", self.shown(file)),
            None => format!("{} creating {class}(...)", self.shown(file)),
        };
        let (run, why) = match framework {
            Framework::Flask => {
                let target = if app.app_var.is_none() {
                    module.to_string()
                } else {
                    target
                };
                (
                    words(&["python3", "-m", "flask", "--app", &target, "run", "--host", "127.0.0.1", "--port", "${PORT}"]),
                    "an unmodified app.run() listens on 5000, not $PORT; the flask command serves the same app on $PORT",
                )
            }
            Framework::FastApi => {
                let mut run = words(&["python3", "-m", "uvicorn"]);
                if app.app_var.is_none() && app.factory {
                    run.push("--factory".into());
                }
                run.extend(words(&[&target, "--host", "127.0.0.1", "--port", "${PORT}"]));
                (run, "uvicorn serves the app on $PORT")
            }
        };
        notes.push(Note::new(
            format!("{name}.run"),
            how,
            run.join(" "),
            why,
            format!("edit services.{name}.run"),
        ));
        let others: Vec<String> = web
            .iter()
            .filter(|(f, _)| f != file)
            .map(|(f, _)| self.shown(f))
            .collect();
        if !others.is_empty() {
            notes.push(Note::new(
                format!("{name}.run"),
                format!("more apps in {}", others.join(", ")),
                format!("only {}", self.shown(file)),
                "one folder is one service",
                "add a service per app, each with its own run",
            ));
        }
        let mut service = Service::new(name, self.rel.clone(), run, ServiceKind::Web);
        service.served = app.routes.clone();
        self.python_setup(&mut service, notes, Some(framework));
        self.health(&mut service, notes, app.health.clone(), &self.shown(file), "its routes");
        service
    }

    /// A Python program of no known framework that reads PORT itself.
    pub(crate) fn python_program(
        &self,
        names: &mut Names,
        notes: &mut Vec<Note>,
        programs: &[&(String, PythonFile)],
    ) -> Service {
        let (file, program) = preferred(programs, PREFERRED_PY);
        let name = self.name(names, None, true);
        let run = words(&["python3", file]);
        notes.push(Note::new(
            format!("{name}.run"),
            format!("{} reading PORT and runnable as a script", self.shown(file)),
            run.join(" "),
            "it takes its port from $PORT as strata gives it",
            format!("edit services.{name}.run"),
        ));
        let mut service = Service::new(name, self.rel.clone(), run, ServiceKind::Web);
        self.python_setup(&mut service, notes, None);
        self.health(
            &mut service,
            notes,
            program.health.clone(),
            &self.shown(file),
            "its path literals",
        );
        service
    }

    /// The install step of a Python service: its requirements into `.deps`.
    fn python_setup(&self, service: &mut Service, notes: &mut Vec<Note>, framework: Option<Framework>) {
        let name = service.name.clone();
        let mut unlisted = None;
        let (setup, found, why) = if let Some(setup) = install::python_deps(self) {
            let file = setup.inputs[0].clone();
            if let Some(f) = framework {
                let listed = self.text(&file).unwrap_or_default().to_ascii_lowercase();
                let missing: Vec<&str> = f.packages().iter().copied().filter(|p| !listed.contains(p)).collect();
                if !missing.is_empty() {
                    unlisted = Some(Note::new(
                        format!("{name}.setup"),
                        format!(
                            "{} not naming {}, which the run command uses",
                            self.shown(&file),
                            missing.join(" or ")
                        ),
                        "to install what it names all the same",
                        "strata init does not edit your files",
                        format!(
                            "add {} to {}, or the service will not start",
                            missing.join(" and "),
                            self.shown(&file)
                        ),
                    ));
                }
            }
            let why = format!(
                "packages go into the app's folder (.deps, on PYTHONPATH); the step runs again only when {file} changes"
            );
            (setup, self.shown(&file), why)
        } else if let Some(f) = framework {
            let mut run = words(&["python3", "-m", "pip", "install", "--target", ".deps"]);
            run.extend(words(f.packages()));
            (
                Setup {
                    run,
                    inputs: Vec::new(),
                },
                "no requirements.txt or pyproject.toml".to_string(),
                format!("the app needs {}", f.packages().join(" and ")),
            )
        } else {
            notes.push(Note::new(
                format!("{name}.setup"),
                "no requirements.txt or pyproject.toml",
                "no setup step",
                "a program that lists no packages uses the standard library only",
                format!("add services.{name}.setup to install what it imports"),
            ));
            return;
        };
        notes.push(Note::new(
            format!("{name}.setup"),
            found,
            format!("{} with PYTHONPATH=.deps", setup.run.join(" ")),
            why,
            format!("edit services.{name}.setup (or remove it and the env if packages are installed already)"),
        ));
        notes.extend(unlisted);
        service.setup = Some(setup);
        service.env.insert("PYTHONPATH".into(), ".deps".into());
    }
}
