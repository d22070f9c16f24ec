//! Secrets and configs as the pod gets them: secrets stay out of the ConfigMap, the rendered
//! configs pass `pgweir check` with the pod's files and environment, the ServiceMonitor
//! component is optional, and deploy/kubernetes/README.md shows what the example renders.

use super::*;

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
    let start =
        "<!-- rendered: overlays/example (tests/it/deploy/kubernetes/secrets.rs checks this table) -->\n";
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
