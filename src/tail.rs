//! The run loop: one thread, one clock. Every future action is a deadline; the time until the
//! nearest one becomes the socket's read timeout, so a read returns a frame or a tick, and
//! nothing sleeps blindly or spins.
//!
//! Events flow one way: socket frames and REST pages go through deduplication and the
//! backfill-before-live ordering into a queue; the caller takes them from the queue, and only
//! when it asks for the next one does the previous one count as delivered and move the cursor.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use log::{debug, trace};
use tungstenite::Message;

use crate::backfill::{self, PageOutcome, Walk};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::connection::{self, Socket};
use crate::dedupe::{SeenSet, compare_ids};
use crate::discovery;
use crate::endpoint::Endpoint;
use crate::error::{Disposition, Error, Phase};
use crate::event::{Event, Frame, decode_message};
use crate::notice::Notice;
use crate::rest::Rest;
use crate::state::StateFile;
use crate::stream::{Source, Stream};

/// Most live events held back while catch-ups run. Past it the catch-ups stop, so that
/// memory stays bounded when REST is slow.
const MAX_HELD: usize = 10_000;

/// Most undelivered events tracked for the cursors of their copies; far above what the
/// bounded queues hold.
const MAX_UNDELIVERED: usize = 100_000;

/// How much later than its deadline a tick may start, in exchange for fewer `setsockopt`
/// calls while frames flow.
const READ_TIMEOUT_SLACK: Duration = Duration::from_millis(10);

/// A blocking iterator over the events of a Mastodon account's streams.
///
/// It connects on the first call to `next`, reconnects with backoff after every failure,
/// fills gaps over REST and drops duplicates. It yields `Err` once, for a failure that ends
/// the run (a rejected token, a rejected subscription, a state file problem), and then `None`.
///
/// An event counts as delivered when `next` is called again; only then does its source's
/// cursor move and the state file get written.
pub struct Tail {
    config: Config,
    rest: Rest,
    /// Built on the first `wss` connection: loading the system's certificates costs tens of
    /// milliseconds and about 2 MiB, which a plain `ws` run never needs.
    tls: Option<native_tls::TlsConnector>,
    state: Option<StateFile>,
    notice: Box<dyn FnMut(&Notice)>,

    link: Link,
    streaming_url: Option<Endpoint>,
    backoff: Backoff,
    /// The previous failure was a rejected token, so a second one ends the run.
    unauthorized_once: bool,

    sources: BTreeMap<Source, SourceState>,
    /// The `stream` array of each configured stream as Mastodon sends it, by index.
    stream_arrays: Vec<String>,
    seen: SeenSet,
    /// Dedupe keys of events queued or handed out but not delivered yet, each with the
    /// cursors that copies of it from other streams move once it is delivered.
    undelivered: HashMap<String, Vec<(Source, String)>>,
    ready: VecDeque<Event>,
    /// Live events that arrived while a catch-up was running, in arrival order.
    held: VecDeque<Event>,
    /// The event handed out last, not yet known to be delivered.
    in_flight: Option<Event>,
    fatal: Option<Error>,
    finished: bool,
    /// Move the cursor past an event when the caller asks for the next one. Off when the
    /// caller reports deliveries itself with [`Tail::mark_delivered`].
    auto_commit: bool,
    /// The latest instant a tick may wait until, set by [`Tail::poll`].
    wake_by: Option<Instant>,
    /// Sources whose live events were dropped because the ready queue was full; they catch
    /// up from their cursors once it drains.
    resync: BTreeSet<Source>,
}

/// The result of [`Tail::poll`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Poll {
    /// The next event.
    Event(Event),
    /// No event arrived within the wait.
    Pending,
    /// The run ended normally (a catch-up finished).
    Finished,
}

enum Link {
    /// No connection; the next attempt is due at this instant.
    Down {
        retry_at: Instant,
    },
    Up(Box<Live>),
    /// Catch-up mode opens no WebSocket.
    Never,
}

struct Live {
    socket: Socket,
    /// The read timeout last set on the socket.
    read_timeout: Duration,
    url: String,
    connected_at: Instant,
    last_heard: Instant,
    next_ping: Instant,
    /// When the next periodic catch-up starts, with `--reconcile`.
    next_reconcile: Option<Instant>,
    healthy: bool,
}

/// The way a catch-up ended.
enum WalkEnd {
    /// Every missed item was fetched.
    Done,
    /// `--backfill-max` was reached.
    Capped(String),
    /// A request failed for good; `status` is the HTTP status, if one caused it.
    Failed { reason: String, status: Option<u16> },
}

struct SourceState {
    /// The `stream` array that backfilled events of this source carry.
    stream_json: String,
    /// The id of the newest item delivered.
    cursor: Option<String>,
    walk: Option<Walk>,
}

impl Tail {
    /// Prepares a run. Opens and locks the state file if one is configured; nothing touches
    /// the network until the first call to `next`.
    pub fn new(config: Config) -> Result<Tail, Error> {
        config.validate()?;
        let rest = Rest::new(&config)?;

        if let Some(path) = &config.ca_file {
            // Fail at start, not at the first connection, when the file is unusable.
            crate::rest::read_pem_certificates(path)?;
        }
        let state = match &config.state_file {
            Some(path) => Some(StateFile::open(path)?),
            None => None,
        };

        let mut sources = BTreeMap::new();
        for stream in &config.streams {
            for source in stream.sources() {
                let cursor = state
                    .as_ref()
                    .and_then(|state| state.cursor(&source.key()))
                    .map(str::to_string);
                sources.entry(source).or_insert_with(|| SourceState {
                    stream_json: stream_array(stream),
                    cursor,
                    walk: None,
                });
            }
        }

        let backoff = Backoff::new(
            config.backoff_initial,
            config.backoff_factor,
            config.backoff_max,
            config.backoff_seed,
        );
        let now = Instant::now();
        let link = if config.catch_up_only {
            Link::Never
        } else {
            Link::Down { retry_at: now }
        };

        let mut tail = Tail {
            seen: SeenSet::new(config.dedupe_capacity),
            stream_arrays: config.streams.iter().map(stream_array).collect(),
            streaming_url: config.streaming_url.clone(),
            config,
            rest,
            tls: None,
            state,
            notice: Box::new(|notice| debug!("{notice}")),
            link,
            backoff,
            unauthorized_once: false,
            sources,
            undelivered: HashMap::new(),
            ready: VecDeque::new(),
            held: VecDeque::new(),
            in_flight: None,
            fatal: None,
            finished: false,
            auto_commit: true,
            wake_by: None,
            resync: BTreeSet::new(),
        };
        if tail.config.catch_up_only {
            tail.start_walks(now);
        }
        Ok(tail)
    }

    /// Sets the function that receives notices about connections, retries and catch-ups.
    /// Without one, notices are logged at debug level.
    pub fn on_notice(&mut self, notice: impl FnMut(&Notice) + 'static) {
        self.notice = Box::new(notice);
    }

    /// Returns the cursors: for each source key, the id of the newest item delivered.
    pub fn cursors(&self) -> BTreeMap<String, String> {
        self.sources
            .iter()
            .filter_map(|(source, state)| Some((source.key(), state.cursor.clone()?)))
            .collect()
    }

    /// Returns how many events are ready to be handed out without waiting.
    pub fn pending(&self) -> usize {
        self.ready.len()
    }

    /// Turns off the automatic delivery of the event handed out last when the next one is
    /// asked for. The caller then reports each delivery with [`Tail::mark_delivered`], for
    /// example once a hook run for the event has finished.
    pub fn set_auto_commit(&mut self, auto_commit: bool) {
        self.auto_commit = auto_commit;
    }

    /// Reports `event` as delivered: moves its source's cursor and writes the state file.
    pub fn mark_delivered(&mut self, event: &Event) -> Result<(), Error> {
        self.deliver(event);
        match &mut self.state {
            Some(state) => state.save().map_err(Error::from),
            None => Ok(()),
        }
    }

    /// Waits at most `wait` for the next event while serving the connection. The caller
    /// can do other work between calls, such as checking child processes.
    pub fn poll(&mut self, wait: Duration) -> Result<Poll, Error> {
        self.wake_by = Some(Instant::now() + wait);
        let result = self.next_event();
        let timed_out = self
            .wake_by
            .is_some_and(|wake_by| Instant::now() >= wake_by);
        self.wake_by = None;
        match result {
            Some(Ok(event)) => Ok(Poll::Event(event)),
            Some(Err(error)) => Err(error),
            None if self.finished => Ok(Poll::Finished),
            None => {
                debug_assert!(timed_out);
                Ok(Poll::Pending)
            }
        }
    }

    /// Serves the connection for `wait` without handing out events, for a caller that cannot
    /// take more right now. Events keep queueing, within the bound described at
    /// [`Config::max_queue`]. Returns an error that ends the run.
    pub fn serve(&mut self, wait: Duration) -> Result<(), Error> {
        let wake_by = Instant::now() + wait;
        self.wake_by = Some(wake_by);
        while Instant::now() < wake_by && self.fatal.is_none() && !self.finished {
            self.step();
        }
        self.wake_by = None;
        match self.fatal.take() {
            Some(error) if self.ready.is_empty() => {
                self.finished = true;
                self.close();
                Err(error)
            }
            Some(error) => {
                self.fatal = Some(error);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Marks the event handed out last as delivered: moves its source's cursor and writes the
    /// state file. `next` does this itself; call it directly to save the cursor before
    /// stopping.
    pub fn commit(&mut self) -> Result<(), Error> {
        if let Some(event) = self.in_flight.take() {
            self.deliver(&event);
        }
        if let Some(state) = &mut self.state {
            state.save()?;
        }
        Ok(())
    }

    /// Runs the loop until an event is ready, the run ends, or a fatal error happens.
    fn next_event(&mut self) -> Option<Result<Event, Error>> {
        if self.auto_commit
            && let Err(error) = self.commit()
        {
            self.finished = true;
            return Some(Err(error));
        }
        loop {
            if let Some(event) = self.ready.pop_front() {
                if self.ready.len() <= self.config.max_queue / 2 && !self.resync.is_empty() {
                    self.start_resync(Instant::now());
                }
                if self.auto_commit {
                    self.in_flight = Some(event.clone());
                }
                return Some(Ok(event));
            }
            if let Some(error) = self.fatal.take() {
                self.finished = true;
                self.close();
                return Some(Err(error));
            }
            if self.finished {
                // A catch-up may have fixed new starting cursors since the last save.
                return self.commit().err().map(Err);
            }
            if self
                .wake_by
                .is_some_and(|wake_by| Instant::now() >= wake_by)
            {
                return None;
            }
            self.step();
        }
    }

    /// Starts catch-ups for the sources whose live events were dropped.
    fn start_resync(&mut self, now: Instant) {
        for source in std::mem::take(&mut self.resync) {
            if let Some(state) = self.sources.get_mut(&source)
                && state.walk.is_none()
            {
                state.walk = Some(Walk::new(state.cursor.clone(), now));
            }
        }
    }

    /// Caps a blocking wait at the instant set by [`Tail::poll`].
    fn capped(&self, deadline: Instant) -> Instant {
        match self.wake_by {
            Some(wake_by) => deadline.min(wake_by),
            None => deadline,
        }
    }

    /// Runs one tick: connects when due, otherwise reads the socket until the nearest
    /// deadline, then handles the deadlines that passed.
    fn step(&mut self) {
        let now = Instant::now();
        match &mut self.link {
            Link::Never => {
                if self.walks_running() {
                    self.step_walks(now);
                    self.sleep_until_walk_due();
                } else {
                    self.finished = true;
                }
            }
            Link::Down { retry_at } => {
                let retry_at = *retry_at;
                if now < retry_at {
                    std::thread::sleep(self.capped(retry_at) - now);
                    return;
                }
                self.connect();
            }
            Link::Up(_) => {
                self.read_once();
                let now = Instant::now();
                self.check_deadlines(now);
                if self.fatal.is_none() && matches!(self.link, Link::Up(_)) {
                    self.step_walks(now);
                }
            }
        }
    }

    fn connect(&mut self) {
        match self.open_socket() {
            Ok(live) => {
                (self.notice)(&Notice::Connected {
                    url: live.url.clone(),
                    streams: self.config.streams.len(),
                });
                self.link = Link::Up(Box::new(live));
                self.start_walks(Instant::now());
            }
            Err(error) => self.fail(error, false),
        }
    }

    fn open_socket(&mut self) -> Result<Live, Error> {
        let base = match &self.streaming_url {
            Some(url) => url.clone(),
            None => {
                let url = discovery::discover_streaming_url(&self.rest, &self.config.server)?;
                debug!("streaming URL is {url}");
                self.streaming_url = Some(url.clone());
                url
            }
        };
        if self.config.backfill {
            self.rest.refresh_name(&self.config.server)?;
        }
        let tls = match (&self.tls, base.is_secure()) {
            (_, false) => None,
            (Some(tls), true) => Some(tls),
            (None, true) => Some(&*self.tls.insert(connection::tls_connector(&self.config)?)),
        };
        let mut socket = match connection::open(&base, &self.config, tls) {
            Ok(socket) => socket,
            Err(
                error @ Error::HandshakeStatus {
                    status: 300..=399, ..
                },
            ) => {
                // A discovered URL may be stale: look it up again before the next attempt.
                if self.config.streaming_url.is_none() {
                    self.streaming_url = None;
                }
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        for stream in &self.config.streams {
            let message = stream.subscribe_message();
            trace!("sending {message}");
            socket
                .write(Message::text(message))
                .map_err(|error| read_error(error, Phase::Write))?;
        }
        socket
            .flush()
            .map_err(|error| read_error(error, Phase::Write))?;
        let now = Instant::now();
        Ok(Live {
            socket,
            // The handshake left its own timeout on the socket, so the first tick sets one.
            read_timeout: Duration::MAX,
            url: base.to_string(),
            connected_at: now,
            last_heard: now,
            next_ping: now + self.config.ping_interval,
            next_reconcile: self
                .config
                .reconcile_interval
                .map(|interval| now + interval),
            healthy: false,
        })
    }

    /// Reads one message or times out at the nearest deadline.
    fn read_once(&mut self) {
        let timeout = self.time_to_next_deadline(Instant::now());
        let Link::Up(live) = &mut self.link else {
            return;
        };
        // A read may end early, which only costs a tick, but must not end late. So the
        // timeout is set again only when it is too long by more than the slack, or far too
        // short, which saves a system call per frame while frames flow.
        let timeout = timeout.max(Duration::from_millis(1));
        let too_long = live.read_timeout > timeout + READ_TIMEOUT_SLACK;
        let too_short = live.read_timeout < timeout / 2;
        if too_long || too_short {
            if let Err(error) = connection::set_read_timeout(&live.socket, timeout) {
                self.fail(Error::network(Phase::Read, error), true);
                return;
            }
            live.read_timeout = timeout;
        }
        match live.socket.read() {
            Ok(message) => {
                live.last_heard = Instant::now();
                self.handle_message(message);
            }
            Err(tungstenite::Error::Io(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => self.fail(read_error(error, Phase::Read), true),
        }
    }

    fn handle_message(&mut self, message: Message) {
        match message {
            Message::Text(text) => self.handle_frame(text),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Binary(data) => debug!("ignoring a binary frame of {} bytes", data.len()),
            Message::Close(frame) => {
                let reason = match frame {
                    Some(frame) if frame.reason.is_empty() => {
                        format!("server closed the connection with code {}", frame.code)
                    }
                    Some(frame) => format!(
                        "server closed the connection with code {}: {:?}",
                        frame.code,
                        frame.reason.as_str()
                    ),
                    None => "server closed the connection without a status code".to_string(),
                };
                self.fail(Error::Protocol(reason), true);
            }
        }
    }

    fn handle_frame(&mut self, text: tungstenite::Utf8Bytes) {
        match decode_message(text, self.config.check_payloads) {
            Frame::Event(event) => self.accept_live(event),
            Frame::Error { message, status } => self.handle_error_frame(message, status),
            Frame::Empty => trace!("empty frame"),
            Frame::Ignored(what) => debug!("ignoring {what}"),
            Frame::Invalid(reason) => {
                (self.notice)(&Notice::Warning(format!("ignoring a frame: {reason}")));
            }
        }
    }

    /// Ends the run for a 4xx error frame, which rejects one of the subscriptions because
    /// mastotail sends nothing else. Other error frames are warnings.
    fn handle_error_frame(&mut self, message: String, status: Option<u16>) {
        match status {
            Some(status @ 400..=499) => {
                let error = Error::SubscriptionRejected {
                    stream: self.guess_rejected_stream(&message),
                    status,
                    message,
                };
                self.end_with(error);
            }
            _ => {
                let status = status.map_or("no status".to_string(), |s| format!("status {s}"));
                (self.notice)(&Notice::Warning(format!(
                    "the server sent an error ({status}): {message:?}"
                )));
            }
        }
    }

    /// Names the subscription an error frame most likely rejects. Mastodon's error frames
    /// carry no stream name, but their messages name tags and lists.
    fn guess_rejected_stream(&self, message: &str) -> String {
        let message = message.to_lowercase();
        let kind = |stream: &&Stream| match stream {
            Stream::Hashtag { .. } => message.contains("tag"),
            Stream::List { .. } => message.contains("list"),
            _ => false,
        };
        match self.config.streams.iter().find(kind) {
            Some(stream) => stream.to_string(),
            None => {
                let names: Vec<String> =
                    self.config.streams.iter().map(|s| s.to_string()).collect();
                names.join(", ")
            }
        }
    }

    /// Passes a live event on, or holds it while a catch-up runs, so that live events come
    /// after the missed ones and keep their order.
    fn accept_live(&mut self, event: Event) {
        if let Link::Up(live) = &mut self.link
            && !live.healthy
        {
            live.healthy = true;
            self.backoff.reset();
            self.unauthorized_once = false;
        }
        if self.walks_running() {
            self.held.push_back(event);
            if self.held.len() > MAX_HELD {
                let sources: Vec<Source> = self.sources.keys().cloned().collect();
                for source in sources {
                    let reason = "too many live events waited for it".to_string();
                    self.finish_walk(
                        &source,
                        WalkEnd::Failed {
                            reason,
                            status: None,
                        },
                    );
                }
            }
            return;
        }
        self.offer(event);
    }

    /// Queues an event unless an identical one was seen. A suppressed copy still moves its
    /// own source's cursor, so that a restart does not fetch it again.
    fn offer(&mut self, event: Event) {
        if self.ready.len() >= self.config.max_queue
            && !event.is_backfill()
            && let Some(source) = self.source_of(&event)
            && self.config.backfill
        {
            if self.resync.insert(source.clone()) {
                (self.notice)(&Notice::Warning(format!(
                    "the consumer fell {} events behind; live events of {} are \
                     dropped and will be fetched again from the cursor",
                    self.config.max_queue,
                    source.key()
                )));
            }
            return;
        }
        let Some(key) = event.dedupe_key() else {
            self.ready.push_back(event);
            return;
        };
        if self.seen.insert(&key) {
            if self.undelivered.len() >= MAX_UNDELIVERED {
                // Only reached when a caller drops events without reporting them. Losing the
                // cursor moves of a few copies then costs at most a repeat after a restart.
                self.undelivered.clear();
            }
            self.undelivered.insert(key, Vec::new());
            self.ready.push_back(event);
            return;
        }
        trace!("dropping a duplicate {} event", event.name());
        // The copy's own source moves its cursor together with the original's delivery, never
        // before it: a crash in between must not skip the original.
        let (Some(source), Some(id)) = (self.source_of(&event), event.cursor_id()) else {
            return;
        };
        match self.undelivered.get_mut(&key) {
            Some(copies) => copies.push((source, id.to_string())),
            None => self.advance_source(&source, id),
        }
    }

    /// Moves the cursors for a delivered event: its own source's, and those of copies of it
    /// that arrived on other streams while it waited.
    fn deliver(&mut self, event: &Event) {
        self.advance_cursor(event);
        let Some(key) = event.dedupe_key() else {
            return;
        };
        for (source, id) in self.undelivered.remove(&key).unwrap_or_default() {
            self.advance_source(&source, &id);
        }
    }

    fn source_of(&self, event: &Event) -> Option<Source> {
        // Mastodon sends the stream array exactly as built from the subscription, so a text
        // comparison finds the stream without parsing the array.
        let stream = match self
            .stream_arrays
            .iter()
            .position(|array| array == event.stream_json())
        {
            Some(index) => &self.config.streams[index],
            None => {
                let names = event.stream();
                self.config
                    .streams
                    .iter()
                    .find(|stream| stream.matches(&names))?
            }
        };
        stream.source_of(event.name())
    }

    fn advance_cursor(&mut self, event: &Event) {
        if let (Some(source), Some(id)) = (self.source_of(event), event.cursor_id()) {
            self.advance_source(&source, id);
        }
    }

    /// Moves `source`'s cursor to `id` when `id` is newer.
    fn advance_source(&mut self, source: &Source, id: &str) {
        let Some(state) = self.sources.get_mut(source) else {
            return;
        };
        let newer = state
            .cursor
            .as_deref()
            .is_none_or(|cursor| compare_ids(id, cursor).is_gt());
        if newer {
            state.cursor = Some(id.to_string());
            if let Some(file) = &mut self.state {
                file.set_cursor(&source.key(), id);
            }
        }
    }

    /// Handles passed deadlines: the silence limit, the next ping, health.
    fn check_deadlines(&mut self, now: Instant) {
        let Link::Up(live) = &mut self.link else {
            return;
        };
        if now >= live.last_heard + self.config.silence_timeout {
            self.fail(Error::Timeout(Phase::Silence), true);
            return;
        }
        if let (Some(due), Some(interval)) = (live.next_reconcile, self.config.reconcile_interval)
            && now >= due
        {
            live.next_reconcile = Some(now + interval);
            self.start_reconcile(now);
            return;
        }
        if !live.healthy && now >= live.connected_at + self.config.silence_timeout {
            live.healthy = true;
            self.backoff.reset();
            self.unauthorized_once = false;
        }
        if now >= live.next_ping && !self.config.ping_interval.is_zero() {
            live.next_ping = now + self.config.ping_interval;
            trace!("sending ping");
            if let Err(error) = live.socket.send(Message::Ping(Vec::new().into())) {
                self.fail(read_error(error, Phase::Write), true);
            }
        }
    }

    fn time_to_next_deadline(&self, now: Instant) -> Duration {
        let mut deadline = now + self.config.silence_timeout;
        if let Link::Up(live) = &self.link {
            deadline = deadline.min(live.last_heard + self.config.silence_timeout);
            if !self.config.ping_interval.is_zero() {
                deadline = deadline.min(live.next_ping);
            }
            if let Some(due) = live.next_reconcile {
                deadline = deadline.min(due);
            }
            if !live.healthy {
                deadline = deadline.min(live.connected_at + self.config.silence_timeout);
            }
        }
        for state in self.sources.values() {
            if let Some(walk) = &state.walk {
                deadline = deadline.min(walk.due);
            }
        }
        self.capped(deadline).saturating_duration_since(now)
    }

    /// Starts a catch-up for every source, from its cursor, or a baseline request for sources
    /// without one.
    fn start_walks(&mut self, now: Instant) {
        if !self.config.backfill {
            return;
        }
        for state in self.sources.values_mut() {
            if state.walk.is_none() {
                state.walk = Some(Walk::new(state.cursor.clone(), now));
            }
        }
    }

    /// Starts a catch-up from the cursor of every source that has one, while the stream is
    /// open, to find events the stream did not deliver.
    fn start_reconcile(&mut self, now: Instant) {
        if !self.config.backfill {
            return;
        }
        for state in self.sources.values_mut() {
            if state.walk.is_none()
                && let Some(cursor) = &state.cursor
            {
                let mut walk = Walk::new(Some(cursor.clone()), now);
                walk.reconcile = true;
                state.walk = Some(walk);
            }
        }
    }

    fn walks_running(&self) -> bool {
        self.sources.values().any(|state| state.walk.is_some())
    }

    fn sleep_until_walk_due(&self) {
        let now = Instant::now();
        let due = self
            .sources
            .values()
            .filter_map(|state| state.walk.as_ref().map(|walk| walk.due))
            .min();
        if let Some(due) = due
            && due > now
        {
            std::thread::sleep(self.capped(due).saturating_duration_since(now));
        }
    }

    /// Makes at most one REST request: the next page of the first walk that is due.
    fn step_walks(&mut self, now: Instant) {
        let due = self.sources.iter().find_map(|(source, state)| {
            let walk = state.walk.as_ref()?;
            (walk.due <= now).then(|| source.clone())
        });
        let Some(source) = due else {
            return;
        };
        let state = &self.sources[&source];
        let walk = state.walk.as_ref().expect("a due walk exists");
        let retry_delay = self
            .config
            .backoff_initial
            .mul_f64(self.config.backoff_factor.powi(walk.failures as i32))
            .min(self.config.backoff_max);
        let outcome = backfill::fetch_page(
            &self.rest,
            &self.config.server,
            &self.config.token,
            &source,
            &state.stream_json,
            walk,
            retry_delay,
        );
        self.apply_page(&source, outcome, Instant::now());
    }

    fn apply_page(&mut self, source: &Source, outcome: PageOutcome, now: Instant) {
        let backfill_max = self.config.backfill_max;
        let state = self.sources.get_mut(source).expect("walked source exists");
        let walk = state.walk.as_mut().expect("walk exists");
        walk.requests += 1;
        match outcome {
            PageOutcome::Page {
                events,
                newest,
                done,
            } => {
                walk.failures = 0;
                let baseline = walk.baseline;
                walk.baseline = false;
                if let Some(newest) = newest {
                    walk.from = newest.clone();
                    if baseline && state.cursor.is_none() {
                        state.cursor = Some(newest.clone());
                        if let Some(file) = &mut self.state {
                            file.set_cursor(&source.key(), &newest);
                        }
                    }
                }
                let room = backfill_max.saturating_sub(walk.fetched);
                let capped = events.len() > room;
                walk.fetched += events.len().min(room);
                for event in events.into_iter().take(room) {
                    self.offer(event);
                }
                if capped {
                    let message = format!(
                        "stopped at --backfill-max {backfill_max} events after the cursor; \
                         the newer missed events were skipped"
                    );
                    self.finish_walk(source, WalkEnd::Capped(message));
                } else if done {
                    self.finish_walk(source, WalkEnd::Done);
                }
            }
            PageOutcome::RetryAfter { wait, reason } => {
                walk.failures += 1;
                walk.due = now + wait;
                if walk.failures >= backfill::MAX_PAGE_FAILURES {
                    let reason = format!("{reason}; gave up after {} attempts", walk.failures);
                    self.finish_walk(
                        source,
                        WalkEnd::Failed {
                            reason,
                            status: None,
                        },
                    );
                } else {
                    (self.notice)(&Notice::Warning(format!(
                        "catch-up of {}: {reason}; retrying in {:.1} s",
                        source.key(),
                        wait.as_secs_f64()
                    )));
                }
            }
            PageOutcome::GiveUp { reason, status } => {
                self.finish_walk(source, WalkEnd::Failed { reason, status });
            }
        }
    }

    /// Ends a walk and releases the live events held back, once no other walk runs. In
    /// catch-up mode a failed walk ends the run, so that a cron job sees the failure.
    fn finish_walk(&mut self, source: &Source, end: WalkEnd) {
        let Some(walk) = self
            .sources
            .get_mut(source)
            .and_then(|state| state.walk.take())
        else {
            return;
        };
        let key = source.key();
        match end {
            WalkEnd::Done if walk.reconcile && walk.fetched > 0 => {
                (self.notice)(&Notice::Warning(format!(
                    "the stream missed {} events of {key} that REST had; the server may have \
                     stopped routing events to this connection",
                    walk.fetched
                )));
            }
            WalkEnd::Done if walk.fetched > 0 || walk.requests > 1 => {
                (self.notice)(&Notice::BackfillDone {
                    source: key,
                    events: walk.fetched,
                    requests: walk.requests,
                });
            }
            WalkEnd::Done => debug!("{key} has no missed events"),
            WalkEnd::Capped(message) => {
                (self.notice)(&Notice::Warning(format!("catch-up of {key} {message}")));
            }
            WalkEnd::Failed { reason, status } if self.config.catch_up_only => {
                let error = match status {
                    Some(status @ (401 | 403)) => Error::Unauthorized {
                        status,
                        message: Some(reason),
                    },
                    _ => Error::CatchUpIncomplete(format!("catch-up of {key} failed: {reason}")),
                };
                self.end_with(error);
                return;
            }
            WalkEnd::Failed { reason, .. } => {
                (self.notice)(&Notice::Warning(format!(
                    "catch-up of {key} incomplete: {reason}"
                )));
            }
        }
        if !self.walks_running() {
            while let Some(event) = self.held.pop_front() {
                self.offer(event);
            }
        }
    }

    /// Handles a failure by its disposition: schedule a reconnect, or end the run.
    fn fail(&mut self, error: Error, was_connected: bool) {
        if let Link::Up(live) = &mut self.link {
            let _ = live.socket.close(None);
            let _ = live.socket.flush();
        }
        // Walks restart after the reconnect. Held live events stay held and are released
        // after the new walks; copies the walks fetch again are dropped as duplicates.
        for state in self.sources.values_mut() {
            state.walk = None;
        }
        let delay = match error.disposition() {
            Disposition::Fatal => return self.end_with(error),
            Disposition::Confirm if self.unauthorized_once => return self.end_with(error),
            Disposition::Confirm => {
                self.unauthorized_once = true;
                self.backoff.next_delay()
            }
            Disposition::Retry => {
                self.unauthorized_once = false;
                self.backoff.next_delay()
            }
            Disposition::RetryAfter(wait) => {
                self.unauthorized_once = false;
                self.backoff.next_delay();
                wait
            }
        };
        (self.notice)(&Notice::Retrying {
            reason: error.to_string(),
            delay,
            attempt: self.backoff.attempts(),
            was_connected,
        });
        self.link = Link::Down {
            retry_at: Instant::now() + delay,
        };
    }

    /// Ends the run with `error`, after the live events still held back by a catch-up.
    fn end_with(&mut self, error: Error) {
        self.close();
        while let Some(event) = self.held.pop_front() {
            self.offer(event);
        }
        self.fatal = Some(error);
        self.link = Link::Down {
            retry_at: Instant::now(),
        };
    }

    /// Closes the WebSocket politely, if one is open.
    fn close(&mut self) {
        if let Link::Up(live) = &mut self.link {
            let _ = live.socket.close(None);
            let _ = live.socket.flush();
        }
    }
}

impl Iterator for Tail {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Result<Event, Error>> {
        self.next_event()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.close();
    }
}

/// Returns the `stream` array Mastodon would send for events of this subscription.
fn stream_array(stream: &Stream) -> String {
    let names: Vec<String> = match stream {
        Stream::Hashtag { tag, .. } => vec![stream.channel().to_string(), tag.clone()],
        Stream::List { id } => vec!["list".to_string(), id.clone()],
        _ => vec![stream.channel().to_string()],
    };
    serde_json::to_string(&names).expect("strings serialize")
}

/// Maps a failed read or write on an open socket to an error.
fn read_error(error: tungstenite::Error, phase: Phase) -> Error {
    match error {
        tungstenite::Error::Io(source) => Error::network(phase, source),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Error::Protocol("connection closed".to_string())
        }
        tungstenite::Error::Utf8(_) => {
            Error::Protocol("the server sent a text frame with invalid UTF-8".to_string())
        }
        tungstenite::Error::Capacity(error) => Error::Protocol(format!(
            "the server sent a message over the size limit ({error}); see --max-message-size"
        )),
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => Error::Protocol("connection closed without a close frame".to_string()),
        tungstenite::Error::Protocol(error) => {
            Error::Protocol(format!("WebSocket protocol error: {error}"))
        }
        tungstenite::Error::Tls(error) => Error::Tls(error.to_string()),
        other => Error::Protocol(other.to_string()),
    }
}
