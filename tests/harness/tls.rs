//! A TLS front for the fake server: terminates TLS on its own loopback port with a throwaway
//! certificate made by the `openssl` command, and pipes bytes to the fake server's port.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A running TLS front. Dropping it stops accepting new connections.
pub struct TlsFront {
    pub port: u16,
    pub ca_file: PathBuf,
    stop: Arc<AtomicBool>,
}

impl TlsFront {
    /// Starts a front for the plain server on `backend_port`, with a certificate for
    /// `localhost` and 127.0.0.1 written to `dir`.
    pub fn start(backend_port: u16, dir: &Path) -> TlsFront {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("the openssl command runs");
        assert!(status.status.success(), "openssl failed: {status:?}");
        let identity = native_tls::Identity::from_pkcs8(
            &std::fs::read(&cert).unwrap(),
            &std::fs::read(&key).unwrap(),
        )
        .unwrap();
        let acceptor = Arc::new(native_tls::TlsAcceptor::new(identity).unwrap());

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        std::thread::spawn(move || {
            while !thread_stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let acceptor = acceptor.clone();
                        std::thread::spawn(move || pipe(acceptor, client, backend_port));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TlsFront {
            port,
            ca_file: cert,
            stop,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Carries bytes both ways between a TLS client and the plain backend until either side
/// closes. One thread serves both directions with short read timeouts, because a TLS stream
/// cannot be split between threads.
fn pipe(acceptor: Arc<native_tls::TlsAcceptor>, client: TcpStream, backend_port: u16) {
    client.set_nonblocking(false).unwrap();
    let Ok(mut tls) = acceptor.accept(client) else {
        return;
    };
    let Ok(mut backend) = TcpStream::connect(("127.0.0.1", backend_port)) else {
        return;
    };
    let tick = Some(Duration::from_millis(2));
    tls.get_ref().set_read_timeout(tick).unwrap();
    backend.set_read_timeout(tick).unwrap();
    let mut buffer = [0u8; 16384];
    loop {
        match tls.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if backend.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(error) if is_timeout(&error) => {}
            Err(_) => break,
        }
        match backend.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if tls
                    .write_all(&buffer[..n])
                    .and_then(|()| tls.flush())
                    .is_err()
                {
                    break;
                }
            }
            Err(error) if is_timeout(&error) => {}
            Err(_) => break,
        }
    }
    let _ = tls.shutdown();
    let _ = backend.shutdown(Shutdown::Both);
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
