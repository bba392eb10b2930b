//! Command-line errors: each is one line naming the value, exit status 2, and no network
//! access. The tests point the server at a listener that fails the test if anyone connects.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mastotail");

/// A loopback listener that records whether anything connected to it.
struct Tripwire {
    listener: TcpListener,
}

impl Tripwire {
    fn new() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Tripwire { listener }
    }

    fn url(&self) -> String {
        format!("http://{}", self.listener.local_addr().unwrap())
    }

    fn was_contacted(&self) -> bool {
        std::thread::sleep(Duration::from_millis(20));
        self.listener.accept().is_ok()
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("MASTODON_TOKEN")
        .env_remove("MASTODON_SERVER");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn assert_usage_error(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "stdout: {:?}", output.stdout);
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.starts_with("mastotail: error: "), "{stderr}");
    assert!(stderr.contains(expected), "{stderr:?} lacks {expected:?}");
}

#[test]
fn unknown_flag_is_usage_error() {
    let tripwire = Tripwire::new();
    let output = run(
        &["--server", &tripwire.url(), "--colour", "user"],
        &[("MASTODON_TOKEN", "t")],
    );
    assert_usage_error(&output, "--colour");
    assert!(!tripwire.was_contacted());
}

#[test]
fn unknown_stream_is_usage_error() {
    let tripwire = Tripwire::new();
    let output = run(
        &["--server", &tripwire.url(), "user", "hashtag"],
        &[("MASTODON_TOKEN", "t")],
    );
    assert_usage_error(&output, "\"hashtag\"");
    assert!(!tripwire.was_contacted());
}

#[test]
fn missing_server_is_usage_error() {
    let output = run(&["user"], &[("MASTODON_TOKEN", "t")]);
    assert_usage_error(&output, "MASTODON_SERVER");
}

#[test]
fn missing_token_is_usage_error() {
    let tripwire = Tripwire::new();
    let output = run(&["--server", &tripwire.url(), "user"], &[]);
    assert_usage_error(&output, "MASTODON_TOKEN");
    assert!(!tripwire.was_contacted());
}

#[test]
fn missing_stream_is_usage_error() {
    let tripwire = Tripwire::new();
    let output = run(&["--server", &tripwire.url()], &[("MASTODON_TOKEN", "t")]);
    assert_usage_error(&output, "no stream");
    assert!(!tripwire.was_contacted());
}

#[test]
fn bad_number_is_usage_error() {
    let tripwire = Tripwire::new();
    let output = run(
        &[
            "--server",
            &tripwire.url(),
            "--ping-interval",
            "soon",
            "user",
        ],
        &[("MASTODON_TOKEN", "t")],
    );
    assert_usage_error(&output, "\"soon\"");
    assert!(!tripwire.was_contacted());
}

#[test]
fn plain_http_to_remote_host_rejected() {
    let output = run(
        &["--server", "http://mastodon.example", "user"],
        &[("MASTODON_TOKEN", "t")],
    );
    assert_usage_error(&output, "--allow-insecure");
}

#[test]
fn token_in_server_env_not_echoed() {
    let output = run(
        &["--server", "https://x?token=secret-abc", "user"],
        &[("MASTODON_TOKEN", "secret-token-value")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(!stderr.contains("secret-token-value"), "{stderr}");
}

#[test]
fn missing_token_file_is_usage_error() {
    let tripwire = Tripwire::new();
    let output = run(
        &[
            "--server",
            &tripwire.url(),
            "--token-file",
            "/nonexistent/token",
            "user",
        ],
        &[],
    );
    assert_usage_error(&output, "/nonexistent/token");
}

#[test]
fn help_and_version() {
    let help = run(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for word in [
        "--server",
        "--token-file",
        "hashtag:TAG",
        "EXIT STATUS",
        "--state",
    ] {
        assert!(text.contains(word), "help lacks {word}");
    }
    let version = run(&["-V"], &[]);
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("mastotail "));
}

#[test]
fn backoff_initial_above_max_rejected() {
    let tripwire = Tripwire::new();
    let output = run(
        &[
            "--server",
            &tripwire.url(),
            "--backoff-initial",
            "10",
            "--backoff-max",
            "1",
            "user",
        ],
        &[("MASTODON_TOKEN", "t")],
    );
    assert_usage_error(&output, "--backoff-max");
    assert!(!tripwire.was_contacted());
}

#[test]
fn non_ascii_token_names_its_source() {
    let tripwire = Tripwire::new();
    let output = run(
        &["--server", &tripwire.url(), "user"],
        &[("MASTODON_TOKEN", "tök")],
    );
    assert_usage_error(&output, "MASTODON_TOKEN");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("tök"));
    assert!(!tripwire.was_contacted());
}

#[test]
fn equals_sign_form_accepted() {
    let output = run(
        &["--format=yaml", "--server=127.0.0.1:9", "user"],
        &[("MASTODON_TOKEN", "t")],
    );
    assert_usage_error(&output, "\"yaml\"");
}

#[test]
fn repeated_option_named_in_error() {
    let tripwire = Tripwire::new();
    let output = run(
        &[
            "--server",
            &tripwire.url(),
            "--count",
            "1",
            "--count",
            "2",
            "user",
        ],
        &[("MASTODON_TOKEN", "t")],
    );
    assert_usage_error(&output, "--count is given more than once");
    assert!(!tripwire.was_contacted());
}

#[test]
fn missing_hook_program_rejected_before_network() {
    let tripwire = Tripwire::new();
    let output = run(
        &[
            "--server",
            &tripwire.url(),
            "user",
            "--exec",
            "/nonexistent/hook",
        ],
        &[("MASTODON_TOKEN", "t")],
    );
    assert_usage_error(&output, "/nonexistent/hook");
    assert!(!tripwire.was_contacted());
    let output = run(
        &[
            "--server",
            &tripwire.url(),
            "--exec-timeout",
            "0",
            "user",
            "--exec",
            "true",
        ],
        &[("MASTODON_TOKEN", "t")],
    );
    assert_usage_error(&output, "--exec-timeout 0");
    assert!(!tripwire.was_contacted());
}
