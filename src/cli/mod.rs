//! Command-line parsing: flags (each also an environment variable) turned into
//! plain option structs. No behaviour lives here.

use crate::domain::Policy;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "terminus", version, about = "Terminate Customer Relationship (eTOM 1.3.4.4) as an exactly-once Kafka worker")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the domain core over a file of events (JSON lines), with no Kafka.
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// After the last event, advance the logical clock to this time (RFC 3339)
    /// and fire the timers due by then.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<crate::time::Timestamp>,
    /// Input file of JSON-lines envelopes; standard input when absent or `-`.
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// The rules' durations and limits (see docs/state-machine.md).
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Minimum notice for a customer's own termination request.
    #[arg(long, env = "TERMINUS_CUSTOMER_NOTICE", default_value = "14d", value_parser = parse_duration)]
    pub customer_notice: Duration,
    /// Notice for an enterprise termination decision.
    #[arg(long, env = "TERMINUS_ENTERPRISE_NOTICE", default_value = "30d", value_parser = parse_duration)]
    pub enterprise_notice: Duration,
    /// Delay before a death, dissolution or confirmed fraud takes effect.
    #[arg(long, env = "TERMINUS_IMMEDIATE_NOTICE", default_value = "0s", value_parser = parse_duration)]
    pub immediate_notice: Duration,
    /// Time the verticals have to confirm dismantling before TerminationStalled.
    #[arg(long, env = "TERMINUS_DISMANTLE_DEADLINE", default_value = "72h", value_parser = parse_duration)]
    pub dismantle_deadline: Duration,
    /// Dismantle instructions per vertical, the first included.
    #[arg(long, env = "TERMINUS_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// Retention of a terminated relationship's records (7 years).
    #[arg(long, env = "TERMINUS_RETENTION", default_value = "2557d", value_parser = parse_duration)]
    pub retention: Duration,
    /// Retention when the customer asked for erasure (never applied to fraud).
    #[arg(long, env = "TERMINUS_ERASURE_RETENTION", default_value = "180d", value_parser = parse_duration)]
    pub erasure_retention: Duration,
    /// How long an anonymised customer's id-only marker is kept before it is forgotten.
    #[arg(long, env = "TERMINUS_FORGET_AFTER", default_value = "30d", value_parser = parse_duration)]
    pub forget_after: Duration,
    /// Require evidence/case/approval references on service-provider terminations.
    #[arg(long, env = "TERMINUS_REQUIRE_EVIDENCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub require_evidence: bool,
    /// Recent event ids remembered per customer for deduplication.
    #[arg(long, env = "TERMINUS_DEDUP_WINDOW", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub dedup_window: u32,
    /// The `source` field of every output envelope.
    #[arg(long, env = "TERMINUS_SOURCE", default_value = "terminus")]
    pub source: String,
}

impl PolicyArgs {
    pub fn to_policy(&self) -> Policy {
        Policy {
            customer_notice: self.customer_notice,
            enterprise_notice: self.enterprise_notice,
            immediate_notice: self.immediate_notice,
            dismantle_deadline: self.dismantle_deadline,
            max_attempts: self.max_attempts,
            retention: self.retention,
            erasure_retention: self.erasure_retention,
            forget_after: self.forget_after,
            require_evidence: self.require_evidence,
            dedup_window: self.dedup_window as usize,
            source: self.source.clone(),
        }
    }
}

/// Durations with units: `500ms`, `30s`, `14d`, `72h`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration such as 30s, 72h or 14d ({e})"))
}

pub fn parse_time(text: &str) -> Result<crate::time::Timestamp, String> {
    crate::time::Timestamp::parse_rfc3339(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_briefs() {
        let cli = Cli::try_parse_from(["terminus", "simulate"]).unwrap();
        let Command::Simulate(args) = cli.command;
        assert_eq!(args.policy.to_policy(), Policy::default());
    }

    #[test]
    fn durations_need_units_and_report_clearly() {
        assert_eq!(parse_duration("14d").unwrap(), Duration::from_secs(14 * 86400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        let err = parse_duration("fortnight").unwrap_err();
        assert!(err.contains("fortnight"), "{err}");
    }
}
