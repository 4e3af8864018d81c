//! The `airlock` binary: parses the command line, loads the config, calls the engine, prints.
//! Every failure surfaces here as one line per problem on stderr and a non-zero exit code;
//! this is the CLI's one rescue point.

mod access;
mod api;
mod audit;
mod cli;
mod commands;
mod history;
mod output;
mod provision;
mod scim;

use clap::Parser;
use std::process::ExitCode;

/// Exit code for a run that failed (an instance unreachable, a store error, ...).
const EXIT_FAILURE: u8 = 1;
/// Exit code for an invalid configuration.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(commands::run(args)) {
        Ok(code) => code,
        Err(e) => {
            let code = if e.downcast_ref::<airlock_config::LoadError>().is_some() {
                EXIT_CONFIG
            } else {
                EXIT_FAILURE
            };
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(code)
        }
    }
}
