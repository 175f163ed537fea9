//! `strata init`: the manifest it writes for a Flask app, a Node app, a Procfile app and
//! an app in subfolders (checked, not run: no network here for pip or npm); that it
//! never replaces a strata.json unasked and `--stdout` writes nothing; what it says for
//! a folder with nothing to run; and a stdlib-only Procfile app it describes that
//! `strata up` really serves.

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A temp folder holding `files` (path, content).
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("strata-init-").tempdir().unwrap();
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

/// `strata init --yes` succeeds; returns the manifest it wrote (validated by the
/// manifest crate, as JSON) and what it printed.
async fn init_yes(dir: &Path) -> (Value, String) {
    let out = strata(dir, &["init", "--yes"]).await;
    assert!(out.status.success(), "init failed:\n{}{}", stdout(&out), stderr(&out));
    let text = std::fs::read_to_string(dir.join("strata.json")).expect("init wrote strata.json");
    strata_manifest::parse(&text).unwrap_or_else(|e| panic!("not a valid manifest ({e}):\n{text}"));
    (serde_json::from_str(&text).unwrap(), stdout(&out))
}

/// A second `init --yes` leaves strata.json as it is and says how to replace it;
/// `--stdout` prints the same manifest and writes nothing, with or without one there.
async fn refuses_to_overwrite_and_stdout_writes_nothing(dir: &Path) {
    let path = dir.join("strata.json");
    let before = std::fs::read(&path).unwrap();
    let out = strata(dir, &["init", "--yes"]).await;
    assert!(!out.status.success(), "a second init must refuse:\n{}", stdout(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&path).unwrap(), before, "strata.json was changed");

    let out = strata(dir, &["init", "--stdout"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).as_bytes(), before, "--stdout prints what init writes");
    assert_eq!(std::fs::read(&path).unwrap(), before, "--stdout changed strata.json");

    std::fs::remove_file(&path).unwrap();
    let out = strata(dir, &["init", "--stdout"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!path.exists(), "--stdout wrote strata.json");
    strata_manifest::parse(&stdout(&out)).expect("--stdout prints a valid manifest");
    // The explanations go to stderr, so that the output can be redirected into a file.
    assert!(stderr(&out).contains("web.run: found"), "{}", stderr(&out));

    let out = strata(dir, &["init", "--yes", "--force"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "--force writes the same guess again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flask_app_gets_the_flask_command_on_port_its_requirements_and_its_health_route() {
    let dir = folder(&[
        ("requirements.txt", "flask>=3\n"),
        (
            "app.py",
            "from flask import Flask\n\napp = Flask(__name__)\n\n\n@app.route(\"/\")\ndef index():\n    \
             return \"hello\"\n\n\n@app.route(\"/healthz\")\ndef healthz():\n    return \"ok\"\n\n\n\
             if __name__ == \"__main__\":\n    app.run()\n",
        ),
    ]);
    let (manifest, said) = init_yes(dir.path()).await;
    let services = manifest["services"].as_object().unwrap();
    assert_eq!(services.keys().collect::<Vec<_>>(), ["web"], "{manifest:#}");
    let web = &manifest["services"]["web"];
    assert_eq!(
        web["run"],
        json!([
            "python3",
            "-m",
            "flask",
            "--app",
            "app:app",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            "${PORT}"
        ])
    );
    assert_eq!(
        web["setup"],
        json!({"run": ["python3", "-m", "pip", "install", "--target", ".deps", "-r", "requirements.txt"],
               "inputs": ["requirements.txt"]})
    );
    assert_eq!(web["env"], json!({"PYTHONPATH": ".deps"}));
    assert_eq!(web["routes"], json!(["/"]));
    assert_eq!(web["health"], json!({"path": "/healthz"}));
    assert!(web.get("workdir").is_none(), "{web}");
    // One line per decision, each saying what was found, chosen, why, and what to edit.
    for line in [
        "web.run: found app.py creating Flask(...) as app",
        "web.setup: found requirements.txt",
    ] {
        assert!(said.contains(line), "{line:?} not in:\n{said}");
    }
    let health = said
        .lines()
        .find(|l| l.contains("web.health:"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(health.contains("found /healthz in app.py"), "{health}");
    assert!(
        health.contains("because") && health.contains("if wrong, remove services.web.health"),
        "{health}"
    );
    assert!(said.contains("wrote "), "{said}");

    refuses_to_overwrite_and_stdout_writes_nothing(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_app_gets_npm_install_and_npm_start() {
    let dir = folder(&[
        (
            "package.json",
            r#"{"name": "api", "main": "server.js", "scripts": {"start": "node server.js"},
                "dependencies": {"express": "^4.19.0"}}"#,
        ),
        ("package-lock.json", "{}"),
        (
            "server.js",
            "const express = require('express');\nconst app = express();\n\
             app.get('/health', (req, res) => res.send('ok'));\napp.get('/', (req, res) => res.send('hi'));\n\
             app.listen(process.env.PORT);\n",
        ),
    ]);
    let (manifest, said) = init_yes(dir.path()).await;
    let web = &manifest["services"]["web"];
    assert_eq!(manifest["services"].as_object().unwrap().len(), 1, "{manifest:#}");
    assert_eq!(web["run"], json!(["npm", "start"]));
    assert_eq!(
        web["setup"],
        json!({"run": ["npm", "install"], "inputs": ["package.json", "package-lock.json"]})
    );
    assert_eq!(web["routes"], json!(["/"]));
    assert_eq!(web["health"], json!({"path": "/health"}));
    assert!(
        said.contains("web.run: found package.json with a start script (node server.js)"),
        "{said}"
    );
    assert!(said.contains("PORT in its environment"), "{said}");

    refuses_to_overwrite_and_stdout_writes_nothing(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_procfile_gives_a_service_per_process_type_and_web_the_root() {
    let dir = folder(&[
        (
            "Procfile",
            "web: gunicorn --bind 127.0.0.1:$PORT app:app\nworker: python3 worker.py\nrelease: python3 migrate.py\n",
        ),
        ("requirements.txt", "flask\ngunicorn\n"),
        (
            "app.py",
            "from flask import Flask\napp = Flask(__name__)\n@app.get(\"/health\")\ndef health():\n    return \"ok\"\n",
        ),
        ("worker.py", "import time\nwhile True:\n    time.sleep(1)\n"),
    ]);
    let (manifest, said) = init_yes(dir.path()).await;
    let services = manifest["services"].as_object().unwrap();
    assert_eq!(services.keys().collect::<Vec<_>>(), ["web", "worker"], "{manifest:#}");
    let (web, worker) = (&services["web"], &services["worker"]);
    // gunicorn lands in .deps/bin, which is not on PATH: run as a module.
    assert_eq!(
        web["run"],
        json!(["python3", "-m", "gunicorn", "--bind", "127.0.0.1:${PORT}", "app:app"])
    );
    assert_eq!(web["routes"], json!(["/"]));
    assert_eq!(web["health"], json!({"path": "/health"}));
    assert_eq!(web["setup"]["inputs"], json!(["requirements.txt"]));
    assert_eq!(web["env"], json!({"PYTHONPATH": ".deps"}));
    assert_eq!(worker["run"], json!(["python3", "worker.py"]));
    assert!(
        worker.get("routes").is_none() && worker.get("health").is_none(),
        "{worker}"
    );
    // The packages are installed once, by web's setup, before the worker starts.
    assert!(worker.get("setup").is_none(), "{worker}");
    assert_eq!(worker["bindings"], json!(["web"]));
    assert!(said.contains("release: python3 migrate.py"), "{said}");
    assert!(said.contains("worker.routes: found the process type worker"), "{said}");

    refuses_to_overwrite_and_stdout_writes_nothing(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subfolders_with_their_own_app_become_services() {
    let dir = folder(&[
        (
            "api/app.py",
            "from flask import Flask\napp = Flask(__name__)\n@app.route('/api/items')\ndef items():\n    return '[]'\n",
        ),
        (
            "frontend/server.py",
            "import os\nfrom http.server import HTTPServer, BaseHTTPRequestHandler\n\
             if __name__ == \"__main__\":\n    HTTPServer(('127.0.0.1', int(os.environ[\"PORT\"])), BaseHTTPRequestHandler)\n",
        ),
        ("node_modules/x/index.py", "import os\nos.environ['PORT']\nif __name__ == '__main__': pass\n"),
    ]);
    let (manifest, said) = init_yes(dir.path()).await;
    let services = manifest["services"].as_object().unwrap();
    assert_eq!(services.keys().collect::<Vec<_>>(), ["api", "frontend"], "{manifest:#}");
    let (api, frontend) = (&services["api"], &services["frontend"]);
    assert_eq!(api["workdir"], "api");
    assert_eq!(api["routes"], json!(["/api"]), "the prefix its routes share");
    // No requirements.txt: flask alone.
    assert_eq!(
        api["setup"],
        json!(["python3", "-m", "pip", "install", "--target", ".deps", "flask"])
    );
    assert_eq!(frontend["workdir"], "frontend");
    assert_eq!(frontend["run"], json!(["python3", "server.py"]));
    assert_eq!(frontend["routes"], json!(["/"]));
    assert!(
        frontend.get("setup").is_none() && frontend.get("health").is_none(),
        "{frontend}"
    );
    assert!(said.contains("api.workdir: found an app of its own in api/"), "{said}");
    assert!(said.contains("frontend.health: found no health route"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_with_nothing_to_run_says_what_was_looked_for() {
    let empty = folder(&[]);
    let out = strata(empty.path(), &["init", "--yes"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("is empty"), "{err}");
    for looked_for in [
        "a Procfile",
        "flask or fastapi",
        "a package.json",
        "reads PORT",
        "an executable file",
    ] {
        assert!(err.contains(looked_for), "{looked_for:?} not in:\n{err}");
    }
    assert!(err.contains("write strata.json by hand"), "{err}");

    let unknown = folder(&[("README.md", "# notes\n"), ("lib.py", "def f():\n    return 1\n")]);
    let out = strata(unknown.path(), &["init", "--yes"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("found nothing to run"), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 Python file(s)"), "{}", stderr(&out));
    assert!(!unknown.path().join("strata.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_of_a_stdlib_procfile_app_comes_up_and_serves() {
    let dir = folder(&[
        ("Procfile", "web: python3 -m http.server $PORT --bind 127.0.0.1\n"),
        ("index.html", "hello from init\n"),
    ]);
    let (manifest, said) = init_yes(dir.path()).await;
    let web = &manifest["services"]["web"];
    assert_eq!(
        web["run"],
        json!(["python3", "-m", "http.server", "${PORT}", "--bind", "127.0.0.1"])
    );
    assert!(web.get("setup").is_none(), "{web}");
    assert!(said.contains("web.health: found no health route"), "{said}");

    let mut up = Up::spawn(dir.path(), &[]);
    let node = up.node_file().await;
    let api = addr_of(node["api"].as_str().unwrap());
    let gateway = addr_of(node["gateway"].as_str().unwrap());
    up.wait_ready(api, 1).await;
    let reply = get(gateway, "/").await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), up.output());
    assert_eq!(reply.text(), "hello from init\n");
    let out = strata(dir.path(), &["down"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(up.wait_exit(std::time::Duration::from_secs(30)).await.success());
}
