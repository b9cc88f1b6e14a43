//! The relay floor: a proxy on witness's own stack (tokio's multi-thread runtime, one task per
//! connection relaying both directions, as witness's relay does) that only copies bytes. It
//! records nothing, decides nothing and reads no message, so its throughput and CPU per
//! transaction are what one more hop costs before witness does any of its own work. Set against
//! PgBouncer it shows how much of witness's gap is the hop and how much is the recording.
//!
//! It runs as a child process (this executable with `--relay-floor`), so that its CPU is charged
//! to it alone, like the other proxies'.

use std::net::TcpStream as StdTcpStream;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use witness_testkit::free_port;

/// The command-line flag that turns this executable into the relay.
pub const FLAG: &str = "--relay-floor";

/// The relay as a child process, stopped when dropped.
pub struct RelayFloor {
    pub port: u16,
    child: Child,
}

impl RelayFloor {
    pub fn start(pg_port: u16) -> Result<RelayFloor, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable to start the relay floor: {e}"))?;
        let port = free_port();
        let child = Command::new(exe).args([FLAG, &port.to_string(), &pg_port.to_string()]).stdin(Stdio::null()).spawn();
        let mut child = child.map_err(|e| format!("cannot start the relay floor: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the relay floor exited with {status}"));
            }
            if StdTcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(RelayFloor { port, child });
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        Err(format!("the relay floor did not listen on port {port} within 20 s"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RelayFloor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay itself: `--relay-floor LISTEN_PORT TARGET_PORT`, until killed.
pub fn serve(args: &[String]) -> Result<(), String> {
    let port = |i: usize| args.get(i).and_then(|p| p.parse::<u16>().ok()).ok_or(format!("usage: {FLAG} LISTEN_PORT TARGET_PORT"));
    let (listen, target) = (port(0)?, port(1)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_io().build();
    let runtime = runtime.map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", listen)).await.map_err(|e| format!("cannot listen on port {listen}: {e}"))?;
        loop {
            let Ok((client, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await {
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    relay(client, server).await;
                }
            });
        }
    })
}

/// Both directions in one task, each read forwarded whole before the next read on that side.
async fn relay(client: TcpStream, server: TcpStream) {
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let up = async {
        let mut buf = vec![0; 64 << 10];
        while let Ok(n @ 1..) = client_rd.read(&mut buf).await {
            if server_wr.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        let mut buf = vec![0; 64 << 10];
        while let Ok(n @ 1..) = server_rd.read(&mut buf).await {
            if client_wr.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
