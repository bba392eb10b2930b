//! A deadline for test bodies, so that a hang fails the test instead of stalling the run.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

/// Runs `body` on its own thread and panics if it has not finished within `limit`.
///
/// A panic in `body` is passed on unchanged. After a timeout the thread is left running and
/// ends with the test process.
pub fn with_deadline<F>(limit: Duration, body: F)
where
    F: FnOnce() + Send + 'static,
{
    let (done_sender, done_receiver) = mpsc::channel();
    let handle = thread::spawn(move || {
        body();
        let _ = done_sender.send(());
    });
    match done_receiver.recv_timeout(limit) {
        Ok(()) => handle.join().expect("test body finished"),
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(()) => {}
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(RecvTimeoutError::Timeout) => panic!("test did not finish within {limit:?}"),
    }
}
