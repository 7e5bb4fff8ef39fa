//! The `terminus` binary: parse flags, call the library, map errors to exit codes.

use anyhow::Context;
use clap::Parser;
use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use terminus::cli::{
    Cli, Command, ConnectionArgs, InspectArgs, LogFormat, PolicyCommand, RunArgs, SimulateArgs,
    TopicsCommand,
};
use terminus::telemetry::admin::AdminState;
use terminus::worker::Telemetry;
use tracing::{error, info, warn};

/// Small, short-lived allocations (decoded events, states, records) are the
/// worker's pattern; glibc's allocator spent a quarter of the loop on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process. The allocator's fresh memory
/// was faulted in as 2 MiB huge pages, each zeroed whole however little of it
/// a batch used (`clear_page_erms`, 11 % of the worker thread in a profile);
/// without them the worker used about 5–10 % less CPU per event
/// (docs/performance.md). Best effort: where it fails nothing else changes.
#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() -> bool {
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes integers and only sets a flag
    // of this process's memory map.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() -> bool {
    false
}

fn main() -> anyhow::Result<()> {
    let thp_disabled = disable_transparent_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => simulate(args),
        Command::Run(args) => run(*args, thp_disabled),
        Command::Topics { command } => topics(command),
        Command::Inspect(args) => inspect(&args),
        Command::Produce { connection, file } => produce(&connection, file.as_deref()),
        Command::Policy {
            command: PolicyCommand::Check(args),
        } => policy_check(&args),
    }
}

fn policy_check(args: &terminus::cli::PolicyCheckArgs) -> anyhow::Result<()> {
    let policy = terminus::policy_file::load(&args.file)?;
    let checked = match &args.events {
        Some(path) => {
            let f = File::open(path)
                .with_context(|| format!("cannot open events file {}", path.display()))?;
            terminus::policy_check::from_events(&policy, BufReader::new(f))
                .with_context(|| format!("cannot read events file {}", path.display()))?
        }
        None => terminus::policy_check::sample(&policy, args.at),
    };
    let stdout = io::stdout();
    terminus::policy_check::print(&policy, &checked, BufWriter::new(stdout.lock()))?;
    Ok(())
}

fn produce(connection: &ConnectionArgs, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let (kafka, _) = connection.kafka_settings(std::env::vars())?;
    let names = connection.topic_names();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    let count = match file {
        Some(path) if path.as_os_str() != "-" => {
            let f = File::open(path)
                .with_context(|| format!("cannot open input file {}", path.display()))?;
            runtime.block_on(terminus::kafka::produce::produce(
                &kafka,
                &names,
                BufReader::new(f),
            ))?
        }
        _ => runtime.block_on(terminus::kafka::produce::produce(
            &kafka,
            &names,
            io::stdin().lock(),
        ))?,
    };
    eprintln!("produced {count} events");
    Ok(())
}

fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let found = if args.from_changelog {
        let (kafka, _) = args.connection.kafka_settings(std::env::vars())?;
        terminus::inspect::from_changelog(
            &kafka,
            &args.connection.changelog_topic,
            &args.customer_id,
        )?
    } else {
        terminus::inspect::ask_admin_servers(&args.admin_addrs, &args.customer_id)?
    };
    let summary = terminus::inspect::summary(&found, terminus::time::Timestamp::now());
    if args.json {
        println!("{summary:#}");
    } else {
        print!("{}", terminus::inspect::render(&summary));
    }
    Ok(())
}

fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let policy = args.policy.load()?;
    let stdout = io::stdout();
    let out = BufWriter::new(stdout.lock());
    let summary = match args.file.as_deref() {
        Some(path) if path.as_os_str() != "-" => {
            let file = File::open(path)
                .with_context(|| format!("cannot open input file {}", path.display()))?;
            terminus::simulate::run(BufReader::new(file), out, args.until, policy)
        }
        _ => terminus::simulate::run(io::stdin().lock(), out, args.until, policy),
    }
    .context("simulation failed while reading input or writing output")?;
    eprintln!(
        "simulated {} events: {} outputs, {} dead letters",
        summary.events, summary.outputs, summary.dead_letters
    );
    Ok(())
}

fn run(args: RunArgs, thp_disabled: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let _tracing = {
        let _guard = runtime.enter();
        terminus::telemetry::tracing_setup::init(args.log_format == LogFormat::Json)
    };
    let (options, ignored) = args.worker_options(std::env::vars())?;
    for name in ignored {
        warn!(variable = %name, "environment variable is not a librdkafka property; ignored");
    }
    // Secrets are masked by KafkaSettings' Debug.
    info!(config = ?options, admin_addr = %args.admin_addr, "starting terminus");
    if !thp_disabled {
        info!(
            "transparent huge pages could not be turned off for this process; the worker uses somewhat more CPU"
        );
    }

    let telemetry = Telemetry::default();
    telemetry.metrics.start_topic_counters(&options.topics);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.admin_addr))
        .with_context(|| format!("cannot bind the admin server to {}", args.admin_addr))?;
    let app = terminus::telemetry::admin::router(AdminState {
        metrics: telemetry.metrics.clone(),
        status: telemetry.status.clone(),
        engines: telemetry.engines.clone(),
        partitions: telemetry.partitions.clone(),
    });
    let admin_addr = listener.local_addr().unwrap_or(args.admin_addr);
    runtime.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "admin server failed");
        }
    });
    info!(addr = %admin_addr, "admin server listening");

    let stop = Arc::new(AtomicBool::new(false));
    runtime.spawn(watch_signals(stop.clone()));
    let worker = std::thread::Builder::new()
        .name("terminus-worker".into())
        .spawn(move || terminus::worker::run(options, stop, telemetry))
        .context("cannot start the worker thread")?;
    let outcome = worker.join();
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            error!(error = %e, "worker failed");
            Err(anyhow::Error::new(e))
        }
        Err(_) => anyhow::bail!("the worker thread panicked"),
    }
}

/// SIGTERM and SIGINT ask the worker to finish its transaction and leave the
/// group; a second signal exits at once.
async fn watch_signals(stop: Arc<AtomicBool>) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    for _ in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        if stop.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        info!("shutdown requested; committing and leaving the group");
    }
}

fn topics(command: TopicsCommand) -> anyhow::Result<()> {
    let _tracing = terminus::telemetry::tracing_setup::init(false);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    match command {
        TopicsCommand::Create(args) => {
            let (kafka, _) = args.connection.kafka_settings(std::env::vars())?;
            let names = args.connection.topic_names();
            let created = runtime.block_on(terminus::kafka::topics::create(
                &kafka,
                &names,
                args.partitions,
                args.replication_factor,
            ))?;
            let layout = terminus::kafka::topics::check_layout(&kafka, &names)?;
            println!(
                "topics ready ({} partitions for inputs and changelog); created: {}",
                layout.partitions,
                if created.is_empty() {
                    "none (all existed)".to_owned()
                } else {
                    created.join(", ")
                }
            );
            Ok(())
        }
        TopicsCommand::Check(connection) => {
            let (kafka, _) = connection.kafka_settings(std::env::vars())?;
            let layout = terminus::kafka::topics::check(&kafka, &connection.topic_names())?;
            println!(
                "topics ok: inputs and changelog have {} partitions",
                layout.partitions
            );
            Ok(())
        }
    }
}
