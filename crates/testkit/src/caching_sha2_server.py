# A stand-in for a MySQL 8 server's login, for the one thing no server on these machines does:
# caching_sha2_password's full authentication with the server's RSA key (MariaDB has no
# caching_sha2_password, and MySQL 8 cannot be installed here). It greets with that plugin,
# always asks for the full exchange (as a server whose cache is empty), and checks the answer
# with OpenSSL: the password XOR the scramble, encrypted with RSA-OAEP (SHA-1) to the key in
# KEY_FILE (sent at once, or after the client asked for the key, answered with the PEM).
# Logged in, every command but COM_QUIT gets an OK. Python 3 standard library and the openssl CLI.
#
# python3 -c SCRIPT USER PASSWORD KEY_FILE PUBLIC_KEY_FILE; prints "ready PORT", then serves.

import os
import socket
import subprocess
import sys
import tempfile
import threading

USER, PASSWORD, KEY_FILE, PUBLIC_KEY_FILE = sys.argv[1], sys.argv[2].encode(), sys.argv[3], sys.argv[4]

PROTOCOL_41 = 1 << 9
SECURE_CONNECTION = 1 << 15
PLUGIN_AUTH = 1 << 19
PLUGIN_AUTH_LENENC = 1 << 21
CONNECT_WITH_DB = 1 << 3
CAPABILITIES = 1 | 4 | CONNECT_WITH_DB | PROTOCOL_41 | (1 << 13) | SECURE_CONNECTION | (1 << 17) | (1 << 18) | PLUGIN_AUTH | PLUGIN_AUTH_LENENC


def read_packet(conn):
    header = b""
    while len(header) < 4:
        chunk = conn.recv(4 - len(header))
        if not chunk:
            return None, None
        header += chunk
    length = int.from_bytes(header[:3], "little")
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            return None, None
        body += chunk
    return header[3], body


def send(conn, sequence, payload):
    conn.sendall(len(payload).to_bytes(3, "little") + bytes([sequence & 0xFF]) + payload)


def ok():
    return b"\x00\x00\x00\x02\x00\x00\x00"


def err(code, message):
    return b"\xff" + code.to_bytes(2, "little") + b"#28000" + message.encode()


def lenenc(data, at):
    first = data[at]
    if first < 0xFB:
        return first, at + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(data[at + 1:at + 1 + size], "little"), at + 1 + size


def decrypt(ciphertext):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(ciphertext)
        path = f.name
    try:
        out = subprocess.run(
            ["openssl", "pkeyutl", "-decrypt", "-inkey", KEY_FILE, "-in", path,
             "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha1", "-pkeyopt", "rsa_mgf1_md:sha1"],
            capture_output=True)
    finally:
        os.unlink(path)
    return out.stdout if out.returncode == 0 else None


def serve(conn, connection_id):
    scramble = os.urandom(20).replace(b"\x00", b"\x01")
    greeting = (b"\x0a" + b"8.0.40-standin\x00" + connection_id.to_bytes(4, "little") + scramble[:8] + b"\x00"
                + (CAPABILITIES & 0xFFFF).to_bytes(2, "little") + b"\xff" + b"\x02\x00"
                + (CAPABILITIES >> 16).to_bytes(2, "little") + bytes([21]) + b"\x00" * 10
                + scramble[8:] + b"\x00" + b"caching_sha2_password\x00")
    send(conn, 0, greeting)
    sequence, answer = read_packet(conn)
    if answer is None:
        return
    at = 4 + 4 + 1 + 23
    end = answer.index(b"\x00", at)
    user = answer[at:end].decode()
    if user != USER:
        send(conn, sequence + 1, err(1045, f"Access denied for user '{user}'"))
        return
    # Whatever the fast answer, the cache is empty: the full exchange.
    send(conn, sequence + 1, b"\x01\x04")
    sequence, reply = read_packet(conn)
    if reply == b"\x02":
        with open(PUBLIC_KEY_FILE, "rb") as f:
            send(conn, sequence + 1, b"\x01" + f.read())
        sequence, reply = read_packet(conn)
    if reply is None:
        return
    clear = decrypt(reply)
    if clear is not None:
        clear = bytes(b ^ scramble[i % len(scramble)] for i, b in enumerate(clear))
    if clear != PASSWORD + b"\x00":
        send(conn, sequence + 1, err(1045, f"Access denied for user '{user}' (using password: YES)"))
        return
    send(conn, sequence + 1, ok())
    while True:
        sequence, command = read_packet(conn)
        if command is None or command[:1] == b"\x01":
            return
        send(conn, sequence + 1, ok())


def main():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(f"ready {listener.getsockname()[1]}", flush=True)
    connection_id = 0
    while True:
        conn, _ = listener.accept()
        connection_id += 1

        def run(conn=conn, connection_id=connection_id):
            with conn:
                try:
                    serve(conn, connection_id)
                except (OSError, ValueError, IndexError):
                    pass

        threading.Thread(target=run, daemon=True).start()


main()
