//! The `terminus` binary: parse flags, call the library, map errors to exit codes.

use anyhow::Context;
use clap::Parser;
use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use terminus::cli::{Cli, Command, SimulateArgs};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => simulate(args),
    }
}

fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let policy = args.policy.to_policy();
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
