//! Hook programs: one child process per event, started and polled without
//! blocking the caller's single-threaded read loop.
//!
//! Each child gets the event's JSON line on stdin through an unlinked spool
//! file, so `start` never waits for the child to read. The child's stdout goes
//! to mastotail's stderr, which keeps hook output out of the event stream on
//! stdout. The child environment is rebuilt from an allowlist, so the Mastodon
//! access token and every other variable outside the allowlist stay in
//! mastotail. Event data reaches the child only through stdin and the job's
//! environment variables, never through its command line.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Parent environment variables copied into every hook's environment. All
/// other variables, including the access token, are left out.
pub const INHERITED_ENV: [&str; 7] = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// Delay between checks for a killed child that has not been reaped yet.
const REAP_RETRY: Duration = Duration::from_millis(20);

/// Interval between checks for exited children during [`HookRunner::shutdown`].
const SHUTDOWN_POLL: Duration = Duration::from_millis(10);

/// Number of spool file names tried before `start` gives up.
const SPOOL_NAME_ATTEMPTS: u32 = 16;

/// Program and fixed arguments of the hook, run directly without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// One event handed to the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookJob {
    /// Caller-assigned sequence number, returned in the job's [`HookOutcome`].
    pub seq: u64,
    /// The event's JSON line including its trailing newline, sent on stdin.
    pub line: Vec<u8>,
    /// Variables added to the child environment, such as `MASTOTAIL_EVENT`.
    pub env: Vec<(String, String)>,
}

/// Result of one finished hook job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutcome {
    pub seq: u64,
    pub status: HookStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookStatus {
    /// The hook exited with status 0.
    Success,
    /// The hook exited with a non-zero status or was ended by a signal that
    /// the runner did not send.
    Failed(ExitStatus),
    /// The hook ran past its timeout and the runner killed it.
    TimedOut,
    /// The hook could not be started. [`HookRunner::start`] returns this
    /// error directly and never queues it, so the variant is for callers that
    /// record start errors next to the other outcomes.
    SpawnFailed(String),
}

#[derive(Debug)]
struct RunningHook {
    seq: u64,
    child: Child,
    /// Kill time while the child runs, or the next reap attempt after a kill.
    /// `None` when the timeout is too large to represent.
    deadline: Option<Instant>,
    /// Set once the runner has killed the child and reported `TimedOut`.
    killed: bool,
}

/// Starts hook children, enforces their limit and timeout, and reaps them.
#[derive(Debug)]
pub struct HookRunner {
    command: HookCommand,
    max_running: usize,
    timeout: Duration,
    spool_dir: PathBuf,
    running: Vec<RunningHook>,
    /// Counter that makes spool file names unique within this process.
    spool_counter: u64,
}

impl HookRunner {
    /// Creates a runner that keeps at most `max_running` hooks alive (at least
    /// one) and kills each hook `timeout` after its start. Spool files are
    /// created in `spool_dir` and removed before the child starts.
    pub fn new(
        command: HookCommand,
        max_running: usize,
        timeout: Duration,
        spool_dir: PathBuf,
    ) -> HookRunner {
        HookRunner {
            command,
            max_running: max_running.max(1),
            timeout,
            spool_dir,
            running: Vec::new(),
            spool_counter: 0,
        }
    }

    /// Returns whether `start` can run another hook now. A killed child that
    /// has not been reaped yet still counts as running.
    pub fn has_capacity(&self) -> bool {
        self.running.len() < self.max_running
    }

    /// Returns the number of hook children not yet reaped.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Returns the earliest time at which [`poll`](Self::poll) has work to do
    /// without a child exiting: a timeout or a retry to reap a killed child.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.running.iter().filter_map(|hook| hook.deadline).min()
    }

    /// Starts the hook for `job` without waiting for it.
    ///
    /// Fails when the runner is at `max_running`, when the spool file cannot
    /// be written, or when the program cannot be started, for example because
    /// it is not found. The error message names the spool directory or the
    /// program.
    pub fn start(&mut self, job: HookJob) -> io::Result<()> {
        self.start_with_env(job, |name| std::env::var_os(name))
    }

    /// Starts the hook for `job`, reading inherited variables through
    /// `parent_env` so that tests can supply a parent environment.
    fn start_with_env(
        &mut self,
        job: HookJob,
        parent_env: impl Fn(&str) -> Option<OsString>,
    ) -> io::Result<()> {
        if !self.has_capacity() {
            return Err(io::Error::other(format!(
                "cannot start hook for event {}: the limit of {} running hooks is reached, \
                 so call poll until has_capacity() returns true",
                job.seq, self.max_running
            )));
        }

        let stdin = self.spool_input(&job.line).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "failed to write hook input file in {}: {e}",
                    self.spool_dir.display()
                ),
            )
        })?;
        let child = self.spawn(stdin, &job, parent_env).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "failed to start hook program {}: {e}",
                    Path::new(&self.command.program).display()
                ),
            )
        })?;

        log::debug!("started hook for event {} as pid {}", job.seq, child.id());
        let deadline = Instant::now().checked_add(self.timeout);
        self.running.push(RunningHook {
            seq: job.seq,
            child,
            deadline,
            killed: false,
        });
        Ok(())
    }

    /// Writes `line` to a new private file in the spool directory and returns
    /// it opened for reading. The file is unlinked before this returns, so it
    /// disappears once the child closes its stdin.
    fn spool_input(&mut self, line: &[u8]) -> io::Result<File> {
        let mut attempt = 0;
        let (path, mut writer) = loop {
            self.spool_counter += 1;
            let name = format!(
                "mastotail-hook-{}-{}.json",
                std::process::id(),
                self.spool_counter
            );
            let path = self.spool_dir.join(name);
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            match opened {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    attempt += 1;
                    if attempt >= SPOOL_NAME_ATTEMPTS {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        };

        let reader = writer.write_all(line).and_then(|()| File::open(&path));
        let removed = fs::remove_file(&path);
        let reader = reader?;
        removed?;
        Ok(reader)
    }

    fn spawn(
        &self,
        stdin: File,
        job: &HookJob,
        parent_env: impl Fn(&str) -> Option<OsString>,
    ) -> io::Result<Child> {
        let stdout = io::stderr().as_fd().try_clone_to_owned()?;

        let mut command = Command::new(&self.command.program);
        command
            .args(&self.command.args)
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::inherit())
            .env_clear();
        for name in INHERITED_ENV {
            if let Some(value) = parent_env(name) {
                command.env(name, value);
            }
        }
        for (name, value) in &job.env {
            command.env(name, value);
        }
        // The hook leads its own process group, so a timeout kill also reaches
        // the processes it started.
        // NOTE: a terminal Ctrl-C does not reach the group either, so hooks
        // keep running if mastotail ends without `shutdown` or `Drop`.
        command.process_group(0);

        command.spawn()
    }

    /// Collects finished hooks without blocking. Kills hooks whose timeout has
    /// passed at `now` and reports them as `TimedOut` right away. Reaping a
    /// killed child may take until a later call, and it stays in
    /// [`running`](Self::running) until then.
    pub fn poll(&mut self, now: Instant) -> Vec<HookOutcome> {
        let mut outcomes = Vec::new();
        let mut index = 0;
        while index < self.running.len() {
            let hook = &mut self.running[index];
            match hook.child.try_wait() {
                Ok(Some(status)) => {
                    let hook = self.running.swap_remove(index);
                    if !hook.killed {
                        outcomes.push(exit_outcome(hook.seq, status));
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => log::debug!("checking hook for event {} failed: {e}", hook.seq),
            }

            if hook.deadline.is_some_and(|deadline| deadline <= now) {
                if !hook.killed {
                    kill_group(&mut hook.child);
                    hook.killed = true;
                    log::debug!("killed hook for event {} after its timeout", hook.seq);
                    outcomes.push(HookOutcome {
                        seq: hook.seq,
                        status: HookStatus::TimedOut,
                    });
                }
                if let Ok(Some(_)) = hook.child.try_wait() {
                    self.running.swap_remove(index);
                    continue;
                }
                hook.deadline = now.checked_add(REAP_RETRY);
            }
            index += 1;
        }
        outcomes
    }

    /// Waits up to `grace` for running hooks to exit, then kills and reaps the
    /// rest. Blocks the caller for up to `grace` plus the time the kernel needs
    /// to end the killed processes. Returns the outcomes of the hooks that
    /// ended during the call, with killed hooks reported as `TimedOut`.
    pub fn shutdown(&mut self, grace: Duration) -> Vec<HookOutcome> {
        let started = Instant::now();
        let mut outcomes = Vec::new();
        loop {
            outcomes.extend(self.collect_exited());
            let elapsed = started.elapsed();
            if self.running.is_empty() || elapsed >= grace {
                break;
            }
            std::thread::sleep(SHUTDOWN_POLL.min(grace - elapsed));
        }

        for mut hook in self.running.drain(..) {
            if !hook.killed {
                kill_group(&mut hook.child);
                log::debug!("killed hook for event {} at shutdown", hook.seq);
                outcomes.push(HookOutcome {
                    seq: hook.seq,
                    status: HookStatus::TimedOut,
                });
            }
            if let Err(e) = hook.child.wait() {
                log::debug!("reaping hook for event {} failed: {e}", hook.seq);
            }
        }
        outcomes
    }

    /// Removes and reports every child that has exited, ignoring timeouts.
    fn collect_exited(&mut self) -> Vec<HookOutcome> {
        let mut outcomes = Vec::new();
        let mut index = 0;
        while index < self.running.len() {
            if let Ok(Some(status)) = self.running[index].child.try_wait() {
                let hook = self.running.swap_remove(index);
                if !hook.killed {
                    outcomes.push(exit_outcome(hook.seq, status));
                }
            } else {
                index += 1;
            }
        }
        outcomes
    }
}

impl Drop for HookRunner {
    /// Kills and reaps hooks still running, so none outlives the runner as a
    /// zombie. Call [`HookRunner::shutdown`] first to give them time to finish.
    fn drop(&mut self) {
        if !self.running.is_empty() {
            self.shutdown(Duration::ZERO);
        }
    }
}

fn exit_outcome(seq: u64, status: ExitStatus) -> HookOutcome {
    log::debug!("hook for event {seq} exited with {status}");
    let status = match status.success() {
        true => HookStatus::Success,
        false => HookStatus::Failed(status),
    };
    HookOutcome { seq, status }
}

unsafe extern "C" {
    /// POSIX `kill(2)`. `pid_t` and `int` are both `i32` on Linux and macOS.
    fn kill(pid: i32, signal: i32) -> i32;
}

/// `SIGKILL` is signal 9 on Linux, macOS and the BSDs.
const SIGKILL: i32 = 9;

/// Sends SIGKILL to the process group that `child` leads, falling back to the
/// child alone when the group cannot be signalled.
fn kill_group(child: &mut Child) {
    // The child is not reaped yet, so its pid, and with it the process group
    // id, cannot have been reused by another process.
    let sent = match i32::try_from(child.id()) {
        // SAFETY: kill only sends a signal. A negative pid addresses the
        // process group that the hook leads since `process_group(0)`.
        Ok(pid) => (unsafe { kill(-pid, SIGKILL) }) == 0,
        Err(_) => false,
    };
    if !sent {
        // An error here, for example because the child has already exited, is
        // left for the next `try_wait` to detect.
        let _ = child.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Upper bound for any wait in these tests, far above the expected time.
    const TEST_DEADLINE: Duration = Duration::from_secs(20);

    /// A directory under the system temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "mastotail-hook-test-{}-{label}-{n}",
                std::process::id()
            ));
            fs::create_dir(&path).expect("create test directory");
            TempDir(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }

        fn spool(&self) -> PathBuf {
            let spool = self.0.join("spool");
            fs::create_dir_all(&spool).expect("create spool directory");
            spool
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn sh(script: &str) -> HookCommand {
        HookCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
        }
    }

    fn job(seq: u64, line: &[u8], out: &Path) -> HookJob {
        HookJob {
            seq,
            line: line.to_vec(),
            env: vec![("OUT".to_string(), out.to_string_lossy().into_owned())],
        }
    }

    /// Polls until no hook is running and returns all outcomes.
    fn wait_all(runner: &mut HookRunner) -> Vec<HookOutcome> {
        let started = Instant::now();
        let mut outcomes = Vec::new();
        while runner.running() > 0 {
            assert!(started.elapsed() < TEST_DEADLINE, "hooks still running");
            outcomes.extend(runner.poll(Instant::now()));
            std::thread::sleep(Duration::from_millis(5));
        }
        outcomes
    }

    fn spool_is_empty(spool: &Path) -> bool {
        fs::read_dir(spool)
            .expect("read spool directory")
            .next()
            .is_none()
    }

    #[test]
    fn hook_receives_exact_line() {
        let dir = TempDir::new("line");
        let out = dir.path().join("out");
        let spool = dir.spool();
        let mut runner = HookRunner::new(sh("cat > \"$OUT\""), 2, TEST_DEADLINE, spool.clone());
        let line = b"{\"event\":\"update\",\"payload\":\"{\\\"id\\\":\\\"1\\\"}\"}\n";

        runner.start(job(7, line, &out)).expect("start hook");
        let outcomes = wait_all(&mut runner);

        assert_eq!(
            outcomes,
            vec![HookOutcome {
                seq: 7,
                status: HookStatus::Success
            }]
        );
        assert_eq!(fs::read(&out).expect("read hook output"), line);
        assert!(spool_is_empty(&spool));
    }

    #[test]
    fn spool_file_unlinked_before_child_runs() {
        let dir = TempDir::new("unlinked");
        let out = dir.path().join("out");
        let spool = dir.spool();
        let script = "ls -A \"$SPOOL\" > \"$OUT\"";
        let mut runner = HookRunner::new(sh(script), 1, TEST_DEADLINE, spool.clone());
        let mut hook_job = job(1, b"{}\n", &out);
        hook_job
            .env
            .push(("SPOOL".to_string(), spool.to_string_lossy().into_owned()));

        runner.start(hook_job).expect("start hook");
        wait_all(&mut runner);

        assert_eq!(fs::read_to_string(&out).expect("read hook output"), "");
    }

    #[test]
    fn large_line_does_not_block_start() {
        let dir = TempDir::new("large");
        let spool = dir.spool();
        let mut runner = HookRunner::new(sh("sleep 30"), 1, Duration::from_secs(60), spool.clone());
        let mut line = vec![b'x'; 1024 * 1024];
        line.push(b'\n');

        let started = Instant::now();
        runner.start(job(1, &line, dir.path())).expect("start hook");
        assert!(started.elapsed() < TEST_DEADLINE);
        assert_eq!(runner.running(), 1);
        assert!(spool_is_empty(&spool));

        let outcomes = runner.shutdown(Duration::ZERO);
        assert_eq!(outcomes[0].status, HookStatus::TimedOut);
        assert_eq!(runner.running(), 0);
    }

    #[test]
    fn slow_hook_times_out() {
        let dir = TempDir::new("timeout");
        let mut runner =
            HookRunner::new(sh("sleep 30"), 1, Duration::from_millis(100), dir.spool());
        let started = Instant::now();
        runner
            .start(job(3, b"{}\n", dir.path()))
            .expect("start hook");

        let deadline = runner.next_deadline().expect("deadline of running hook");
        assert!(deadline > started);
        assert!(runner.poll(Instant::now()).is_empty());

        let outcomes = wait_all(&mut runner);
        assert_eq!(
            outcomes,
            vec![HookOutcome {
                seq: 3,
                status: HookStatus::TimedOut
            }]
        );
        assert_eq!(runner.running(), 0);
        assert_eq!(runner.next_deadline(), None);
        assert!(started.elapsed() < TEST_DEADLINE);
    }

    #[test]
    fn timeout_kills_hook_descendants() {
        let dir = TempDir::new("group");
        let marker = dir.path().join("late");
        let script = "(sleep 1; touch \"$OUT\") & wait";
        let mut runner = HookRunner::new(sh(script), 1, Duration::from_millis(100), dir.spool());

        runner.start(job(1, b"{}\n", &marker)).expect("start hook");
        let outcomes = wait_all(&mut runner);
        assert_eq!(outcomes[0].status, HookStatus::TimedOut);

        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            !marker.exists(),
            "a process of the killed hook kept running"
        );
    }

    #[test]
    fn nonzero_exit_reported() {
        let dir = TempDir::new("exit");
        let mut runner = HookRunner::new(sh("exit 3"), 1, TEST_DEADLINE, dir.spool());

        runner
            .start(job(9, b"{}\n", dir.path()))
            .expect("start hook");
        let outcomes = wait_all(&mut runner);

        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].seq, 9);
        match &outcomes[0].status {
            HookStatus::Failed(status) => assert_eq!(status.code(), Some(3)),
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn missing_program_is_error() {
        let dir = TempDir::new("missing");
        let spool = dir.spool();
        let program = dir.path().join("no-such-hook");
        let command = HookCommand {
            program: program.clone().into_os_string(),
            args: Vec::new(),
        };
        let mut runner = HookRunner::new(command, 1, TEST_DEADLINE, spool.clone());

        let error = runner
            .start(job(1, b"{}\n", dir.path()))
            .expect_err("start of a missing program");

        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(error.to_string().contains(&program.display().to_string()));
        assert_eq!(runner.running(), 0);
        assert!(spool_is_empty(&spool));
    }

    #[test]
    fn missing_spool_dir_is_error() {
        let dir = TempDir::new("nospool");
        let spool = dir.path().join("absent");
        let mut runner = HookRunner::new(sh("true"), 1, TEST_DEADLINE, spool.clone());

        let error = runner
            .start(job(1, b"{}\n", dir.path()))
            .expect_err("start without spool directory");

        assert!(error.to_string().contains(&spool.display().to_string()));
    }

    #[test]
    fn token_not_passed_to_hook() {
        let dir = TempDir::new("token");
        let out = dir.path().join("env");
        let mut runner = HookRunner::new(sh("env > \"$OUT\""), 1, TEST_DEADLINE, dir.spool());
        let parent_env = |name: &str| match name {
            "MASTODON_TOKEN" => Some(OsString::from("secret-token-value")),
            "PATH" => Some(OsString::from("/usr/bin:/bin")),
            "LANG" => Some(OsString::from("C.UTF-8")),
            _ => None,
        };
        let mut hook_job = job(1, b"{}\n", &out);
        hook_job
            .env
            .push(("MASTOTAIL_EVENT".to_string(), "update".to_string()));

        runner
            .start_with_env(hook_job, parent_env)
            .expect("start hook");
        wait_all(&mut runner);

        let env = fs::read_to_string(&out).expect("read hook environment");
        assert!(!env.contains("MASTODON_TOKEN"));
        assert!(!env.contains("secret-token-value"));
        assert!(env.lines().any(|l| l == "PATH=/usr/bin:/bin"));
        assert!(env.lines().any(|l| l == "LANG=C.UTF-8"));
        assert!(env.lines().any(|l| l == "MASTOTAIL_EVENT=update"));
    }

    #[test]
    fn hook_env_limited_to_allowlist() {
        let dir = TempDir::new("allowlist");
        let out = dir.path().join("env");
        let mut runner = HookRunner::new(sh("env > \"$OUT\""), 1, TEST_DEADLINE, dir.spool());

        runner.start(job(1, b"{}\n", &out)).expect("start hook");
        wait_all(&mut runner);

        // The shell adds a few variables of its own, such as PWD and SHLVL.
        let shell_own = ["PWD", "OLDPWD", "SHLVL", "_"];
        let env = fs::read_to_string(&out).expect("read hook environment");
        for line in env.lines() {
            let name = line.split('=').next().unwrap_or("");
            assert!(
                INHERITED_ENV.contains(&name) || name == "OUT" || shell_own.contains(&name),
                "unexpected variable {name} in hook environment"
            );
        }
    }

    #[test]
    fn hostile_env_value_inert() {
        let dir = TempDir::new("hostile");
        let out = dir.path().join("value");
        let marker = dir.path().join("pwned");
        let hostile = format!(
            "$(touch {}) `touch {}`; touch {}",
            marker.display(),
            marker.display(),
            marker.display()
        );
        let mut runner = HookRunner::new(
            sh("printf '%s' \"$MASTOTAIL_ID\" > \"$OUT\""),
            1,
            TEST_DEADLINE,
            dir.spool(),
        );
        let mut hook_job = job(1, b"{}\n", &out);
        hook_job
            .env
            .push(("MASTOTAIL_ID".to_string(), hostile.clone()));

        runner.start(hook_job).expect("start hook");
        wait_all(&mut runner);

        assert_eq!(fs::read_to_string(&out).expect("read hook output"), hostile);
        assert!(!marker.exists());
    }

    #[test]
    fn max_running_respected() {
        let dir = TempDir::new("limit");
        let spool = dir.spool();
        let mut runner = HookRunner::new(sh("sleep 30"), 2, Duration::from_secs(60), spool.clone());

        assert!(runner.has_capacity());
        runner
            .start(job(1, b"{}\n", dir.path()))
            .expect("start first hook");
        runner
            .start(job(2, b"{}\n", dir.path()))
            .expect("start second hook");
        assert!(!runner.has_capacity());
        assert_eq!(runner.running(), 2);

        let error = runner
            .start(job(3, b"{}\n", dir.path()))
            .expect_err("start over the limit");
        assert!(error.to_string().contains("limit of 2 running hooks"));
        assert_eq!(runner.running(), 2);
        assert!(spool_is_empty(&spool));

        let outcomes = runner.shutdown(Duration::from_millis(50));
        assert_eq!(outcomes.len(), 2);
        assert!(outcomes.iter().all(|o| o.status == HookStatus::TimedOut));
        assert_eq!(runner.running(), 0);
        assert!(runner.has_capacity());
    }

    #[test]
    fn zero_max_running_allows_one() {
        let dir = TempDir::new("zero");
        let runner = HookRunner::new(sh("true"), 0, TEST_DEADLINE, dir.spool());
        assert!(runner.has_capacity());
    }

    #[test]
    fn shutdown_waits_for_quick_hooks() {
        let dir = TempDir::new("grace");
        let out = dir.path().join("out");
        let mut runner = HookRunner::new(
            sh("sleep 0.2; cat > \"$OUT\""),
            2,
            TEST_DEADLINE,
            dir.spool(),
        );

        runner.start(job(5, b"done\n", &out)).expect("start hook");
        let outcomes = runner.shutdown(TEST_DEADLINE);

        assert_eq!(
            outcomes,
            vec![HookOutcome {
                seq: 5,
                status: HookStatus::Success
            }]
        );
        assert_eq!(fs::read(&out).expect("read hook output"), b"done\n");
        assert_eq!(runner.running(), 0);
    }

    #[test]
    fn many_hooks_leave_no_spool_files() {
        let dir = TempDir::new("many");
        let spool = dir.spool();
        let mut runner = HookRunner::new(sh("cat > /dev/null"), 4, TEST_DEADLINE, spool.clone());

        let mut outcomes = Vec::new();
        for seq in 0..12 {
            let started = Instant::now();
            while !runner.has_capacity() {
                assert!(started.elapsed() < TEST_DEADLINE, "no capacity freed");
                outcomes.extend(runner.poll(Instant::now()));
                std::thread::sleep(Duration::from_millis(5));
            }
            runner
                .start(job(seq, b"{}\n", dir.path()))
                .expect("start hook");
        }
        outcomes.extend(wait_all(&mut runner));

        let mut seqs: Vec<u64> = outcomes.iter().map(|o| o.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..12).collect::<Vec<u64>>());
        assert!(outcomes.iter().all(|o| o.status == HookStatus::Success));
        assert!(spool_is_empty(&spool));
    }
}
