//! The Docker setup in `docker/`, checked without a Docker engine (these machines have
//! none): the compose file, the Dockerfile, Prometheus' and Grafana's configs and the
//! dashboard parse and agree with each other, every file they mount or copy exists,
//! every metric the dashboard queries is one pgweir exports ([`promql::METRICS`]), the
//! pgweir config inside passes `pgweir check` with the environment the compose file
//! gives it, no password has a default, ports are published on 127.0.0.1 only and the image
//! runs as a numeric non-root user. Needs no PostgreSQL: nothing here starts a server.

mod monitoring;
mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use promql::{check_expr, metrics};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// The services the compose file must define.
const SERVICES: [&str; 5] = ["primary", "replica", "pgweir", "prometheus", "grafana"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn docker_dir() -> PathBuf {
    repo().join("docker")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Yaml {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose() -> Yaml {
    yaml(&docker_dir().join("docker-compose.yml"))
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let svc = &compose["services"][name];
    assert!(svc.is_mapping(), "compose has no service {name:?}");
    svc
}

fn str_list(value: &Yaml) -> Vec<String> {
    value
        .as_sequence()
        .map(|seq| {
            seq.iter()
                .map(|v| v.as_str().expect("a string entry").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What an operator sets before `up` (the compose file has no default for them).
fn secrets() -> BTreeMap<&'static str, &'static str> {
    [
        ("POSTGRES_PASSWORD", "pg-secret"),
        ("APP_PASSWORD", "app-secret"),
        ("REPLICATION_PASSWORD", "repl-secret"),
        ("PGWEIR_ADMIN_PASSWORD", "admin-secret"),
        ("PGWEIR_MONITOR_PASSWORD", "monitor-secret"),
        ("GRAFANA_ADMIN_PASSWORD", "grafana-secret"),
    ]
    .into_iter()
    .collect()
}

/// A service's `environment` map with compose's interpolation resolved as `docker compose
/// up` would with [`secrets`] set: `${NAME:?message}` from them, `${NAME:-default}` to the
/// default.
fn environment(svc: &Yaml) -> BTreeMap<String, String> {
    let Some(map) = svc["environment"].as_mapping() else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(k, v)| {
            let key = k.as_str().expect("environment key").to_owned();
            let raw = match v {
                Yaml::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
            };
            let value = interpolate(&raw)
                .unwrap_or_else(|| panic!("environment {key}: {raw:?} cannot be resolved"));
            (key, value)
        })
        .collect()
}

/// Every `${...}` of `text`, as written between the braces.
fn references(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        found.push(&rest[start + 2..start + end]);
        rest = &rest[start + end + 1..];
    }
    found
}

/// `text` with each `${NAME:?message}` taken from [`secrets`] and each `${NAME:-default}`
/// resolved to its default; `None` for any other form.
fn interpolate(text: &str) -> Option<String> {
    let mut out = text.to_owned();
    for reference in references(text) {
        let value = match (reference.split_once(":?"), reference.split_once(":-")) {
            (Some((name, _)), _) => secrets().get(name)?.to_string(),
            (None, Some((_, default))) => default.to_owned(),
            _ => return None,
        };
        out = out.replacen(&format!("${{{reference}}}"), &value, 1);
    }
    Some(out)
}

/// No password has a default: each must be set, or compose refuses to start; and every
/// published port listens on 127.0.0.1 only.
#[test]
fn compose_ships_no_passwords_and_publishes_on_loopback_only() {
    let text = read(&docker_dir().join("docker-compose.yml"));
    let uncommented: String = text
        .lines()
        .map(|l| l.split(" #").next().unwrap_or(l))
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let refs = references(&uncommented);
    assert!(!refs.is_empty());
    for reference in refs {
        let required = reference.split_once(":?").map(|(name, _)| name);
        assert!(
            required.is_some_and(|name| secrets().contains_key(name)),
            "${{{reference}}}: every variable is a password that must be set"
        );
    }
    let compose = compose();
    for name in SERVICES {
        for port in str_list(&service(&compose, name)["ports"]) {
            assert!(port.starts_with("127.0.0.1:"), "{name} publishes {port}");
        }
    }
}

/// `(source, target)` of each short-syntax volume entry of a service.
fn volumes(svc: &Yaml) -> Vec<(String, String)> {
    str_list(&svc["volumes"])
        .into_iter()
        .map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let source = parts.next().unwrap().to_owned();
            let target = parts
                .next()
                .unwrap_or_else(|| panic!("volume {entry:?} has no target"))
                .to_owned();
            (source, target)
        })
        .collect()
}

fn is_bind_mount(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/')
}

/// The Dockerfile's instructions, continuation lines joined and comments dropped.
fn dockerfile_instructions() -> Vec<String> {
    let text = read(&docker_dir().join("Dockerfile"));
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn compose_has_the_five_services_with_their_images_and_ports() {
    let compose = compose();
    let names: BTreeSet<&str> = compose["services"]
        .as_mapping()
        .expect("services")
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(names, SERVICES.into_iter().collect());

    for (name, image) in [
        ("primary", "postgres:15"),
        ("replica", "postgres:15"),
        ("prometheus", "prom/prometheus"),
        ("grafana", "grafana/grafana"),
    ] {
        let actual = service(&compose, name)["image"].as_str().unwrap_or("");
        assert!(
            actual == image || actual.starts_with(&format!("{image}:")),
            "{name} runs {actual:?}, expected {image}"
        );
    }
    let build = &service(&compose, "pgweir")["build"];
    assert_eq!(build["context"].as_str(), Some(".."));
    assert_eq!(build["dockerfile"].as_str(), Some("docker/Dockerfile"));

    for (name, port) in [
        ("pgweir", "127.0.0.1:6432:6432"),
        ("pgweir", "127.0.0.1:9930:9930"),
        ("prometheus", "127.0.0.1:9090:9090"),
        ("grafana", "127.0.0.1:3000:3000"),
    ] {
        let ports = str_list(&service(&compose, name)["ports"]);
        assert!(ports.iter().any(|p| p == port), "{name} ports {ports:?}");
    }

    let command = str_list(&service(&compose, "primary")["command"]).join(" ");
    assert!(command.contains("wal_level=replica"), "primary: {command}");
}

/// Startup order: the replica clones a healthy primary, pgweir starts once both are
/// healthy, and every `service_healthy` dependency has a healthcheck to pass.
#[test]
fn compose_startup_order_rests_on_healthchecks() {
    let compose = compose();
    let dockerfile_has_healthcheck = dockerfile_instructions()
        .iter()
        .any(|i| i.starts_with("HEALTHCHECK CMD") || i.starts_with("HEALTHCHECK --"));
    let mut edges = BTreeSet::new();
    for name in SERVICES {
        let Some(deps) = service(&compose, name)["depends_on"].as_mapping() else {
            continue;
        };
        for (dep, spec) in deps {
            let dep = dep.as_str().unwrap();
            assert!(SERVICES.contains(&dep), "{name} depends on unknown {dep}");
            let condition = spec["condition"].as_str().unwrap_or("service_started");
            if condition == "service_healthy" {
                let dep_svc = service(&compose, dep);
                let has_check = dep_svc["healthcheck"].is_mapping()
                    || (dep_svc["build"].is_mapping() && dockerfile_has_healthcheck);
                assert!(has_check, "{name} waits for {dep} to be healthy: no check");
            }
            edges.insert((name, dep, condition.to_owned()));
        }
    }
    for (from, to) in [
        ("replica", "primary"),
        ("pgweir", "primary"),
        ("pgweir", "replica"),
    ] {
        assert!(
            edges.contains(&(from, to, "service_healthy".to_owned())),
            "{from} must wait for {to} to be healthy: {edges:?}"
        );
    }
}

#[test]
fn compose_mounts_and_builds_only_files_that_exist() {
    let compose = compose();
    let declared: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(|k| k.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    for name in SERVICES {
        for (source, target) in volumes(service(&compose, name)) {
            if !is_bind_mount(&source) {
                assert!(
                    declared.contains(&source),
                    "{name}: volume {source} not declared"
                );
                continue;
            }
            let path = docker_dir().join(&source);
            assert!(path.exists(), "{name} mounts missing {}", path.display());
            if source.ends_with(".sh") {
                check_script(&path);
            }
            assert!(
                target.starts_with('/'),
                "{name}: target {target} not absolute"
            );
        }
    }

    let build = &service(&compose, "pgweir")["build"];
    let context = docker_dir().join(build["context"].as_str().unwrap());
    let dockerfile = context.join(build["dockerfile"].as_str().unwrap());
    assert!(dockerfile.is_file(), "{} missing", dockerfile.display());

    // What the Dockerfile copies from the context exists and is not ignored.
    let ignored = read(&context.join(".dockerignore"));
    let ignored: Vec<&str> = ignored
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for pattern in ["target", ".git"] {
        assert!(ignored.contains(&pattern), ".dockerignore lacks {pattern}");
    }
    let mut copied = 0;
    for instruction in dockerfile_instructions() {
        let Some(args) = instruction.strip_prefix("COPY ") else {
            continue;
        };
        if args.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = args
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let (_, sources) = words.split_last().expect("COPY needs a destination");
        for source in sources {
            let source = source.trim_end_matches('/');
            assert!(context.join(source).exists(), "COPY of missing {source}");
            assert!(
                !ignored
                    .iter()
                    .any(|p| *p == source || source.starts_with(&format!("{p}/"))),
                "COPY of {source}, which .dockerignore excludes"
            );
            copied += 1;
        }
    }
    assert!(
        copied >= 4,
        "the Dockerfile copies {copied} paths from the context"
    );
}

/// A mounted shell script is executable and bash parses it.
fn check_script(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert!(mode & 0o111 != 0, "{} is not executable", path.display());
    let out = Command::new("bash")
        .arg("-n")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run bash -n");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dockerfile_builds_in_stages_and_runs_unprivileged() {
    let instructions = dockerfile_instructions();
    let stages: Vec<usize> = (0..instructions.len())
        .filter(|&i| instructions[i].starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "not multi-stage: {stages:?}");
    let builder = &instructions[..*stages.last().unwrap()];
    let runtime = &instructions[*stages.last().unwrap()..];
    assert!(
        builder
            .iter()
            .any(|i| i.contains("cargo build --release --locked")),
        "the builder does not run cargo build --release --locked"
    );

    let has = |prefix: &str| runtime.iter().any(|i| i.starts_with(prefix));
    assert!(has("COPY --from=builder"), "runtime copies no binary");
    assert!(runtime.iter().any(|i| i.contains("/usr/local/bin/pgweir")));
    assert!(runtime
        .iter()
        .any(|i| i.ends_with(" /etc/pgweir/pgweir.toml")));
    let user = runtime
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    // Numeric, so Kubernetes' runAsNonRoot can verify it; and not root's.
    let uid = user.split(':').next().unwrap().parse::<u32>();
    assert!(uid.is_ok_and(|uid| uid != 0), "runs as {user}");
    assert!(has("EXPOSE 6432 9930"), "EXPOSE 6432 9930 missing");
    assert!(has(
        r#"ENTRYPOINT ["pgweir", "--config", "/etc/pgweir/pgweir.toml"]"#
    ));
    let health = runtime
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK"))
        .expect("HEALTHCHECK");
    assert!(health.contains("127.0.0.1/9930") && health.contains("/health"));
}

fn pgweir_toml() -> toml::Table {
    let path = docker_dir().join("pgweir.toml");
    read(&path)
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The pgweir config names the compose services as its hosts, listens where the
/// compose file publishes, and every `${NAME}` in it is set for the container.
#[test]
fn pgweir_toml_matches_the_compose_setup() {
    let compose = compose();
    let toml = pgweir_toml();
    let general = &toml["pgweir"];
    assert_eq!(general["listen_addr"].as_str(), Some("0.0.0.0"));
    assert_eq!(general["listen_port"].as_integer(), Some(6432));
    assert_eq!(general["metrics_addr"].as_str(), Some("0.0.0.0:9930"));

    let databases = toml["databases"].as_table().expect("[databases]");
    assert!(databases.contains_key("app") && databases.contains_key("app_ro"));
    for (name, db) in databases {
        let host = db["host"].as_str().expect("host");
        assert_eq!(host, "primary", "databases.{name}");
        let replicas = db["replicas"].as_array().expect("replicas");
        let hosts: Vec<&str> = replicas.iter().filter_map(|r| r["host"].as_str()).collect();
        assert_eq!(hosts, ["replica"], "databases.{name}");
    }
    assert_eq!(databases["app"]["read_routing"].as_str(), Some("auto"));
    assert_eq!(databases["app_ro"]["target"].as_str(), Some("replica"));

    let env = environment(service(&compose, "pgweir"));
    let mut strings = Vec::new();
    toml_strings(&toml::Value::Table(toml.clone()), &mut strings);
    let mut referenced = 0;
    for value in strings {
        let mut rest = value.as_str();
        while let Some(start) = rest.find("${") {
            let end = rest[start..].find('}').expect("unterminated ${") + start;
            let name = &rest[start + 2..end];
            assert!(
                env.contains_key(name),
                "compose does not set {name} for pgweir"
            );
            referenced += 1;
            rest = &rest[end + 1..];
        }
    }
    assert!(
        referenced >= 3,
        "passwords should come from the environment"
    );
}

/// Every string value in a TOML tree, where pgweir expands `${NAME}`.
fn toml_strings(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Array(items) => items.iter().for_each(|v| toml_strings(v, out)),
        toml::Value::Table(table) => table.values().for_each(|v| toml_strings(v, out)),
        _ => {}
    }
}

/// `pgweir check` accepts docker/pgweir.toml with the environment the compose file
/// gives the container once the operator has set the passwords.
#[test]
fn pgweir_toml_passes_pgweir_check() {
    let env = environment(service(&compose(), "pgweir"));
    let out = Command::new(env!("CARGO_BIN_EXE_pgweir"))
        .arg("check")
        .arg("--config")
        .arg(docker_dir().join("pgweir.toml"))
        .envs(&env)
        .stdin(Stdio::null())
        .output()
        .expect("run pgweir check");
    assert!(
        out.status.success(),
        "pgweir check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Cargo.toml's `rust-version` is the newest any locked dependency needs on Linux (dev
/// ones included): not older, which would promise builds that fail, nor newer than needed.
#[test]
fn rust_version_is_what_the_lock_file_needs() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", "x86_64-unknown-linux-gnu"])
        .current_dir(repo())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Json = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let used: BTreeSet<&str> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    let mut ours = None;
    let mut needed = vec![0];
    for p in meta["packages"].as_array().expect("packages") {
        let Some(rv) = p["rust_version"].as_str() else {
            continue;
        };
        if p["name"] == "pgweir" {
            ours = Some(version(rv));
        } else if p["id"].as_str().is_some_and(|id| used.contains(id)) {
            needed = needed.max(version(rv));
        }
    }
    let ours = ours.expect("pgweir has a rust-version");
    let trim = |mut v: Vec<u32>| {
        while v.len() > 2 && v.last() == Some(&0) {
            v.pop();
        }
        v
    };
    assert_eq!(
        trim(ours),
        trim(needed),
        "rust-version against the lock file's needs"
    );
}
