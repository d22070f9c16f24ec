//! The `pgweir` command: `pgweir --config PATH` runs the pooler (`--takeover`: in place of
//! the one running on that port, see [`pgweir::takeover`]), `pgweir check --config PATH`
//! validates a configuration file and prints every problem in it, and `pgweir convert
//! pgbouncer.ini` prints the pgweir.toml for a PgBouncer configuration.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::EnvFilter;

use pgweir::app::App;
use pgweir::config::{Config, LogFormat};
use pgweir::listener;
use pgweir::net::tls::Tls;
use pgweir::report::{self, exporter};
use pgweir::shutdown::Phase;
use pgweir::takeover::{self, Offer};
use std::os::fd::AsFd;

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
    /// Take over from the pgweir running on this config's port: its listening sockets, then
    /// each of its clients between transactions, so nobody is refused or disconnected.
    #[arg(long)]
    takeover: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and exit.
    Check,
    /// Print the pgweir.toml that does what a pgbouncer.ini does. Settings that cannot carry
    /// over are comments in it and listed on stderr; the exit status is then 2.
    Convert {
        /// The pgbouncer.ini to read.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Convert { file }) = &cli.command {
        return convert(file);
    }
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "pgweir: invalid configuration {}:\n{e}",
                cli.config.display()
            );
            if looks_like_pgbouncer_ini(&cli.config) {
                eprintln!(
                    "hint: this looks like a pgbouncer.ini; `pgweir convert {}` prints the pgweir.toml for it",
                    cli.config.display()
                );
            }
            return ExitCode::FAILURE;
        }
    };
    let tls = match Tls::load(&config.pgweir.tls) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!(
                "pgweir: invalid configuration {}:\n{}",
                cli.config.display(),
                e.into_config_error()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Check) = cli.command {
        if let Err(e) = pgweir::auth::check_auth_file(&config) {
            eprintln!("pgweir: {}: {e}", cli.config.display());
            return ExitCode::FAILURE;
        }
        let unbindable = listener::probe(&config.pgweir);
        if !unbindable.is_empty() {
            eprintln!("pgweir: cannot listen as {} says:", cli.config.display());
            for e in unbindable {
                eprintln!("  {e}");
            }
            return ExitCode::FAILURE;
        }
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    init_logging(&config.pgweir.log_level, config.pgweir.log_format);
    match run(config, tls, &cli.config, cli.takeover) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "pgweir stopped");
            ExitCode::FAILURE
        }
    }
}

/// `pgweir convert FILE`: the TOML on stdout, what did not carry over on stderr.
fn convert(file: &Path) -> ExitCode {
    let conversion = match pgweir::convert::convert(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgweir convert: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", conversion.toml);
    for d in &conversion.dropped {
        let (file, line) = (d.file.display(), d.line);
        eprintln!("{file}:{line}: not converted: {} — {}", d.setting, d.why);
    }
    match conversion.dropped.len() {
        0 => ExitCode::SUCCESS,
        n => {
            eprintln!("pgweir convert: {n} setting(s) did not carry over (comments in the output)");
            ExitCode::from(2)
        }
    }
}

/// Whether the file has PgBouncer's `[pgbouncer]` section, for a hint when it fails as TOML.
fn looks_like_pgbouncer_ini(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| {
        text.lines()
            .any(|l| l.trim().eq_ignore_ascii_case("[pgbouncer]"))
    })
}

/// `RUST_LOG` wins over the config's `log_level`; `log_format = "json"` writes one JSON
/// object per line for log shippers.
fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn run(config: Config, tls: Tls, path: &Path, takeover: bool) -> std::io::Result<()> {
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
        let app = Arc::new(App::new(config, path.to_owned(), tls));
        let period = app.config().pgweir.stats_period;
        if !period.is_zero() {
            tokio::spawn(report::period::log_every(Arc::clone(&app), period));
        }
        let port = app.config().pgweir.listen_port;
        let (listeners, inherited_metrics, predecessor) = if takeover {
            let i = takeover::inherit(port).map_err(std::io::Error::other)?;
            (i.listeners, i.metrics, Some(i.predecessor))
        } else {
            let listeners = listener::bind(&app.config().pgweir).map_err(std::io::Error::other)?;
            (listeners, None, None)
        };
        let mut exporter_task = None;
        let mut metrics_fd = None;
        if let Some((addr, handle)) = metrics {
            // The predecessor's socket unless the config moved metrics_addr elsewhere.
            let inherited = inherited_metrics.filter(|l| l.local_addr().ok() == Some(addr));
            let metrics_listener = match inherited {
                Some(l) => {
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)?
                }
                None => exporter::bind(addr).await?,
            };
            tracing::info!(%addr, "metrics on /metrics, health on /health");
            metrics_fd = Some(metrics_listener.as_fd().try_clone_to_owned()?);
            let serve = exporter::serve(Arc::clone(&app), handle, metrics_listener);
            exporter_task = Some(tokio::spawn(serve));
        }
        let offer = Offer::new(listeners.handover()?, metrics_fd);
        match takeover::bind_control(port) {
            Ok(control) => {
                tokio::spawn(takeover::serve(Arc::clone(&app), control, offer.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "no control socket: this process cannot be taken over, nor forward cancels to others on its port"),
        }
        if let Some(predecessor) = predecessor {
            predecessor.receive_clients(Arc::clone(&app))?;
        }
        let addrs = listeners.addresses().join(", ");
        let _ = app.listening.set(listeners.sockets());
        tracing::info!(addr = %addrs, "pgweir listening");
        let mut signals = Signals::new()?;
        // The admin console's SHUTDOWN starts the same drain as a signal.
        let mut requested = app.shutdown.watch();
        tokio::select! {
            () = listener::serve(Arc::clone(&app), listeners) => {}
            () = reload_on_sighup(&app, path) => {}
            () = offer.handed.notified() => {
                tracing::info!("taken over: no new clients here; each client goes to the new process between transactions");
                exporter_task.take().inspect(tokio::task::JoinHandle::abort);
            }
            () = requested.reached(Phase::Draining) => {
                tracing::info!("shutting down on request: no new clients; clients finish their transactions, then close");
            }
            first = signals.next() => tracing::info!(
                signal = first,
                "shutting down: no new clients; clients finish their transactions, then close"
            ),
        }
        offer.withdraw();
        drain(&app, &mut signals).await;
        if app.handoff.started() {
            app.handoff.finish();
            let flushed = async {
                while !app.handoff.is_flushed() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            let _ = tokio::time::timeout(FINAL_GRACE * 5, flushed).await;
        }
        Ok(())
    })
}

/// Re-reads the configuration file at each SIGHUP. A file with any problem is rejected
/// whole, and the running configuration stays.
async fn reload_on_sighup(app: &App, path: &Path) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload through the admin console only");
        return std::future::pending().await;
    };
    while hup.recv().await.is_some() {
        match app.reload_file() {
            Ok(notes) => {
                for note in notes {
                    tracing::warn!("{note}");
                }
                tracing::info!(path = %path.display(), "configuration reloaded");
            }
            Err(e) => {
                tracing::error!(path = %path.display(), "reload refused, configuration unchanged:\n{e}")
            }
        }
    }
    std::future::pending().await
}

/// SIGTERM and SIGINT (the first starts shutdown, the second makes it immediate).
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Lets clients finish their transactions for up to `shutdown_timeout` (zero: no limit),
/// then closes the rest; a second signal closes them at once.
async fn drain(app: &App, signals: &mut Signals) {
    app.shut_down(Phase::Draining);
    let limit = app.config().pgweir.shutdown_timeout;
    let deadline = async {
        if limit.is_zero() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(limit).await;
    };
    tokio::select! {
        () = clients_gone(app) => return,
        () = deadline => tracing::warn!(?limit, "shutdown_timeout: closing the remaining clients"),
        second = signals.next() => tracing::warn!(signal = second, "closing the remaining clients now"),
    }
    app.shut_down(Phase::Now);
    // Each client is told why before its connection closes.
    let _ = tokio::time::timeout(FINAL_GRACE, clients_gone(app)).await;
}

/// How long clients closed by force get to receive their FATAL.
const FINAL_GRACE: Duration = Duration::from_secs(1);

/// Every client connection has ended, those still logging in included.
async fn clients_gone(app: &App) {
    while app.shutdown.clients() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
