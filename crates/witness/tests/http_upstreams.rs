//! The HTTP gateway against real upstreams and clients beyond the basic ones: Debian's nginx
//! serving files (100 MB, ranges, HEAD, conditional requests), an aiohttp server with server-sent
//! events, WebSocket and uploads, and an upstream that dies in the middle of a body; clients curl,
//! Python httpx and the Python `websockets` client. Streams flow without being held whole, a
//! slow reader holds the upstream back instead of filling witness's memory, a client or upstream
//! that goes away mid-stream leaves nothing hanging, and the ledger verifies.

mod pg;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pg::Gateway;
use serde_json::Value;
use witness_testkit::{free_port, Nginx, Python};

/// The credential witness holds for every upstream here.
const UPSTREAM_TOKEN: &str = "upstream-secret-4e1b";
const MIB: u64 = 1 << 20;

/// The aiohttp upstream. `/bytes?n=N` streams N bytes of a fixed pattern, counting what it has
/// handed to the socket (`/__progress`, asked directly); `/events?id=ID` sends one server-sent
/// event, then three more once `/__release?id=ID` is asked; `/upload` answers the length and
/// digest of what it got; `/ws` echoes WebSocket messages and closes on "bye".
const AIOHTTP_UPSTREAM: &str = r#"
import asyncio, hashlib, sys
from aiohttp import web

BLOCK = bytes(range(256)) * 256
written = {"bytes": 0}

def released(app, key):
    return app["releases"].setdefault(key, asyncio.Event())

async def stream_bytes(request):
    left = int(request.query["n"])
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = left
    await response.prepare(request)
    while left:
        chunk = BLOCK[:min(left, len(BLOCK))]
        await response.write(chunk)  # waits while the peer does not read
        written["bytes"] += len(chunk)
        left -= len(chunk)
    return response

async def events(request):
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(b'data: {"n": 1, "email": "ada@example.com"}\n\n')
    await released(request.app, request.query["id"]).wait()
    for n in range(2, 5):
        await response.write(b'data: {"n": %d}\n\n' % n)
    await response.write_eof()
    return response

async def upload(request):
    digest, length = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(1 << 16):
        digest.update(chunk)
        length += len(chunk)
    return web.json_response({"bytes": length, "sha256": digest.hexdigest(), "authorization": request.headers.get("Authorization")})

async def websocket(request):
    socket = web.WebSocketResponse(max_msg_size=8 << 20)
    await socket.prepare(request)
    async for message in socket:
        if message.type == web.WSMsgType.TEXT:
            if message.data == "bye":
                await socket.close(code=1000, message=b"bye")
                break
            await socket.send_str("echo: " + message.data)
        elif message.type == web.WSMsgType.BINARY:
            await socket.send_bytes(message.data)
    return socket

async def progress(request):
    return web.json_response(written)

async def release(request):
    released(request.app, request.query["id"]).set()
    return web.Response(text="released")

async def started(app):
    print(site._server.sockets[0].getsockname()[1], flush=True)

app = web.Application(client_max_size=256 << 20)
app["releases"] = {}
app.add_routes([web.get("/bytes", stream_bytes), web.get("/events", events), web.post("/upload", upload),
                web.get("/ws", websocket), web.get("/__progress", progress), web.get("/__release", release)])

async def main():
    global site
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    await started(app)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

/// A child process that says its port on its first line, stopped when dropped.
struct Upstream {
    child: Child,
    port: u16,
}

impl Upstream {
    fn start(python: &Path, script: &str) -> Upstream {
        let mut child = Command::new(python).arg("-c").arg(script).stdout(Stdio::piped()).spawn().expect("python starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the upstream did not say its port: {line:?}"));
        Upstream { child, port }
    }

    /// GET `path` on the upstream directly (not through witness).
    fn get(&self, path: &str) -> String {
        let out = Command::new("curl").args(["-sS", &format!("http://127.0.0.1:{}{path}", self.port)]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// witness with the HTTP connections `(name, upstream port)` and `extra` config.
fn gateway(connections: &[(&str, u16)], extra: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = format!(
        "data_dir = \"{}\"\n[listen]\nhttp = \"127.0.0.1:{port}\"\n\n[http]\nmax_body_recorded = 4096\n{extra}\n",
        dir.path().join("data").display()
    );
    for (name, upstream) in connections {
        config += &format!(
            "[[connections]]\nname = \"{name}\"\nprotocol = \"http\"\nurl = \"http://127.0.0.1:{upstream}\"\nbearer_env = \"WITNESS_TEST_UPSTREAM_TOKEN\"\n\n"
        );
    }
    Gateway::launch(dir, port, &config, &[("WITNESS_TEST_UPSTREAM_TOKEN", UPSTREAM_TOKEN)])
}

/// curl through witness with `args`; (exit code, status, body bytes, response headers).
fn curl(args: &[&str]) -> (i32, String, Vec<u8>, String) {
    let scratch = tempfile::tempdir().unwrap();
    let (head, body) = (scratch.path().join("head"), scratch.path().join("body"));
    let out = Command::new("curl")
        .args(["-sS", "-D", head.to_str().unwrap(), "-o", body.to_str().unwrap(), "-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read(&body).unwrap_or_default(),
        std::fs::read_to_string(&head).unwrap_or_default().to_ascii_lowercase(),
    )
}

/// The hex SHA-256 of a file (sha256sum: hashing 100 MB in a debug build would be slow).
fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// `(VmRSS, VmHWM)` of a process in bytes: what it holds now, and the most it ever held.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"));
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn nginx_files_ranges_and_100_mb_pass_through_witness_in_bounded_memory() {
    let bin = Nginx::bin().expect("nginx is installed (scripts/test installs it)");
    let server = format!(
        "    if ($http_authorization != \"Bearer {UPSTREAM_TOKEN}\") {{ return 401; }}\n    \
         location /api/ {{ default_type application/json; return 200 '{{\"ok\":true}}'; }}\n"
    );
    let nginx = Nginx::start(&bin, "", &server).unwrap();
    let big = nginx.root().join("big.bin");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let block: Vec<u8> = (0..MIB as usize).map(|i| (i * 7 + i / 4093) as u8).collect();
        for n in 0..100u8 {
            file.write_all(&block[n as usize..]).unwrap();
            file.write_all(&block[..n as usize]).unwrap();
        }
    }
    std::fs::write(nginx.root().join("small.txt"), "small file\n").unwrap();
    let big_digest = sha256_file(&big);

    let mut gw = gateway(&[("files", nginx.port)], "");
    let token = gw.token("claude", &["--groups", "ai-agents"]);
    let bearer = format!("Authorization: Bearer {token}");
    let url = |path: &str| format!("http://127.0.0.1:{}/c/files{path}", gw.port);
    let (_, baseline) = memory(gw.pid());

    // 100 MB with curl, byte for byte; witness never held more than a slice of it.
    let scratch = tempfile::tempdir().unwrap();
    let downloaded = scratch.path().join("big");
    let out =
        Command::new("curl").args(["-sS", "-f", "-H", &bearer, "-o", downloaded.to_str().unwrap(), &url("/big.bin")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256_file(&downloaded), big_digest, "the 100 MB download came through changed");
    let (_, peak) = memory(gw.pid());
    assert!(peak < baseline + 48 * MIB, "witness's memory grew from {baseline} to {peak} bytes for a 100 MB body");

    // A range, HEAD, a conditional request, a JSON answer of nginx's own.
    let (_, status, body, head) = curl(&["-H", &bearer, "-r", "1000-1999", &url("/big.bin")]);
    assert_eq!((status.as_str(), body.len()), ("206", 1000));
    assert!(head.contains("content-range: bytes 1000-1999/104857600"), "{head}");
    assert_eq!(body, std::fs::read(&big).unwrap()[1000..2000]);
    let (_, status, _, head) = curl(&["-H", &bearer, "-I", &url("/big.bin")]);
    assert_eq!(status, "200");
    assert!(head.contains("content-length: 104857600"), "{head}");
    let etag = head.lines().find_map(|l| l.strip_prefix("etag: ")).expect("nginx's etag").trim().to_string();
    let (_, status, body, _) = curl(&["-H", &bearer, "-H", &format!("If-None-Match: {etag}"), &url("/big.bin")]);
    assert_eq!((status.as_str(), body.len()), ("304", 0));
    let (_, status, body, _) = curl(&["-H", &bearer, &url("/api/anything")]);
    assert_eq!((status.as_str(), body.as_slice()), ("200", &b"{\"ok\":true}"[..]));

    // httpx: kept-alive requests of one connection, and the 100 MB again, streamed.
    let python = Python::ensure_venv(&["httpx"]);
    let script = format!(
        r#"
import hashlib, httpx
with httpx.Client(base_url="{base}", headers={{"Authorization": "Bearer {token}"}}) as client:
    small = client.get("/small.txt")
    part = client.get("/big.bin", headers={{"Range": "bytes=0-9"}})
    digest, length = hashlib.sha256(), 0
    with client.stream("GET", "/big.bin") as response:
        for chunk in response.iter_bytes():
            digest.update(chunk)
            length += len(chunk)
    print(small.status_code, small.text.strip(), part.status_code, len(part.content), length, digest.hexdigest())
"#,
        base = url(""),
    );
    let out = Command::new(&python).arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "httpx: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("200 small file 206 10 104857600 {big_digest}"));

    // The recording: 6 curl sessions and httpx's one; the 100 MB responses whole and digested.
    let events = gw.all_events(7);
    let responses = of_kind(&events, "http.response");
    assert_eq!(responses.len(), 8);
    let whole: Vec<&&Value> = responses.iter().filter(|e| e["attrs"]["body_bytes"] == 100 * MIB).collect();
    assert_eq!(whole.len(), 2, "both 100 MB downloads are recorded: {responses:?}");
    for response in whole {
        assert_eq!(response["attrs"]["body_digest"], format!("blake3:{}", blake3::hash(&std::fs::read(&big).unwrap()).to_hex()));
        assert_eq!((response["attrs"]["body_complete"].as_bool(), response["attrs"]["body_recorded"].as_u64()), (Some(true), Some(4096)));
    }
    let statuses: Vec<u64> = responses.iter().map(|e| e["attrs"]["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [200, 206, 200, 304, 200, 200, 206, 200]);
    gw.stop_and_verify();
}

#[test]
fn streams_websockets_and_slow_readers_through_witness() {
    let python = Python::ensure_venv(&["aiohttp", "httpx", "websockets"]);
    let upstream = Upstream::start(&python, AIOHTTP_UPSTREAM);
    let masking = "[[masking]]\nname = \"contacts\"\nconnections = [\"masked\"]\njson_paths = [\"$.email\"]\n";
    let mut gw = gateway(&[("aio", upstream.port), ("masked", upstream.port)], masking);
    let token = gw.token("claude", &["--groups", "ai-agents"]);
    let base = format!("http://127.0.0.1:{}", gw.port);

    // Server-sent events flow as they come: the first arrives while the upstream still holds the
    // rest back (so nothing waits for the stream's end), and is in the ledger by then; on a
    // masked connection too, where its JSON is masked line by line. A third reader leaves after
    // the first event.
    let script = format!(
        r#"
import httpx, sys
headers = {{"Authorization": "Bearer {token}"}}
upstream = "http://127.0.0.1:{up}"
for connection in ("aio", "masked"):
    with httpx.stream("GET", "{base}/c/%s/events?id=%s" % (connection, connection), headers=headers, timeout=60) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line)
        print("first", connection, first, flush=True)
        sys.stdin.readline()
        httpx.get(upstream + "/__release?id=" + connection)
        rest = [line for line in lines if line]
    print(connection, first, len(rest), rest[-1], flush=True)
with httpx.stream("GET", "{base}/c/aio/events?id=left", headers=headers, timeout=60) as response:
    print("left", next(line for line in response.iter_lines() if line), flush=True)
"#,
        up = upstream.port,
    );
    let mut events_client = Command::new(&python).arg("-c").arg(&script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut go_on = events_client.stdin.take().unwrap();
    let mut said = BufReader::new(events_client.stdout.take().unwrap());
    let mut lines = Vec::new();
    for connection in ["aio", "masked"] {
        let mut line = String::new();
        said.read_line(&mut line).unwrap();
        assert!(line.starts_with(&format!("first {connection} data:")), "{line}");
        if connection == "aio" {
            // The stream has not ended (the upstream waits for the release): its first event is
            // in the ledger already.
            let sessions = gw.sessions_when(|all| !all.is_empty());
            let parts = pg::poll("the first event's record", || {
                let events = gw.events(sessions[0]["id"].as_str().unwrap());
                let parts: Vec<Value> = events.into_iter().filter(|e| e["kind"] == "http.response_part").collect();
                (!parts.is_empty()).then_some(parts)
            });
            assert!(parts[0]["payload_text"].as_str().unwrap().contains("ada@example.com"), "{parts:?}");
        }
        writeln!(go_on).unwrap();
        line.clear();
        said.read_line(&mut line).unwrap();
        lines.push(line.trim().to_string());
    }
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    lines.push(line.trim().to_string());
    assert!(events_client.wait().unwrap().success(), "the httpx events client failed");
    assert_eq!(lines[0], r#"aio data: {"n": 1, "email": "ada@example.com"} 3 data: {"n": 4}"#);
    assert_eq!(lines[1], r#"masked data: {"n": 1, "email": "[redacted]"} 3 data: {"n": 4}"#);
    assert_eq!(lines[2], r#"left data: {"n": 1, "email": "ada@example.com"}"#);

    // WebSocket with the websockets client: text and a 1 MiB binary message both ways, then the
    // server's close, whose code the client sees.
    let script = format!(
        r#"
import hashlib
from websockets.sync.client import connect
with connect("ws://127.0.0.1:{port}/c/aio/ws", additional_headers={{"Authorization": "Bearer {token}"}}, max_size=8 << 20) as ws:
    ws.send("hello over witness")
    text = ws.recv()
    blob = bytes(range(256)) * 4096
    ws.send(blob)
    back = ws.recv()
    ws.send("bye")
    try:
        ws.recv()
    except Exception:
        pass
    print(text, back == blob, ws.close_code)
"#,
        port = gw.port,
    );
    let out = Command::new(&python).arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "websockets: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "echo: hello over witness True 1000");

    // 100 MB up with curl: the upstream gets it whole, with witness's credential.
    let scratch = tempfile::tempdir().unwrap();
    let upload = scratch.path().join("upload");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&upload).unwrap());
        let block: Vec<u8> = (0..MIB as usize).map(|i| (i * 13 + i / 511) as u8).collect();
        for _ in 0..100 {
            file.write_all(&block).unwrap();
        }
    }
    let (code, status, body, _) = curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-T",
        upload.to_str().unwrap(),
        "-X",
        "POST",
        &format!("{base}/c/aio/upload"),
    ]);
    assert_eq!((code, status.as_str()), (0, "200"), "{}", String::from_utf8_lossy(&body));
    let got: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((got["bytes"].as_u64(), got["sha256"].as_str()), (Some(100 * MIB), Some(&*sha256_file(&upload))));
    assert_eq!(got["authorization"], format!("Bearer {UPSTREAM_TOKEN}"));

    // A reader that stops after 1 MiB of 256 MiB: the upstream is held back (what it has written
    // stops growing far short of the whole) and witness's memory stays bounded; then it reads the
    // rest, all of it.
    let (_, baseline) = memory(gw.pid());
    let script = format!(
        r#"
import hashlib, socket, sys
c = socket.create_connection(("127.0.0.1", {port}))
c.sendall(b"GET /c/aio/bytes?n={total} HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {token}\r\n\r\n")
got = b""
while b"\r\n\r\n" not in got:
    got += c.recv(65536)
head, body = got.split(b"\r\n\r\n", 1)
digest, length = hashlib.sha256(body), len(body)
while length < (1 << 20):
    chunk = c.recv(65536)
    digest.update(chunk)
    length += len(chunk)
print("paused", flush=True)
sys.stdin.readline()
while length < {total}:
    chunk = c.recv(1 << 20)
    if not chunk:
        break
    digest.update(chunk)
    length += len(chunk)
print(length, digest.hexdigest(), flush=True)
"#,
        port = gw.port,
        total = 256 * MIB,
    );
    let mut reader = Command::new(&python).arg("-c").arg(&script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut said = BufReader::new(reader.stdout.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "paused");
    let written = || -> u64 { serde_json::from_str::<Value>(&upstream.get("/__progress")).unwrap()["bytes"].as_u64().unwrap() };
    // Polled until it has stood still for half a second: unbounded buffering would have let the
    // upstream write all 256 MiB by then.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut still_since) = (written(), Instant::now());
    while still_since.elapsed() < Duration::from_millis(500) {
        assert!(Instant::now() < deadline, "the upstream never stopped writing");
        std::thread::sleep(Duration::from_millis(50));
        let now = written();
        if now != last {
            (last, still_since) = (now, Instant::now());
        }
    }
    assert!(last < 64 * MIB, "with the reader stopped the upstream wrote {last} bytes: witness did not hold it back");
    let (held, _) = memory(gw.pid());
    assert!(held < baseline + 48 * MIB, "witness holds {held} bytes (from {baseline}) for a stopped reader");
    writeln!(reader.stdin.take().unwrap()).unwrap();
    line.clear();
    said.read_line(&mut line).unwrap();
    let expected: String = {
        let out = Command::new(&python)
            .arg("-c")
            .arg(format!("import hashlib; b = bytes(range(256)) * 256; print(hashlib.sha256(b * {}).hexdigest())", 256 * MIB / (1 << 16)))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(line.trim(), format!("{} {expected}", 256 * MIB));
    assert!(reader.wait().unwrap().success());

    // The recording: the events in order, masked on `masked`; the left stream cut; the
    // WebSocket's messages; the upload and the slow download whole.
    let events = gw.all_events(6);
    let responses = of_kind(&events, "http.response");
    let content_type = |e: &Value| {
        let pairs = e["attrs"]["headers"].as_array().cloned().unwrap_or_default();
        pairs.iter().find(|pair| pair[0] == "content-type").map(|pair| pair[1].as_str().unwrap_or("").to_string())
    };
    let streams: Vec<&&Value> = responses.iter().filter(|e| content_type(e).is_some_and(|t| t.starts_with("text/event-stream"))).collect();
    assert_eq!(streams.len(), 3, "{responses:?}");
    let recorded = |e: &Value| e["payload_text"].as_str().map(str::to_string).unwrap_or_default();
    // The unmasked stream is recorded in parts as it flowed, none left for the response record.
    let parts: String = of_kind(&events, "http.response_part").iter().map(|e| recorded(e)).collect();
    assert!(parts.contains("ada@example.com") && parts.contains(r#"{"n": 4}"#), "{parts}");
    assert_eq!(
        (recorded(streams[0]).as_str(), streams[0]["attrs"]["body_in_parts"].as_u64()),
        ("", Some(streams[0]["attrs"]["body_bytes"].as_u64().unwrap()))
    );
    assert!(recorded(streams[1]).contains("[redacted]") && !recorded(streams[1]).contains("ada@"), "{}", streams[1]);
    assert_eq!(streams[1]["attrs"]["masked"]["contacts"]["column"], 1);
    assert_eq!(streams[2]["attrs"]["body_complete"], false, "the stream the reader left is recorded as cut");
    let messages = of_kind(&events, "http.websocket");
    assert!(messages.iter().any(|e| recorded(e).contains("hello over witness")), "{messages:?}");
    assert_eq!(of_kind(&events, "http.websocket_closed").len(), 1);
    let slow = responses.iter().find(|e| e["attrs"]["body_bytes"] == 256 * MIB).expect("the slow download, whole");
    assert_eq!(slow["attrs"]["body_complete"], true);
    gw.stop_and_verify();
}

#[test]
fn an_upstream_that_dies_mid_body_leaves_nothing_hanging() {
    // Answers one request with the head of 64 MiB and 1 MiB of it, then the process ends.
    const DYING: &str = r#"
import os, socket
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
print(server.getsockname()[1], flush=True)
client, _ = server.accept()
request = b""
while b"\r\n\r\n" not in request:
    request += client.recv(65536)
client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 67108864\r\n\r\n" + b"x" * (1 << 20))
os._exit(1)
"#;
    let upstream = Upstream::start(Path::new("python3"), DYING);
    let mut gw = gateway(&[("fragile", upstream.port)], "");
    let token = gw.token("claude", &[]);
    let bearer = format!("Authorization: Bearer {token}");
    let url = format!("http://127.0.0.1:{}/c/fragile/data", gw.port);
    // curl is told the body broke off (18: partial file), it is not left waiting.
    let (code, status, body, _) = curl(&["-H", &bearer, &url]);
    assert_eq!((code, status.as_str()), (18, "200"), "curl's exit code and status");
    assert!(body.len() as u64 >= MIB / 2 && (body.len() as u64) < 64 * MIB, "{} bytes", body.len());
    // With the upstream gone, the next request is answered 502 at once.
    let (code, status, body, _) = curl(&["-H", &bearer, &url]);
    assert_eq!((code, status.as_str()), (0, "502"), "{}", String::from_utf8_lossy(&body));
    let events = gw.all_events(2);
    let cut = of_kind(&events, "http.response").into_iter().find(|e| e["attrs"]["status"] == 200).expect("the cut response");
    assert_eq!(cut["attrs"]["body_complete"], false);
    assert!(cut["attrs"]["body_error"].as_str().is_some_and(|e| !e.is_empty()), "{cut}");
    assert_eq!(of_kind(&events, "http.upstream_error").len(), 1);
    gw.stop_and_verify();
    drop(upstream);
}
