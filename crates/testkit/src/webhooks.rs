//! A webhook receiver: a real HTTP server (Python's `http.server`) on a loopback port that keeps
//! every POST it gets, path and body, for a test to read. Requests to `/flaky` are answered 500
//! the first `failures` times, so that a sender's retries can be seen.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

const SERVER: &str = r#"
import http.server, json, sys, threading
failures = int(sys.argv[1])
# Requests are served on threads of their own: one at a time decides and writes its line.
lock = threading.Lock()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global failures
        body = self.rfile.read(int(self.headers.get('content-length', 0)))
        with lock:
            failing = self.path == '/flaky' and failures > 0
            if failing:
                failures -= 1
            status = 500 if failing else 200
            line = json.dumps({'path': self.path, 'status': status, 'content_type': self.headers.get('content-type'),
                               'body': body.decode('utf-8', 'replace')})
            sys.stdout.write(line + '\n')
            sys.stdout.flush()
        self.send_response(status)
        self.send_header('content-length', '2')
        self.end_headers()
        self.wfile.write(b'ok')
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
print('ready', server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A running receiver; stopped when dropped.
pub struct WebhookReceiver {
    port: u16,
    child: Child,
    received: Arc<Mutex<Vec<String>>>,
}

impl WebhookReceiver {
    /// Starts a receiver that fails the first `failures` POSTs to `/flaky` with 500.
    ///
    /// # Panics
    ///
    /// Panics if python3 cannot start it.
    pub fn start(failures: u32) -> WebhookReceiver {
        let mut child = Command::new("python3")
            .args(["-c", SERVER, &failures.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("WebhookReceiver: cannot start python3: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let received = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let kept = received.clone();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match line.strip_prefix("ready ") {
                    Some(port) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(port.trim().parse::<u16>().ok());
                        }
                    }
                    None => kept.lock().unwrap_or_else(|p| p.into_inner()).push(line),
                }
            }
        });
        let port = match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                panic!("WebhookReceiver: python3 did not say which port it listens on ({other:?})");
            }
        };
        WebhookReceiver { port, child, received }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What it got so far, in order: one JSON object per POST, with `path`, `status` (what it
    /// answered), `content_type` and `body` (as text).
    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
