//! The command's event sinks: stdout in one of three formats, or a hook program run once
//! per event. Both apply the `--event` and `--notification-type` filters.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use log::{error, warn};
use mastotail::hook::{HookCommand, HookJob, HookRunner, HookStatus};
use mastotail::{Error, Event, Poll, Tail};

/// Output format of stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line with the payload decoded once.
    Json,
    /// The server's frames exactly as received; backfilled events as JSON lines.
    Raw,
    /// One readable line per event, with control characters removed.
    Text,
}

/// The events to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub events: Vec<String>,
    pub notification_types: Vec<String>,
}

/// Settings of `--exec`.
#[derive(Debug, Clone)]
pub struct HookSettings {
    pub command: HookCommand,
    pub jobs: usize,
    pub timeout: Duration,
    /// Variables passed on to hooks by `--exec-env`, on top of the few every hook gets.
    pub env: Vec<(String, String)>,
}

/// Most events taken from the stream and waiting for a hook. Past it mastotail stops taking
/// events and only serves the connection; the library then bounds its own queue and fetches
/// dropped events again from the cursor.
const MAX_WAITING: usize = 64;

/// How often a quiet stream checks whether the reader of a stdout pipe went away.
const READER_CHECK: Duration = Duration::from_secs(2);

/// How often running hooks are checked for completion. Exits are noticed only at these
/// checks, because the loop has no thread or signal handler to learn of them sooner.
const HOOK_CHECK: Duration = Duration::from_millis(5);

impl Filter {
    pub fn keeps(&self, event: &Event) -> bool {
        if !self.events.is_empty() && !self.events.iter().any(|name| name == event.name()) {
            return false;
        }
        if self.notification_types.is_empty() || event.name() != "notification" {
            return true;
        }
        event
            .notification_type()
            .is_some_and(|kind| self.notification_types.iter().any(|wanted| wanted == kind))
    }
}

/// Writes events to stdout until the run ends, `count` events were written or stdout closed.
pub fn print(
    tail: &mut Tail,
    format: Format,
    filter: &Filter,
    count: Option<u64>,
) -> Result<(), Error> {
    // StdoutLock flushes at each newline; a larger buffer flushed when no event is pending
    // writes a burst of events with one system call and a single event at once.
    let mut out = io::BufWriter::with_capacity(64 << 10, io::stdout().lock());
    let mut printed = 0u64;
    let watch_reader = pipe::stdout_is_pipe();
    loop {
        let event = if watch_reader {
            // A quiet stream writes nothing that could fail, so the pipe is checked between
            // events: `mastotail | head -n 3` ends soon after `head` does.
            match tail.poll(READER_CHECK)? {
                Poll::Event(event) => event,
                Poll::Pending if pipe::stdout_reader_gone() => return Ok(()),
                Poll::Pending => continue,
                Poll::Finished => break,
            }
        } else {
            match tail.next() {
                Some(event) => event?,
                None => break,
            }
        };
        if !filter.keeps(&event) {
            continue;
        }
        let written = write_event(&mut out, &event, format).and_then(|()| {
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
        if count.is_some_and(|count| printed >= count) {
            return match out.flush() {
                Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
                    Err(Error::Output(error))
                }
                _ => tail.commit(),
            };
        }
    }
    out.flush().or_else(ignore_broken_pipe)
}

fn ignore_broken_pipe(error: io::Error) -> Result<(), Error> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(Error::Output(error))
    }
}

fn write_event(out: &mut impl Write, event: &Event, format: Format) -> io::Result<()> {
    match (format, event.frame()) {
        (Format::Raw, Some(frame)) => {
            out.write_all(frame.as_bytes())?;
            out.write_all(b"\n")
        }
        (Format::Json | Format::Raw, _) => event.write_json_line(out),
        (Format::Text, _) => {
            let line = mastotail::text::render_event_line(
                event.name(),
                &event.payload_value(),
                event.is_backfill(),
            );
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")
        }
    }
}

/// One event on its way through a hook.
struct Pending {
    seq: u64,
    event: Event,
    finished: bool,
    /// False for an event the filters dropped: it runs no hook but is delivered in order.
    runs_hook: bool,
}

/// Runs the hook once per event, in event order, while the connection is served. An event
/// counts as delivered once its hook finished (whatever its exit status) and every earlier
/// event's hook finished too; only then does the cursor move past it.
pub fn run_hooks(
    tail: &mut Tail,
    settings: &HookSettings,
    filter: &Filter,
    count: Option<u64>,
) -> Result<(), Error> {
    tail.set_auto_commit(false);
    let mut runner = HookRunner::new(
        settings.command.clone(),
        settings.jobs,
        settings.timeout,
        std::env::temp_dir(),
    );
    let program = settings.command.program.to_string_lossy().into_owned();
    // Events in stream order, each with whether it passed the filters.
    let mut waiting: VecDeque<(Event, bool)> = VecDeque::new();
    let mut started: VecDeque<Pending> = VecDeque::new();
    let mut next_seq = 0u64;
    let mut delivered = 0u64;
    let mut stream_ended = false;

    loop {
        for outcome in runner.poll(Instant::now()) {
            if let Some(pending) = started.iter_mut().find(|p| p.seq == outcome.seq) {
                report_outcome(&program, &pending.event, &outcome.status);
                pending.finished = true;
            }
        }
        while started.front().is_some_and(|pending| pending.finished) {
            let pending = started.pop_front().expect("front exists");
            tail.mark_delivered(&pending.event)?;
            if pending.runs_hook {
                delivered += 1;
            }
            if count.is_some_and(|count| delivered >= count) {
                runner.shutdown(settings.timeout);
                return Ok(());
            }
        }

        while let Some((_, runs_hook)) = waiting.front() {
            if !runs_hook {
                let (event, _) = waiting.pop_front().expect("front exists");
                started.push_back(Pending {
                    seq: next_seq,
                    event,
                    finished: true,
                    runs_hook: false,
                });
                next_seq += 1;
                continue;
            }
            if !runner.has_capacity() {
                break;
            }
            let (event, _) = waiting.pop_front().expect("front exists");
            let job = HookJob {
                seq: next_seq,
                line: event.to_json_line().into_bytes(),
                env: [settings.env.clone(), hook_environment(&event)].concat(),
            };
            if let Err(error) = runner.start(job) {
                runner.shutdown(settings.timeout);
                return Err(Error::Config(format!(
                    "cannot run the --exec program: {error}"
                )));
            }
            started.push_back(Pending {
                seq: next_seq,
                event,
                finished: false,
                runs_hook: true,
            });
            next_seq += 1;
        }

        if stream_ended && waiting.is_empty() && started.is_empty() {
            return Ok(());
        }
        if started.front().is_some_and(|pending| pending.finished) {
            continue;
        }
        let wait = if runner.running() > 0 {
            HOOK_CHECK
        } else {
            Duration::from_secs(1)
        };
        if stream_ended {
            std::thread::sleep(wait);
        } else if waiting.len() >= MAX_WAITING {
            tail.serve(wait)?;
        } else {
            match tail.poll(wait)? {
                Poll::Event(event) => {
                    let runs_hook = filter.keeps(&event);
                    waiting.push_back((event, runs_hook));
                }
                Poll::Pending => {}
                Poll::Finished => stream_ended = true,
            }
        }
    }
}

fn report_outcome(program: &str, event: &Event, status: &HookStatus) {
    let name = event.name();
    let id = event.id().unwrap_or("without id");
    match status {
        HookStatus::Success => {}
        HookStatus::Failed(exit) => warn!("hook {program} for {name} {id} failed: {exit}"),
        HookStatus::TimedOut => {
            warn!("hook {program} for {name} {id} timed out and was killed (see --exec-timeout)")
        }
        HookStatus::SpawnFailed(message) => error!("hook {program} for {name} {id}: {message}"),
    }
}

/// Environment variables that describe the event to the hook. The full event is on stdin.
fn hook_environment(event: &Event) -> Vec<(String, String)> {
    let clean = |value: &str| value.replace('\0', "");
    let mut env = vec![
        ("MASTOTAIL_EVENT".to_string(), clean(event.name())),
        (
            "MASTOTAIL_STREAM".to_string(),
            clean(&event.stream().join(":")),
        ),
        (
            "MASTOTAIL_BACKFILL".to_string(),
            if event.is_backfill() { "1" } else { "0" }.to_string(),
        ),
    ];
    if let Some(id) = event.id() {
        env.push(("MASTOTAIL_ID".to_string(), clean(id)));
    }
    if let Some(kind) = event.notification_type() {
        env.push(("MASTOTAIL_NOTIFICATION_TYPE".to_string(), clean(kind)));
    }
    env
}

/// The state of stdout when it is a pipe.
mod pipe {
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::fs::FileTypeExt;

    #[repr(C)]
    struct PollFd {
        fd: i32,
        events: i16,
        revents: i16,
    }

    /// `POLLERR` and `POLLHUP` on Linux and the BSDs.
    const POLLERR: i16 = 0x008;
    const POLLHUP: i16 = 0x010;

    unsafe extern "C" {
        fn poll(fds: *mut PollFd, nfds: std::ffi::c_ulong, timeout: i32) -> i32;
    }

    /// Returns true when stdout is a pipe.
    pub fn stdout_is_pipe() -> bool {
        let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
            return false;
        };
        std::fs::File::from(fd)
            .metadata()
            .is_ok_and(|meta| meta.file_type().is_fifo())
    }

    /// Returns true when the reading end of the stdout pipe is closed, which `poll` reports
    /// as an error on the writing end without writing anything.
    pub fn stdout_reader_gone() -> bool {
        let mut entry = PollFd {
            fd: std::io::stdout().as_raw_fd(),
            events: 0,
            revents: 0,
        };
        // SAFETY: `entry` is one valid, initialized pollfd that outlives the call, and a
        // zero timeout makes the call return at once.
        let ready = unsafe { poll(&mut entry, 1, 0) };
        ready > 0 && entry.revents & (POLLERR | POLLHUP) != 0
    }
}
