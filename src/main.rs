//! The `mastotail` command: parses the command line, sets up logging, and writes the events
//! of [`mastotail::Tail`] to stdout. Exit statuses are listed in [`mastotail::exit`].

mod cli;
mod logger;
mod sink;

use std::process::ExitCode;

use log::{error, info, warn};
use mastotail::{Error, Notice, Tail, exit};

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args_os().skip(1).collect()) {
        Ok(cli::Parsed::Run(options)) => options,
        Ok(cli::Parsed::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(cli::Parsed::Version) => {
            println!("mastotail {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("mastotail: error: {message}");
            return ExitCode::from(exit::USAGE as u8);
        }
    };
    logger::init(options.verbosity);
    for warning in &options.warnings {
        warn!("{warning}");
    }
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!("{error}");
            ExitCode::from(error.exit_status() as u8)
        }
    }
}

/// Runs mastotail until the run ends. A closed stdout ends the run quietly.
fn run(options: &cli::Options) -> Result<(), Error> {
    let mut tail = Tail::new(options.config.clone())?;
    tail.on_notice(|notice: &Notice| {
        if notice.is_warning() {
            warn!("{notice}");
        } else {
            info!("{notice}");
        }
    });
    match &options.hook {
        Some(hook) => sink::run_hooks(&mut tail, hook, &options.filter, options.count),
        None => sink::print(&mut tail, options.format, &options.filter, options.count),
    }
}
