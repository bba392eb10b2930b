//! Runs the mastotail binary under test: collects its stdout lines and stderr, and kills it
//! when the test ends, so that no test can hang or leave a process behind.
#![allow(dead_code)]

pub mod tls;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mastotail");
pub const TOKEN: &str = "test-token";

/// Options that scale every timeout down so that a test takes milliseconds.
pub const FAST: &[&str] = &[
    "--ping-interval",
    "0.2",
    "--silence-timeout",
    "0.6",
    "--connect-timeout",
    "1",
    "--handshake-timeout",
    "0.5",
    "--request-timeout",
    "1",
    "--backoff-initial",
    "0.02",
    "--backoff-max",
    "0.1",
    "--backoff-seed",
    "7",
];

/// A running mastotail process.
pub struct Mastotail {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    pub seen: Vec<String>,
}

impl Mastotail {
    /// Starts mastotail with `args` and the test token in MASTODON_TOKEN.
    pub fn start(args: &[&str]) -> Mastotail {
        Self::start_with(args, &[("MASTODON_TOKEN", TOKEN)])
    }

    /// Starts mastotail with `args` and exactly the given extra environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Mastotail {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_remove("MASTODON_TOKEN")
            .env_remove("MASTODON_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("mastotail starts");
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Mastotail {
            child,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits for the next stdout line, panicking with the stderr so far after `timeout`.
    pub fn line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "no output line within {timeout:?}; lines so far: {:#?}\nstderr:\n{}",
                self.seen,
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "stdout closed; lines so far: {:#?}\nstderr:\n{}",
                self.seen,
                self.stderr()
            ),
        }
    }

    /// Waits for `count` lines, parsed as JSON.
    pub fn json_lines(&mut self, count: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        (0..count)
            .map(|_| {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = self.line(left.max(Duration::from_millis(1)));
                serde_json::from_str(&line)
                    .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
            })
            .collect()
    }

    /// Returns true when no further line arrives within `wait`.
    pub fn no_line_within(&mut self, wait: Duration) -> bool {
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                self.seen.push(line);
                false
            }
            Err(_) => true,
        }
    }

    /// Returns everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `text`.
    pub fn wait_stderr(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!(
            "stderr lacks {text:?} after {timeout:?}:\n{}",
            self.stderr()
        );
    }

    /// Waits for the process to exit and returns its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(20));
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!(
            "mastotail did not exit within {timeout:?}; stderr:\n{}",
            self.stderr()
        );
    }

    /// Drains stdout lines that are already there.
    pub fn remaining_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
            self.seen.push(line.clone());
            lines.push(line);
        }
        lines
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Returns the number of threads of the process, from /proc.
    pub fn thread_count(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .map(|value| value.trim().parse().unwrap())
            .unwrap()
    }
}

impl Drop for Mastotail {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Builds a frame the way Mastodon does: the payload JSON-encoded inside a string.
pub fn frame(stream: &[&str], event: &str, payload: &serde_json::Value) -> String {
    let payload = match payload {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    serde_json::json!({"stream": stream, "event": event, "payload": payload}).to_string()
}

/// Builds a status with the given id.
pub fn status(id: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "created_at": "2026-12-04T20:00:00.000Z",
        "content": format!("<p>status {id}</p>"),
        "account": {"id": "1", "acct": "bob"},
        "url": format!("https://social.example/@bob/{id}"),
        "edited_at": null,
    })
}

/// Builds a mention notification with the given id.
pub fn notification(id: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "type": "mention",
        "created_at": "2026-12-04T20:00:00.000Z",
        "account": {"id": "1", "acct": "bob"},
        "status": status(&format!("9{id}")),
    })
}
