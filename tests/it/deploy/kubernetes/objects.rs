//! The rendered objects held to what a pooler needs: schemas, the expected objects, an
//! unprivileged pod with a read-only root, requests and limits, probes, draining and rollouts,
//! the selectors of the PodDisruptionBudget, autoscaler and Service, and the fleet budget.

use super::*;

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
