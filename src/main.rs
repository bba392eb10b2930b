//! The `mastotail` command: parses the command line, sets up logging, and writes the events
//! of [`mastotail::Tail`] to stdout. Exit statuses are listed in [`mastotail::exit`].

mod cli;
mod logger;

use std::io::{self, Write};
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

/// Writes events until the run ends. A closed stdout ends the run quietly.
fn run(options: &cli::Options) -> Result<(), Error> {
    let mut tail = Tail::new(options.config.clone())?;
    tail.on_notice(|notice: &Notice| {
        if notice.is_warning() {
            warn!("{notice}");
        } else {
            info!("{notice}");
        }
    });
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut printed = 0u64;
    while let Some(event) = tail.next() {
        let event = event?;
        let written = event.write_json_line(&mut out).and_then(|()| {
            if tail.pending() == 0 {
                out.flush()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(error) => return Err(Error::Output(error)),
        }
        printed += 1;
        if options.count.is_some_and(|count| printed >= count) {
            if let Err(error) = out.flush() {
                if error.kind() == io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(Error::Output(error));
            }
            return tail.commit();
        }
    }
    Ok(())
}
