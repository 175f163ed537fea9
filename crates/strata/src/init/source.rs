//! What `strata init` reads out of an app's source text: which web framework a Python
//! file creates an app of, under which name, the routes it declares, whether it reads
//! `PORT`. Plain text scanning, no parser: a guess that `init` explains and the user
//! can correct in the manifest.

/// Paths taken for a health check when an app serves one of them, best first.
pub(crate) const HEALTH_PATHS: &[&str] = &["/healthz", "/health", "/livez", "/readyz", "/ping"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framework {
    Flask,
    FastApi,
}

impl Framework {
    /// The class an app is an instance of.
    pub(crate) fn class(self) -> &'static str {
        match self {
            Framework::Flask => "Flask",
            Framework::FastApi => "FastAPI",
        }
    }

    /// The package to install when the app names no requirements.
    pub(crate) fn packages(self) -> &'static [&'static str] {
        match self {
            Framework::Flask => &["flask"],
            Framework::FastApi => &["fastapi", "uvicorn"],
        }
    }
}

/// One Python file, as far as `init` cares.
#[derive(Debug, Clone)]
pub(crate) struct PythonFile {
    /// The web framework whose app this file creates, if any.
    pub framework: Option<Framework>,
    /// The module-level variable the app is bound to (`app = Flask(__name__)`).
    pub app_var: Option<String>,
    /// A `def create_app(` factory.
    pub factory: bool,
    /// Paths of the routes declared with decorators (`@app.route("/x")`, `@app.get("/x")`).
    pub routes: Vec<String>,
    /// The health path: a GET route (Flask, FastAPI) or, in a file of no framework, a
    /// path literal (`if self.path == "/healthz"`).
    pub health: Option<String>,
    /// Mentions `"PORT"` (reads it from the environment, presumably).
    pub reads_port: bool,
    /// Does something when run as a script: an `if __name__ == "__main__":` block, or a
    /// server started at module level (`HTTPServer(...).serve_forever()`,
    /// `asyncio.run(main())`, `uvicorn.run(...)`, `web.run_app(...)`, `app.run(...)`,
    /// unindented).
    pub runs_as_script: bool,
}

pub(crate) fn python(text: &str) -> PythonFile {
    let framework = if imports(text, "flask") && has_call(text, "Flask") {
        Some(Framework::Flask)
    } else if imports(text, "fastapi") && has_call(text, "FastAPI") {
        Some(Framework::FastApi)
    } else {
        None
    };
    let app_var = framework.and_then(|f| module_level_binding(text, f.class()));
    let routes = route_literals(
        text,
        &["route", "get", "post", "put", "delete", "patch", "api_route"],
        true,
    );
    let health = match framework {
        Some(_) => health_of(&route_literals(text, &["route", "get", "api_route"], true)),
        None => health_of(&string_literals(text)),
    };
    PythonFile {
        framework,
        app_var,
        factory: text.contains("def create_app("),
        routes,
        health,
        reads_port: text.contains("\"PORT\"") || text.contains("'PORT'"),
        runs_as_script: text.contains("__name__ == \"__main__\"")
            || text.contains("__name__ == '__main__'")
            || serves_at_module_level(text),
    }
}

/// A call that serves, on an unindented line (not inside a function or a class).
fn serves_at_module_level(text: &str) -> bool {
    // `app.run(`, not any `.run(`: `subprocess.run(` serves nothing.
    const SERVES: [&str; 5] = ["serve_forever(", "asyncio.run(", "uvicorn.run(", "run_app(", "app.run("];
    text.lines()
        .filter(|l| !l.starts_with([' ', '\t', '#']))
        .any(|l| SERVES.iter().any(|call| l.contains(call)))
}

/// One JavaScript file, as far as `init` cares.
#[derive(Debug, Clone)]
pub(crate) struct ScriptFile {
    pub routes: Vec<String>,
    pub health: Option<String>,
    /// Mentions `process.env.PORT` (or `PORT` at all).
    pub reads_port: bool,
}

pub(crate) fn javascript(text: &str) -> ScriptFile {
    let routes = route_literals(
        text,
        &["get", "post", "put", "delete", "patch", "all", "use", "route"],
        false,
    );
    ScriptFile {
        health: health_of(&route_literals(text, &["get", "all", "route"], false)),
        routes,
        reads_port: text.contains("PORT"),
    }
}

/// The first segment all `routes` share (`/recommendations` of `/recommendations` and
/// `/recommendations/top`), health paths left out; None when they share none.
pub(crate) fn common_prefix(routes: &[String]) -> Option<String> {
    let mut first = None;
    for route in routes.iter().filter(|r| !HEALTH_PATHS.contains(&r.as_str())) {
        let segment = route
            .trim_start_matches('/')
            .split(['/', '<', '{', ':'])
            .next()
            .unwrap_or("");
        if segment.is_empty() {
            return None;
        }
        match first {
            None => first = Some(segment),
            Some(f) if f == segment => {}
            Some(_) => return None,
        }
    }
    first.map(|s| format!("/{s}"))
}

fn health_of(paths: &[String]) -> Option<String> {
    HEALTH_PATHS
        .iter()
        .find(|h| paths.iter().any(|p| p == *h))
        .map(|h| h.to_string())
}

/// `import NAME`, `import NAME.x` or `from NAME import ...` on a line of its own.
fn imports(text: &str, module: &str) -> bool {
    text.lines().map(str::trim_start).any(|line| {
        let rest = line
            .strip_prefix("from ")
            .or_else(|| line.strip_prefix("import "))
            .map(str::trim_start);
        rest.and_then(|r| r.strip_prefix(module))
            .is_some_and(|after| after.is_empty() || after.starts_with([' ', '.', ',', '\t']))
    })
}

/// A call of `name(`, not of a longer name that ends with it (`MyFlask(`).
fn has_call(text: &str, name: &str) -> bool {
    let pattern = format!("{name}(");
    text.match_indices(&pattern)
        .any(|(at, _)| !text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
}

/// `VAR = CLASS(` or `VAR = module.CLASS(` at the start of a line (module level).
fn module_level_binding(text: &str, class: &str) -> Option<String> {
    text.lines().find_map(|line| {
        if line.starts_with([' ', '\t']) {
            return None;
        }
        let (lhs, rhs) = line.split_once('=')?;
        let var = lhs.split(':').next()?.trim();
        let rhs = rhs.trim_start();
        let call = rhs.rsplit_once('.').map_or(rhs, |(module, after)| {
            if module.chars().all(|c| c.is_alphanumeric() || c == '_') {
                after
            } else {
                rhs
            }
        });
        let is_ident = !var.is_empty()
            && var.chars().all(|c| c.is_alphanumeric() || c == '_')
            && !var.starts_with(|c: char| c.is_ascii_digit());
        (is_ident && call.starts_with(&format!("{class}("))).then(|| var.to_string())
    })
}

/// Path literals given as the first argument of `.METHOD(` (on a decorator line when
/// `decorators` is set): `@app.route("/x")`, `app.get('/x', ...)`.
fn route_literals(text: &str, methods: &[&str], decorators: bool) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines().map(str::trim_start) {
        if decorators && !line.starts_with('@') {
            continue;
        }
        for method in methods {
            let pattern = format!(".{method}(");
            for (at, _) in line.match_indices(&pattern) {
                let args = line[at + pattern.len()..].trim_start();
                if let Some(path) = first_string(args).filter(|p| p.starts_with('/')) {
                    if !found.contains(&path) {
                        found.push(path);
                    }
                }
            }
        }
    }
    found
}

/// Every string literal that looks like a path (starts with `/`, no spaces).
fn string_literals(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for quote in ['"', '\''] {
        for piece in text.split(quote).skip(1).step_by(2) {
            if piece.starts_with('/') && !piece.contains(char::is_whitespace) {
                found.push(piece.to_string());
            }
        }
    }
    found
}

/// The string literal `text` starts with, if it does.
fn first_string(text: &str) -> Option<String> {
    let quote = text.chars().next().filter(|c| matches!(c, '"' | '\'' | '`'))?;
    let body = &text[1..];
    let end = body.find(quote)?;
    Some(body[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flask_app_its_name_routes_and_health() {
        let f = python(
            "import os\nfrom flask import Flask, jsonify\n\napp = Flask(__name__)\n\n\
             @app.route(\"/recommendations\")\ndef r():\n    pass\n\n@app.get('/healthz')\ndef h():\n    return 'ok'\n",
        );
        assert_eq!(f.framework, Some(Framework::Flask));
        assert_eq!(f.app_var.as_deref(), Some("app"));
        assert_eq!(f.routes, ["/recommendations", "/healthz"]);
        assert_eq!(f.health.as_deref(), Some("/healthz"));
        assert!(!f.reads_port);
        assert_eq!(common_prefix(&f.routes).as_deref(), Some("/recommendations"));
    }

    #[test]
    fn fastapi_under_another_name_and_a_stdlib_server() {
        let f = python("import fastapi\napi: fastapi.FastAPI = fastapi.FastAPI()\n@api.get(\"/health\")\n");
        assert_eq!(f.framework, Some(Framework::FastApi));
        assert_eq!(f.app_var.as_deref(), Some("api"));
        assert_eq!(f.health.as_deref(), Some("/health"));

        let s = python(
            "import os\nPORT = int(os.environ['PORT'])\nif self.path == \"/healthz\":\n    pass\n\
             if __name__ == \"__main__\":\n    main()\n",
        );
        assert_eq!(s.framework, None);
        assert!(s.reads_port && s.runs_as_script);
        assert_eq!(s.health.as_deref(), Some("/healthz"));

        // Serving at module level, without a __main__ guard, runs as a script too.
        let top = python(
            "import http.server, os\nclass H(http.server.BaseHTTPRequestHandler):\n    pass\n\
             http.server.HTTPServer((\"127.0.0.1\", int(os.environ[\"PORT\"])), H).serve_forever()\n",
        );
        assert!(top.reads_port && top.runs_as_script);
        // A module that only defines things does not.
        let library = python("import os\nPORT = os.environ['PORT']\ndef serve():\n    server.serve_forever()\n");
        assert!(library.reads_port && !library.runs_as_script);
    }

    #[test]
    fn a_name_that_only_ends_in_flask_is_not_flask() {
        assert_eq!(python("from flask import x\napp = MyFlask(1)\n").framework, None);
        assert_eq!(python("from flasky import Flask\napp = Flask(1)\n").framework, None);
    }

    #[test]
    fn express_routes() {
        let s = javascript("app.get('/api/items', f)\napp.get(\"/healthz\", (req, res) => res.send('ok'))\napp.listen(process.env.PORT)\n");
        assert_eq!(s.health.as_deref(), Some("/healthz"));
        assert!(s.reads_port);
        assert_eq!(common_prefix(&s.routes).as_deref(), Some("/api"));
        assert_eq!(common_prefix(&["/".into(), "/x".into()]), None);
    }
}
