//! The monitoring half of the Docker setup: Prometheus scrapes pgweir's metrics port,
//! Grafana's provisioning loads the dashboard, and the dashboard queries only metrics and
//! labels pgweir exports ([`super::promql::METRICS`]), every one of them.

use super::*;

#[test]
fn prometheus_scrapes_pgweir_on_its_metrics_port() {
    let config = yaml(&docker_dir().join("prometheus.yml"));
    let jobs = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs");
    let job = jobs
        .iter()
        .find(|job| {
            job["static_configs"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|sc| str_list(&sc["targets"]).iter().any(|t| t == "pgweir:9930"))
        })
        .expect("no job scrapes pgweir:9930");
    let interval = job["scrape_interval"]
        .as_str()
        .or(config["global"]["scrape_interval"].as_str());
    assert_eq!(interval, Some("5s"));
    let path = job["metrics_path"].as_str().unwrap_or("/metrics");
    assert_eq!(path, "/metrics");

    let toml = pgweir_toml();
    let metrics_addr = toml["pgweir"]["metrics_addr"]
        .as_str()
        .expect("metrics_addr");
    assert!(
        metrics_addr.ends_with(":9930"),
        "metrics_addr = {metrics_addr}"
    );
}

/// Grafana's provisioning loads the dashboard folder the compose file mounts, and the
/// dashboard uses the provisioned datasource.
#[test]
fn grafana_provisioning_loads_the_dashboard() {
    let compose = compose();
    let mounts = volumes(service(&compose, "grafana"));
    let host_dir = |target: &str| {
        let (source, _) = mounts
            .iter()
            .find(|(_, t)| t == target)
            .unwrap_or_else(|| panic!("grafana mounts nothing at {target}"));
        docker_dir().join(source)
    };
    let provisioning = host_dir("/etc/grafana/provisioning");

    let datasources = yaml(&provisioning.join("datasources/prometheus.yml"));
    let datasource = &datasources["datasources"][0];
    assert_eq!(datasource["type"].as_str(), Some("prometheus"));
    assert_eq!(datasource["url"].as_str(), Some("http://prometheus:9090"));
    let uid = datasource["uid"].as_str().expect("datasource uid");

    let providers = yaml(&provisioning.join("dashboards/pgweir.yml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    assert!(host_dir(path).join("pgweir.json").is_file());

    let dashboard = dashboard();
    for panel in panels(&dashboard).filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"].as_str(), Some(uid), "{panel}");
    }
}

fn dashboard() -> Json {
    let path = docker_dir().join("grafana/dashboards/pgweir.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, including those nested in collapsed rows.
fn panels(dashboard: &Json) -> impl Iterator<Item = &Json> {
    let top = dashboard["panels"].as_array().expect("panels");
    top.iter()
        .flat_map(|p| std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten()))
}

#[test]
fn dashboard_queries_only_metrics_pgweir_exports() {
    let dashboard = dashboard();
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("");
        assert!(
            ids.insert(panel["id"].as_u64()),
            "duplicate panel id: {title}"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title} is wider than the dashboard");
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if panel["type"] == "row" {
            assert!(targets.is_empty(), "row {title} has queries");
            continue;
        }
        assert!(!title.is_empty(), "a panel without a title");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or("");
            let metrics = check_expr(expr).unwrap_or_else(|e| panic!("{title}: {e}: {expr}"));
            assert!(!metrics.is_empty(), "{title}: no pgweir metric in {expr}");
            used.extend(metrics);
        }
    }

    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    let names: Vec<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["database", "user"]);
    for variable in variables {
        let query = variable["definition"]
            .as_str()
            .expect("variable definition");
        check_expr(query).unwrap_or_else(|e| panic!("variable: {e}: {query}"));
        let label = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .map(|(_, label)| label.trim());
        assert_eq!(label, variable["name"].as_str(), "variable query {query}");
    }

    let unused: Vec<&str> = metrics()
        .map(|m| m.name)
        .filter(|name| !used.contains(name))
        .collect();
    assert!(
        unused.is_empty(),
        "the dashboard shows nothing of {unused:?}"
    );
}
