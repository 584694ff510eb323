//! `ztlab demo list|show|run|facts`: the catalogue (built in, or `--catalogue <file>`) and the
//! runner, for a terminal. `run` prints each event as it comes ([`text::lines`]): on stdout with
//! `-o table`; with `-o json` on stderr, and the [`Report`] is then the only thing on stdout.
//! Exit 0 when every expectation holds, 1 when one does not, 2 on errors (no lab, a component
//! that does not answer, Ctrl-C).
//!
//! [`Report`]: super::event::Report

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;
use zt_scenarios::{Catalogue, Scenario};

use super::event::{Event, Sink};
use super::target::{LocalTarget, Target as _};
use super::text::{self, Style};
use crate::Output;

/// `ztlab demo …`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Scenario catalogue (TOML); default: demo/scenarios.toml as built in.
    #[arg(long, global = true)]
    catalogue: Option<PathBuf>,
    #[command(subcommand)]
    cmd: DemoCmd,
}

#[derive(Debug, Subcommand)]
enum DemoCmd {
    /// The scenarios: id and title, one a line (`-o json`: the whole catalogue).
    List,
    /// One scenario: title, narration, evidence, expected outcome, steps or cases.
    Show {
        /// The scenario's id (see `ztlab demo list`).
        id: String,
    },
    /// Run a scenario (or all) against the running lab: PASS/FAIL for each step or case, with
    /// what was observed and why. Exits 1 if an expectation fails, 2 on errors.
    Run {
        /// The scenario's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every scenario, in catalogue order.
        #[arg(long)]
        all: bool,
        /// Only this case of the scenario (its number, e.g. `--case 5` of delegation); repeat for
        /// more. The scenario's steps are skipped.
        #[arg(long = "case", value_name = "N", requires = "id")]
        cases: Vec<u32>,
    },
    /// Where the running lab's evidence is: SPIFFE IDs, ports, sockets and files, as
    /// `key=value` lines (read by scripts/demo.sh).
    Facts,
}

/// Runs `ztlab demo …`.
pub async fn run(state_dir: &Path, out: Output, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let catalogue = load_catalogue(args.catalogue.as_deref())?;
    let style = Style::detect();
    match args.cmd {
        DemoCmd::List => {
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&catalogue)?),
                Output::Table => {
                    let w = catalogue.scenario.iter().map(|s| s.id.len()).max().unwrap_or(0);
                    for s in &catalogue.scenario {
                        println!("{:<w$}  {}", s.id, s.title);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DemoCmd::Show { id } => {
            let s = scenario(&catalogue, &id)?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(s)?),
                Output::Table => print!("{}", text::show(s, style)),
            }
            Ok(ExitCode::SUCCESS)
        }
        DemoCmd::Run { id, all: _, cases } => {
            let chosen: Vec<&Scenario> = match &id {
                Some(id) => vec![scenario(&catalogue, id)?],
                None => catalogue.scenario.iter().collect(),
            };
            for n in &cases {
                let s = chosen[0];
                anyhow::ensure!(
                    s.case.iter().any(|c| c.n == *n),
                    "--case {n}: scenario {} has no case {n} (its cases: {})",
                    s.id,
                    if s.case.is_empty() {
                        "none".to_owned()
                    } else {
                        s.case.iter().map(|c| c.n.to_string()).collect::<Vec<_>>().join(", ")
                    }
                );
            }
            let target = LocalTarget::open(state_dir)?;
            let sink = printer(out, style);
            let interrupted = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let report = super::run_scenarios(&target, &chosen, &cases, &sink, interrupted).await?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Table if report.scenarios.len() > 1 => {
                    let n = report.scenarios.iter().filter(|r| r.passed).count();
                    println!("\n{} of {} scenarios passed", n, report.scenarios.len());
                }
                Output::Table => {}
            }
            Ok(if report.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        DemoCmd::Facts => {
            let target = LocalTarget::open(state_dir)?;
            let mut agents: Vec<&str> =
                catalogue.scenario.iter().flat_map(|s| &s.case).filter_map(|c| c.agent.as_deref()).collect();
            agents.sort_unstable();
            agents.dedup();
            let facts = target.facts(&agents)?;
            match out {
                Output::Json => {
                    let map: serde_json::Map<String, Value> =
                        facts.into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect();
                    println!("{}", serde_json::to_string_pretty(&map)?);
                }
                Output::Table => {
                    for (k, v) in facts {
                        println!("{k}={v}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints each event as it comes: on stdout with `-o table` (a blank line between scenarios), on
/// stderr with `-o json`; warnings always on stderr.
fn printer(out: Output, style: Style) -> Sink {
    let table = out == Output::Table;
    let started = Arc::new(AtomicBool::new(false));
    Sink::new(move |event| {
        if let Event::Warning { message } = &event {
            eprintln!("warning: {message}");
            return;
        }
        if matches!(event, Event::Started { .. }) && started.swap(true, Ordering::Relaxed) && table {
            println!();
        }
        for line in text::lines(&event, style) {
            if table {
                println!("{line}");
            } else {
                eprintln!("{line}");
            }
        }
    })
}

fn load_catalogue(file: Option<&Path>) -> anyhow::Result<Catalogue> {
    match file {
        None => Ok(Catalogue::builtin()?),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Catalogue::parse(&text).with_context(|| p.display().to_string())
        }
    }
}

fn scenario<'a>(catalogue: &'a Catalogue, id: &str) -> anyhow::Result<&'a Scenario> {
    catalogue.get(id).with_context(|| {
        let known: Vec<&str> = catalogue.scenario.iter().map(|s| s.id.as_str()).collect();
        format!("no scenario {id:?}; known: {}", known.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ids_name_the_known_ones() {
        let c = Catalogue::builtin().expect("builtin");
        let err = scenario(&c, "nope").expect_err("unknown").to_string();
        assert!(err.contains("run-demo") && err.contains("delegation"), "{err}");
    }
}
