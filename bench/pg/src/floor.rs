//! The relay floor: a proxy on witness's own stack that only copies bytes. It records nothing,
//! decides nothing and reads no message, so its throughput and CPU per transaction are what one
//! more hop costs before witness does any of its own work. Set against PgBouncer it shows how
//! much of witness's gap is the hop and how much is the recording.
//!
//! This executable becomes the relay when run with [`FLAG`]; `servers::RelayFloor` runs it as a
//! child process, so that its CPU is charged to it alone, like the other proxies'.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The command-line flag that turns this executable into the relay.
pub const FLAG: &str = "--relay-floor";

/// The relay itself: `--relay-floor LISTEN_PORT TARGET_PORT`, until killed. An error (a failed
/// accept included) ends it: the runs through it then fail, and the report says so.
pub fn serve(args: &[String]) -> Result<(), String> {
    let usage = || format!("usage: {FLAG} LISTEN_PORT TARGET_PORT");
    let [listen, target] = args else { return Err(usage()) };
    let port = |p: &String| p.parse::<u16>().map_err(|_| usage());
    let (listen, target) = (port(listen)?, port(target)?);
    // Tokio's multi-thread runtime, as witness serves on.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_io().build();
    let runtime = runtime.map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", listen)).await.map_err(|e| format!("cannot listen on port {listen}: {e}"))?;
        loop {
            let (client, _) = listener.accept().await.map_err(|e| format!("relay floor: accept failed: {e}"))?;
            tokio::spawn(async move {
                match TcpStream::connect(("127.0.0.1", target)).await {
                    Ok(server) => {
                        // Witness sets no-delay on both sides too: a statement goes out at once.
                        let _ = (client.set_nodelay(true), server.set_nodelay(true));
                        relay(client, server).await;
                    }
                    Err(e) => eprintln!("relay floor: cannot connect to port {target}: {e}"),
                }
            });
        }
    })
}

/// Both directions in one task, each read forwarded whole before the next read on that side:
/// the shape of witness's relay, so that the floor differs from it only by witness's own work.
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
    // Either side ending ends the connection, as in witness.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
