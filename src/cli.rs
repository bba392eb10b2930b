//! Command-line parsing with pico-args, and the help text.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use mastotail::hook::HookCommand;
use mastotail::{Config, Endpoint, Stream, Token};

use crate::sink::{Filter, Format, HookSettings};

pub const HELP: &str = "\
mastotail: follow a Mastodon account's streaming API and print every event once,
as one JSON object per line on stdout.

USAGE:
    mastotail [OPTIONS] STREAM...

STREAMS (one WebSocket carries all of them):
    user  user:notification  public  public:local  public:remote
    public:media  public:local:media  public:remote:media  direct
    hashtag:TAG  hashtag:local:TAG  list:ID

SERVER AND TOKEN:
    --server HOST|URL        Mastodon server, e.g. mastodon.example or https://host:port
                             [env: MASTODON_SERVER]
    --token-file PATH        read the access token from PATH (else MASTODON_TOKEN)
    --streaming-url URL      streaming base URL; skips discovery via /api/v2/instance
    --ca-file PATH           trust only the PEM certificates in PATH for TLS
    --allow-insecure         allow the token over plain ws:// or http:// to a host
                             that is not loopback
    --token-in-query         also send the token as ?access_token= in the WebSocket URL,
                             for servers that ignore the Authorization header (Pleroma)

TIMING (seconds, fractions allowed):
    --ping-interval SECS     interval between mastotail's pings, 0 for none [default: 15]
    --silence-timeout SECS   reconnect after this long without any frame [default: 45]
    --connect-timeout SECS   TCP connect timeout per address [default: 10]
    --handshake-timeout SECS TLS and WebSocket handshake timeout [default: 10]
    --request-timeout SECS   timeout of one REST request [default: 10]
    --write-timeout SECS     timeout of a blocked socket write [default: 10]
    --backoff-initial SECS   first reconnect delay ceiling [default: 1]
    --backoff-max SECS       largest reconnect delay ceiling [default: 60]
    --max-message-size BYTES largest WebSocket message accepted [default: 16777216]

CATCH-UP AND STATE:
    --state FILE             keep cursors in FILE and catch up from them at start
    --backfill-max N         most events one catch-up of one source prints [default: 800]
    --no-backfill            do not fill gaps over REST
    --reconcile SECS         also catch up over REST every SECS while connected, to find
                             events the stream did not deliver [default: off]
    --catch-up               print what was missed since the state file's cursors, then exit

OUTPUT:
    --format FORMAT          json (default), raw (frames as received) or text (one
                             readable line per event)
    --event LIST             keep only these events, e.g. update,notification
    --notification-type LIST keep only these notification types, e.g. mention
    --count N                exit after printing N events (or N hooks finished)
    --exec PROGRAM [ARGS...] run PROGRAM once per event, with the event's JSON line on
                             stdin; everything after --exec belongs to the program, so
                             put it last
    --exec-jobs N            hooks allowed to run at once [default: 1]
    --exec-timeout SECS      kill a hook after this long [default: 60]
    --queue-max N            events waiting for slow hooks before live events that can
                             be fetched again are dropped and refetched [default: 2000]
    --exec-env NAME          pass the environment variable NAME on to hooks (repeatable);
                             hooks get only PATH, HOME, USER, LANG, LC_ALL, TZ, TMPDIR
                             and the MASTOTAIL_* variables otherwise
    -v, --verbose            more log output on stderr (-vv for trace)
    -q, --quiet              less log output on stderr (-q warnings, -qq errors, -qqq none)
    -V, --version            print the version
    -h, --help               print this help

EXIT STATUS:
    0 done (stdout closed, --count reached, catch-up finished)   1 other failure
    2 usage error   3 token rejected (HTTP 401/403)   4 subscription rejected
    5 state file locked, unreadable or corrupt   6 --catch-up incomplete, run it again
";

/// The settings the command line requests.
pub struct Options {
    pub config: Config,
    pub verbosity: i32,
    pub count: Option<u64>,
    pub format: Format,
    pub filter: Filter,
    pub hook: Option<HookSettings>,
    /// Warnings found while parsing, printed once logging is set up.
    pub warnings: Vec<String>,
}

/// The result of parsing: run, or print something and exit.
pub enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

/// Parses the arguments and the environment. Errors are one line that names the value.
pub fn parse(mut args: Vec<OsString>) -> Result<Parsed, String> {
    let hook_command = match args.iter().position(|arg| arg == "--exec") {
        Some(index) => {
            let command = args.split_off(index);
            let mut command = command.into_iter().skip(1);
            let program = command
                .next()
                .ok_or("--exec needs a program, for example: --exec ./bot.sh")?;
            Some(HookCommand {
                program,
                args: command.collect(),
            })
        }
        None => None,
    };
    let mut args = pico_args::Arguments::from_vec(split_short_flags(args));
    if args.contains(["-h", "--help"]) {
        return Ok(Parsed::Help);
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Parsed::Version);
    }
    let mut verbosity = 0;
    while args.contains(["-v", "--verbose"]) {
        verbosity += 1;
    }
    while args.contains(["-q", "--quiet"]) {
        verbosity -= 1;
    }

    let server: Option<String> = string_option(&mut args, "--server")?;
    let token_file: Option<PathBuf> = string_option(&mut args, "--token-file")?.map(PathBuf::from);
    let streaming_url = string_option(&mut args, "--streaming-url")?;
    let ca_file = string_option(&mut args, "--ca-file")?.map(PathBuf::from);
    let allow_insecure = args.contains("--allow-insecure");
    let token_in_query = args.contains("--token-in-query");
    let ping_interval = seconds(&mut args, "--ping-interval")?;
    let silence_timeout = seconds(&mut args, "--silence-timeout")?;
    let connect_timeout = seconds(&mut args, "--connect-timeout")?;
    let handshake_timeout = seconds(&mut args, "--handshake-timeout")?;
    let request_timeout = seconds(&mut args, "--request-timeout")?;
    let write_timeout = seconds(&mut args, "--write-timeout")?;
    let backoff_initial = seconds(&mut args, "--backoff-initial")?;
    let backoff_max = seconds(&mut args, "--backoff-max")?;
    let backoff_seed = number(&mut args, "--backoff-seed")?;
    let max_message_size = number(&mut args, "--max-message-size")?;
    let state_file = string_option(&mut args, "--state")?.map(PathBuf::from);
    let backfill_max = number(&mut args, "--backfill-max")?;
    let no_backfill = args.contains("--no-backfill");
    let reconcile = seconds(&mut args, "--reconcile")?;
    let catch_up = args.contains("--catch-up");
    let count = number(&mut args, "--count")?;
    let format = match string_option(&mut args, "--format")?.as_deref() {
        None | Some("json") => Format::Json,
        Some("raw") => Format::Raw,
        Some("text") => Format::Text,
        Some(other) => {
            return Err(format!("invalid --format {other:?}: use json, raw or text"));
        }
    };
    let filter = Filter {
        events: list(string_option(&mut args, "--event")?),
        notification_types: list(string_option(&mut args, "--notification-type")?),
    };
    let mut warnings = Vec::new();
    for name in &filter.events {
        if !KNOWN_EVENTS.contains(&name.as_str()) {
            warnings.push(format!(
                "--event {name:?} is not an event Mastodon is known to send (names are \
                 case-sensitive, for example update or notification); only matching events pass"
            ));
        }
    }
    let exec_jobs = number(&mut args, "--exec-jobs")?;
    let exec_timeout = seconds(&mut args, "--exec-timeout")?;
    let queue_max = number(&mut args, "--queue-max")?;
    let exec_env_names: Vec<String> = args
        .values_from_str("--exec-env")
        .map_err(|error| format!("invalid --exec-env: {error}"))?;
    let mut exec_env = Vec::new();
    for name in exec_env_names {
        if name == "MASTODON_TOKEN" {
            return Err(
                "--exec-env MASTODON_TOKEN is not allowed: hooks never get mastotail's \
                 token; give the hook its own token file instead"
                    .to_string(),
            );
        }
        if let Ok(value) = std::env::var(&name) {
            exec_env.push((name, value));
        }
    }
    if hook_command.is_none()
        && (exec_jobs.is_some() || exec_timeout.is_some() || !exec_env.is_empty())
    {
        return Err("--exec-jobs, --exec-timeout and --exec-env need --exec PROGRAM".to_string());
    }
    if exec_jobs == Some(0) {
        return Err("invalid --exec-jobs 0: give a positive number".to_string());
    }
    if exec_timeout.is_some_and(|timeout| timeout.is_zero()) {
        return Err("invalid --exec-timeout 0: give seconds greater than zero".to_string());
    }
    if let Some(command) = &hook_command {
        check_program(&command.program)?;
    }
    // Raw output prints frames as received, so their payloads need no full decoding, unless
    // a hook gets the decoded JSON line.
    let check_payloads = format != Format::Raw || hook_command.is_some();
    let hook = hook_command.map(|command| HookSettings {
        command,
        jobs: exec_jobs.unwrap_or(1) as usize,
        timeout: exec_timeout.unwrap_or(Duration::from_secs(60)),
        env: exec_env,
    });

    let mut streams = Vec::new();
    for arg in args.finish() {
        let arg = arg
            .into_string()
            .map_err(|arg| format!("argument {arg:?} is not valid UTF-8"))?;
        if arg.starts_with('-') && arg.len() > 1 {
            let name = arg.split('=').next().unwrap_or(&arg);
            if HELP.contains(&format!(" {name} ")) {
                return Err(format!("option {name} is given more than once"));
            }
            return Err(format!("unknown option {arg:?}; see mastotail --help"));
        }
        let stream: Stream = arg.parse().map_err(|error| format!("{error}"))?;
        if !streams.contains(&stream) {
            streams.push(stream);
        }
    }
    if streams.is_empty() {
        return Err("no stream given; name at least one, for example: mastotail user".to_string());
    }

    let server = server
        .or_else(|| {
            std::env::var("MASTODON_SERVER")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .ok_or("missing server: pass --server HOST or set MASTODON_SERVER")?;
    let server = Endpoint::parse(&server).map_err(|error| format!("invalid --server: {error}"))?;
    let token = read_token(token_file.as_deref(), &mut warnings)?;

    let mut config = Config::new(server, token, streams);
    if let Some(url) = streaming_url {
        let url =
            Endpoint::parse(&url).map_err(|error| format!("invalid --streaming-url: {error}"))?;
        config.streaming_url = Some(url.to_websocket());
    }
    config.ca_file = ca_file;
    config.allow_insecure = allow_insecure;
    config.token_in_query = token_in_query;
    config.check_payloads = check_payloads;
    set(&mut config.ping_interval, ping_interval);
    set(&mut config.silence_timeout, silence_timeout);
    set(&mut config.connect_timeout, connect_timeout);
    set(&mut config.handshake_timeout, handshake_timeout);
    set(&mut config.request_timeout, request_timeout);
    set(&mut config.write_timeout, write_timeout);
    set(&mut config.backoff_initial, backoff_initial);
    set(&mut config.backoff_max, backoff_max);
    config.backoff_seed = backoff_seed;
    set(
        &mut config.max_message_size,
        max_message_size.map(|n: u64| n as usize),
    );
    config.state_file = state_file;
    set(
        &mut config.backfill_max,
        backfill_max.map(|n: u64| n as usize),
    );
    config.backfill = !no_backfill;
    if let Some(interval) = reconcile {
        if interval.is_zero() {
            return Err("invalid --reconcile 0: give seconds, for example 900".to_string());
        }
        if no_backfill {
            return Err("--reconcile and --no-backfill exclude each other".to_string());
        }
        config.reconcile_interval = Some(interval);
    }
    if config.backoff_initial > config.backoff_max {
        return Err(format!(
            "--backoff-initial {:.3} is larger than --backoff-max {:.3}",
            config.backoff_initial.as_secs_f64(),
            config.backoff_max.as_secs_f64()
        ));
    }
    if queue_max == Some(0) {
        return Err("invalid --queue-max 0: give a positive number".to_string());
    }
    set(&mut config.max_queue, queue_max.map(|n: u64| n as usize));
    if catch_up {
        if config.state_file.is_none() {
            return Err("--catch-up needs --state FILE to know where to start".to_string());
        }
        if no_backfill {
            return Err("--catch-up and --no-backfill exclude each other".to_string());
        }
        config.catch_up_only = true;
    }
    if count == Some(0) {
        return Err("invalid --count 0: give a positive number".to_string());
    }
    config.validate().map_err(|error| error.to_string())?;

    Ok(Parsed::Run(Box::new(Options {
        config,
        verbosity,
        count,
        format,
        filter,
        hook,
        warnings,
    })))
}

/// Splits `-vv` and `-qq` into repeated flags, which pico-args does not do.
fn split_short_flags(args: Vec<OsString>) -> Vec<OsString> {
    let mut split = Vec::with_capacity(args.len());
    for arg in args {
        let repeated = arg.to_str().and_then(|text| {
            let letters = text.strip_prefix('-')?;
            let first = letters.chars().next()?;
            let valid = letters.len() > 1
                && matches!(first, 'v' | 'q')
                && letters.chars().all(|c| c == first);
            valid.then(|| (format!("-{first}"), letters.len()))
        });
        match repeated {
            Some((flag, times)) => split.extend((0..times).map(|_| OsString::from(&flag))),
            None => split.push(arg),
        }
    }
    split
}

/// Event names Mastodon's streaming server sends, as of Mastodon 4.5.
const KNOWN_EVENTS: &[&str] = &[
    "update",
    "status.update",
    "delete",
    "notification",
    "conversation",
    "filters_changed",
    "announcement",
    "announcement.reaction",
    "announcement.delete",
    "notifications_merged",
    "encrypted_message",
];

/// Checks that the hook program can be run, before anything touches the network: a path
/// must name an executable file, a bare name must be found in `PATH`.
fn check_program(program: &std::ffi::OsStr) -> Result<(), String> {
    let path = std::path::Path::new(program);
    let executable = |candidate: &std::path::Path| {
        std::fs::metadata(candidate)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    let found = if program.as_encoded_bytes().contains(&b'/') {
        executable(path)
    } else {
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| executable(&dir.join(program)))
        })
    };
    if found {
        Ok(())
    } else {
        Err(format!(
            "--exec program {:?} is not an executable file or not found in PATH",
            path.display().to_string()
        ))
    }
}

/// Splits a comma-separated list, dropping empty items.
fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

fn string_option(
    args: &mut pico_args::Arguments,
    name: &'static str,
) -> Result<Option<String>, String> {
    args.opt_value_from_str(name)
        .map_err(|error| format!("invalid {name}: {error}"))
}

/// Reads a duration in seconds, fractions allowed, for example `0.05`.
fn seconds(
    args: &mut pico_args::Arguments,
    name: &'static str,
) -> Result<Option<Duration>, String> {
    let Some(text) = string_option(args, name)? else {
        return Ok(None);
    };
    let value: f64 = text
        .parse()
        .map_err(|_| format!("invalid {name} {text:?}: give seconds, for example 30 or 0.5"))?;
    if !value.is_finite() || !(0.0..=1e9).contains(&value) {
        return Err(format!(
            "invalid {name} {text:?}: give seconds from 0 to 1000000000"
        ));
    }
    Ok(Some(Duration::from_secs_f64(value)))
}

fn number(args: &mut pico_args::Arguments, name: &'static str) -> Result<Option<u64>, String> {
    let Some(text) = string_option(args, name)? else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|_| format!("invalid {name} {text:?}: give a whole number"))
}

/// Reads the token from `--token-file` or `MASTODON_TOKEN`. A token file that other users can
/// read adds a warning.
fn read_token(path: Option<&std::path::Path>, warnings: &mut Vec<String>) -> Result<Token, String> {
    let token = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read --token-file {}: {error}", path.display()))?;
            if let Ok(metadata) = std::fs::metadata(path)
                && metadata.permissions().mode() & 0o077 != 0
            {
                warnings.push(format!(
                    "token file {} is readable by other users; run: chmod 600 {}",
                    path.display(),
                    path.display()
                ));
            }
            Token::new(&text)
        }
        None => match std::env::var("MASTODON_TOKEN") {
            Ok(token) if !token.trim().is_empty() => Token::new(&token),
            _ => {
                return Err(
                    "missing access token: set MASTODON_TOKEN or pass --token-file PATH"
                        .to_string(),
                );
            }
        },
    };
    if token.is_invalid() {
        let source = match path {
            Some(path) => format!("the token in {}", path.display()),
            None => "MASTODON_TOKEN".to_string(),
        };
        return Err(format!(
            "{source} is empty or contains characters other than printable ASCII; an access \
             token is a single word"
        ));
    }
    Ok(token)
}
