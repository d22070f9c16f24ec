//! The `pgweir` command: `pgweir --config PATH` runs the pooler, `pgweir check --config PATH`
//! validates a configuration file and prints every problem in it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use pgweir::app::App;
use pgweir::config::Config;
use pgweir::listener;
use pgweir::stats::exporter;

#[derive(Parser)]
#[command(
    name = "pgweir",
    version,
    about = "A transaction-mode connection pooler for PostgreSQL"
)]
struct Cli {
    /// Configuration file.
    #[arg(short, long, global = true, default_value = "pgweir.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and exit.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "pgweir: invalid configuration {}:\n{e}",
                cli.config.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Check) = cli.command {
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    init_logging(&config.pgweir.log_level);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "pgweir stopped");
            ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG` wins over the config's `log_level`.
fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(config: Config) -> std::io::Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if config.pgweir.workers > 0 {
        rt.worker_threads(config.pgweir.workers);
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(async {
        // The recorder goes in before any pool exists, so the handles pools keep are live.
        let metrics = match config.pgweir.metrics_addr {
            Some(addr) => Some((addr, exporter::install().map_err(std::io::Error::other)?)),
            None => None,
        };
        let app = Arc::new(App::new(config));
        if let Some((addr, handle)) = metrics {
            let metrics_listener = exporter::bind(addr).await?;
            tracing::info!(%addr, "metrics on /metrics, health on /health");
            tokio::spawn(exporter::serve(Arc::clone(&app), handle, metrics_listener));
        }
        let listener = listener::bind(&app).await?;
        tracing::info!(addr = %listener.local_addr()?, "pgweir listening");
        tokio::select! {
            () = listener::serve(Arc::clone(&app), listener) => Ok(()),
            r = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted; exiting");
                r
            }
        }
    })
}
