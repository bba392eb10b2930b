//! The command's stderr logger: one line per message, prefixed `mastotail:`.
//!
//! Only records from mastotail's own modules are printed, at every level. Dependencies stay
//! silent because some of them log request headers at debug level, and the access token is a
//! request header.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

/// Installs the logger. `verbosity` 0 prints info and above; each step up adds debug, then
/// trace; each step down leaves warnings only, then errors only, then nothing.
pub fn init(verbosity: i32) {
    let level = match verbosity {
        i32::MIN..=-3 => LevelFilter::Off,
        -2 => LevelFilter::Error,
        -1 => LevelFilter::Warn,
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.target().starts_with("mastotail")
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let label = match record.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug => "debug: ",
            Level::Trace => "trace: ",
        };
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "mastotail: {label}{}", record.args());
    }

    fn flush(&self) {}
}
