//! local-kms (tests/providers/install.sh) on a free loopback port with its
//! own data directory, and a proxy in front of it that can answer
//! `ThrottlingException` (HTTP 400, `__type`) for some calls, as KMS does
//! when a request rate quota is exceeded.

#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The region local-kms serves (and the tests' keys live in).
pub const REGION: &str = "eu-west-2";
/// The account local-kms puts in its ARNs.
pub const ACCOUNT: &str = "111122223333";
/// The access key the tests give (local-kms accepts any).
pub const ACCESS_KEY_ID: &str = "AKIDLOCALKMSTEST";
/// The secret key the tests give; no log, status, metric, file or error may
/// ever show it.
pub const SECRET_ACCESS_KEY: &str = "localKmsSecretValue/NeverShown+0123456789";

/// The credentials, environment-style (a credentialsFile's content).
pub fn credentials_env() -> String {
    format!("AWS_ACCESS_KEY_ID={ACCESS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={SECRET_ACCESS_KEY}\n")
}

fn binary() -> PathBuf {
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    let dir = std::fs::read_dir(cache.join("jwks-operator"))
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("local-kms-"))
                })
                .max()
        });
    let p = dir.map(|d| d.join("bin/local-kms"));
    match p {
        Some(p) if p.exists() => p,
        _ => panic!("local-kms is missing: run `bash tests/providers/install.sh`"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running local-kms.
pub struct LocalKms {
    child: Option<Child>,
    _data: tempfile::TempDir,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl LocalKms {
    /// Starts local-kms and waits until it listens.
    pub fn start() -> LocalKms {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(binary())
            .env("PORT", port.to_string())
            .env("KMS_REGION", REGION)
            .env("KMS_ACCOUNT_ID", ACCOUNT)
            .env("KMS_DATA_PATH", data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("local-kms starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "local-kms did not listen within 30s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        LocalKms {
            child: Some(child),
            _data: data,
            addr,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LocalKms {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A proxy in front of a KMS that answers some calls itself.
pub struct Throttler {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How many more calls of [`Throttler::target`] get `ThrottlingException`.
    pub throttle: Arc<AtomicU32>,
    /// How many calls were answered `ThrottlingException` so far.
    pub throttled: Arc<AtomicU32>,
    /// While set, `CreateKey` is refused with `AccessDeniedException`.
    pub refuse_create: Arc<AtomicBool>,
    /// How many calls reached the proxy, by `X-Amz-Target` suffix.
    pub calls: Arc<std::sync::Mutex<Vec<String>>>,
}

/// One HTTP/1.1 message read off a stream: its head and body, as bytes.
fn read_message(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length") {
        body.resize(len.parse().ok()?, 0);
        reader.read_exact(&mut body).ok()?;
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
            if n == 0 {
                break;
            }
        }
        // Re-framed below with a Content-Length.
        head = head
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("transfer-encoding"))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>();
        head.truncate(head.len() - 2);
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    }
    Some((head, body))
}

fn answer(stream: &mut TcpStream, kind: &str, message: &str) {
    let body = format!(r#"{{"__type":"{kind}","message":"{message}"}}"#);
    let _ = write!(
        stream,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: proxy\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

impl Throttler {
    /// The target whose calls are throttled.
    pub const TARGET: &str = "TrentService.Sign";

    /// Starts the proxy in front of `upstream`.
    pub fn start(upstream: SocketAddr) -> Throttler {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = Throttler {
            addr: listener.local_addr().unwrap(),
            throttle: Arc::default(),
            throttled: Arc::default(),
            refuse_create: Arc::default(),
            calls: Arc::default(),
        };
        let (throttle, throttled, refuse, calls) = (
            t.throttle.clone(),
            t.throttled.clone(),
            t.refuse_create.clone(),
            t.calls.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let (throttle, throttled, refuse, calls) = (
                    throttle.clone(),
                    throttled.clone(),
                    refuse.clone(),
                    calls.clone(),
                );
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    let mut server: Option<BufReader<TcpStream>> = None;
                    while let Some((head, body)) = read_message(&mut reader) {
                        let target = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.trim()
                                    .eq_ignore_ascii_case("x-amz-target")
                                    .then(|| v.trim().to_owned())
                            })
                            .unwrap_or_default();
                        calls.lock().unwrap().push(target.clone());
                        if target == Self::TARGET
                            && throttle
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok()
                        {
                            throttled.fetch_add(1, Ordering::SeqCst);
                            answer(&mut client, "ThrottlingException", "Rate exceeded");
                            continue;
                        }
                        if target == "TrentService.CreateKey" && refuse.load(Ordering::SeqCst) {
                            answer(
                                &mut client,
                                "AccessDeniedException",
                                "not allowed to create keys",
                            );
                            continue;
                        }
                        if server.is_none() {
                            let Ok(s) = TcpStream::connect(upstream) else {
                                return;
                            };
                            server = Some(BufReader::new(s));
                        }
                        let up = server.as_mut().unwrap();
                        if up.get_mut().write_all(head.as_bytes()).is_err()
                            || up.get_mut().write_all(&body).is_err()
                        {
                            return;
                        }
                        let Some((rhead, rbody)) = read_message(up) else {
                            return;
                        };
                        if client.write_all(rhead.as_bytes()).is_err()
                            || client.write_all(&rbody).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        t
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}
