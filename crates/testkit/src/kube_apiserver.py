"""A stand-in Kubernetes API server for witness's tests, driven by the real kubectl.

No real API server can run on the test machines (it needs etcd, a kubelet and
certificates), yet the gateway's Kubernetes support must be proven against the
real kubectl, whose discovery, table, watch, exec, attach and port-forward
protocols are the details that matter. This server speaks just enough of them:
the core group (v1) with pods, pods/log, pods/exec, pods/attach,
pods/portforward, secrets, configmaps and namespaces, kept in memory, behind
one bearer token. Python's standard library only, so that nothing has to be
installed.

Run as `python3 -c SCRIPT TOKEN [CERT KEY]`; it prints `ready PORT` once it
listens on 127.0.0.1, plain HTTP or, given a certificate and its key, HTTPS.
(kubectl sends a bearer token over HTTPS only, so talking to this server
directly takes HTTPS; a gateway in front of it may use either.) Paths under /__
are the test's own, need no token and are answered in plain HTTP even on the
HTTPS port (a connection that does not open with a TLS handshake is served
plain, for those paths only), so that the harness needs no TLS client:
`GET /__seen` lists every other request received, in order (a port-forward's
with the connections it forwarded, under `forwarded`), and
`POST /__end-watches` ends every open watch stream.

Exec and attach speak the WebSocket channel protocol (v5.channel.k8s.io, or
v4); the fake container runs a few commands (see ExecSession), and its main
process, which attach reaches, is a `cat`. Port-forward speaks SPDY/3.1,
tunnelled in WebSocket binary messages (subprotocol SPDY/3.1+portforward.k8s.io,
kubectl's default) or on a plain SPDY upgrade; the fake container listens on
8080 (HTTP: `hello from POD:8080`) and 9000 (echo), and any other port fails
as a kubelet reports it (see PortForwardSession).

Watch streams end at `timeoutSeconds` when given, else shortly before the
`timeout` client-go adds for `--request-timeout` (a second before, or halfway
for timeouts under two seconds), else after DEFAULT_WATCH_SECONDS, or earlier
on `POST /__end-watches`: so `kubectl get --watch` always exits by itself.
"""

import base64
import datetime
import hashlib
import http.server
import json
import queue
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
import zlib

TOKEN = sys.argv[1]
TLS = None
if len(sys.argv) > 3:
    TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    TLS.load_cert_chain(sys.argv[2], sys.argv[3])
    TLS.set_alpn_protocols(['http/1.1'])
# The seeded secret's password in plaintext, for a test to search what the gateway recorded for.
SECRET_MARKER = 's3cr3t-hunter2'
DEFAULT_WATCH_SECONDS = 5
# RFC 6455: the accept key is the client's key with this GUID, SHA-1 hashed.
WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
# Preferred first: v5 adds the message that closes a stream (how stdin's end is told).
EXEC_SUBPROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io']
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
# Port-forward's one protocol. kubectl asks for it over WebSocket with the tunnelling prefix (SPDY
# frames carried in binary messages), or in X-Stream-Protocol-Version on a plain SPDY upgrade.
PORT_FORWARD_PROTOCOL = 'portforward.k8s.io'
PORT_FORWARD_TUNNEL = 'SPDY/3.1+' + PORT_FORWARD_PROTOCOL

# SPDY/3.1, as its draft specification (chromium.org) defines it: control frame types, the flag used here.
SPDY_VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR = 1
# DATA frame payloads are split at this size (the format allows up to 16 MB); kubectl's are 32 KB at most.
SPDY_DATA_CHUNK = 32 * 1024
# Header blocks are zlib streams primed with this dictionary (the spec's section 2.6.10.1): the
# usual header names and values, each with a 32-bit length, then common texts run together.
SPDY_DICTIONARY = b''.join(len(word).to_bytes(4, 'big') + word.encode() for word in [
    'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding',
    'accept-language', 'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection',
    'content-base', 'content-encoding', 'content-language', 'content-length', 'content-location', 'content-md5',
    'content-range', 'content-type', 'date', 'etag', 'expect', 'expires', 'from', 'host', 'if-match',
    'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'last-modified', 'location',
    'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer', 'retry-after',
    'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via', 'warning',
    'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url', 'public',
    'set-cookie', 'keep-alive', 'origin']) + (
    '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505'
    '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized'
    '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable'
    'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT'
    'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,'
    'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.').encode()

# resource -> (kind, namespaced, short names)
RESOURCES = {
    'pods': ('Pod', True, ['po']),
    'secrets': ('Secret', True, []),
    'configmaps': ('ConfigMap', True, ['cm']),
    'namespaces': ('Namespace', False, ['ns']),
}
OBJECT_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']
SUBRESOURCES = {
    'pods/log': ('Pod', ['get']),
    'pods/exec': ('PodExecOptions', ['create', 'get']),
    'pods/attach': ('PodAttachOptions', ['create', 'get']),
    'pods/portforward': ('PodPortForwardOptions', ['create', 'get']),
}


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def age(created):
    """The AGE column as kubectl shows it: 5s, 3m, 2h, 4d."""
    try:
        then = datetime.datetime.strptime(created, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return '<unknown>'
    seconds = max(0, int(time.time() - then))
    if seconds < 120:
        return f'{seconds}s'
    if seconds < 3600:
        return f'{seconds // 60}m'
    if seconds < 48 * 3600:
        return f'{seconds // 3600}h'
    return f'{seconds // 86400}d'


class ApiError(Exception):
    """A failure, answered as the Kubernetes Status object clients decode."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.status = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure', 'message': message,
                       'reason': reason, 'code': code}
        if details is not None:
            self.status['details'] = details


def not_found(resource, name):
    return ApiError(404, 'NotFound', f'{resource} "{name}" not found', {'name': name, 'kind': resource})


class Store:
    """Objects in memory, and every change as an event for the watches.

    One condition guards it all: a change notifies the waiting watches. Its lock is re-entrant
    (Condition's default), so methods holding it may call each other."""

    def __init__(self):
        self.changed = threading.Condition()
        self.resource_version = 0
        self.objects = {}  # (resource, namespace or '', name) -> object
        self.events = []  # (resource version, resource, type, object) in order
        self.watch_epoch = 0  # raised by /__end-watches: open watches end

    def next_version(self):
        self.resource_version += 1
        return str(self.resource_version)

    def list(self, resource, namespace):
        with self.changed:
            found = [obj for (res, ns, _), obj in self.objects.items() if res == resource and (namespace is None or ns == namespace)]
            return sorted(found, key=lambda o: (o['metadata'].get('namespace', ''), o['metadata']['name'])), str(self.resource_version)

    def get(self, resource, namespace, name):
        with self.changed:
            obj = self.objects.get((resource, namespace or '', name))
            if obj is None:
                raise not_found(resource, name)
            return obj

    def _record(self, resource, kind, obj):
        self.events.append((int(obj['metadata']['resourceVersion']), resource, kind, json.loads(json.dumps(obj))))
        self.changed.notify_all()

    def create(self, resource, namespace, obj):
        kind, namespaced, _ = RESOURCES[resource]
        meta = obj.setdefault('metadata', {})
        name = meta.get('name')
        if not name and meta.get('generateName'):
            name = meta['generateName'] + uuid.uuid4().hex[:5]
        if not name:
            raise ApiError(422, 'Invalid', f'{kind} is invalid: metadata.name: Required value: name or generateName is required')
        with self.changed:
            if namespaced and ('namespaces', '', namespace) not in self.objects:
                raise ApiError(404, 'NotFound', f'namespaces "{namespace}" not found', {'name': namespace, 'kind': 'namespaces'})
            key = (resource, namespace if namespaced else '', name)
            if key in self.objects:
                raise ApiError(409, 'AlreadyExists', f'{resource} "{name}" already exists', {'name': name, 'kind': resource})
            obj = typed(kind, obj)
            meta['name'] = name
            meta.pop('generateName', None)
            if namespaced:
                meta['namespace'] = namespace
            meta['uid'] = str(uuid.uuid4())
            meta['creationTimestamp'] = now_rfc3339()
            meta['resourceVersion'] = self.next_version()
            complete(resource, obj)
            self.objects[key] = obj
            self._record(resource, 'ADDED', obj)
            return obj

    def replace(self, resource, namespace, name, obj):
        with self.changed:
            key = (resource, namespace or '', name)
            old = self.objects.get(key)
            if old is None:
                raise not_found(resource, name)
            for kept in ('uid', 'creationTimestamp', 'namespace', 'name'):
                if kept in old['metadata']:
                    obj.setdefault('metadata', {})[kept] = old['metadata'][kept]
            obj = typed(RESOURCES[resource][0], obj)
            obj['metadata']['resourceVersion'] = self.next_version()
            complete(resource, obj)
            self.objects[key] = obj
            self._record(resource, 'MODIFIED', obj)
            return obj

    def delete(self, resource, namespace, name):
        with self.changed:
            key = (resource, namespace or '', name)
            obj = self.objects.pop(key, None)
            if obj is None:
                raise not_found(resource, name)
            obj['metadata']['deletionTimestamp'] = now_rfc3339()
            obj['metadata']['resourceVersion'] = self.next_version()
            self._record(resource, 'DELETED', obj)
            if resource == 'namespaces':
                for inner in [k for k in self.objects if k[1] == name and k[0] != 'namespaces']:
                    self.delete(inner[0], inner[1], inner[2])
            return obj

    def end_watches(self):
        with self.changed:
            self.watch_epoch += 1
            self.changed.notify_all()


def typed(kind, obj):
    """The object with apiVersion and kind set, and first, as the API server writes them."""
    return {'apiVersion': 'v1', 'kind': kind, **{k: v for k, v in obj.items() if k not in ('apiVersion', 'kind')}}


def complete(resource, obj):
    """Fills in what the real server (or a kubelet, for a pod's status) would."""
    if resource == 'pods':
        containers = obj.setdefault('spec', {}).setdefault('containers', [])
        started = obj['metadata']['creationTimestamp']
        obj.setdefault('status', {}).update({
            'phase': 'Running',
            'containerStatuses': [{'name': c.get('name', 'main'), 'image': c.get('image', ''), 'ready': True, 'restartCount': 0,
                                   'started': True, 'state': {'running': {'startedAt': started}}} for c in containers],
        })
    elif resource == 'secrets':
        obj.setdefault('type', 'Opaque')
        # The API server folds stringData into data and never returns it.
        for key, value in obj.pop('stringData', {}).items():
            obj.setdefault('data', {})[key] = base64.b64encode(value.encode()).decode()
    elif resource == 'namespaces':
        obj.setdefault('spec', {'finalizers': ['kubernetes']})
        obj['status'] = {'phase': 'Active'}


def b64(text):
    return base64.b64encode(text.encode()).decode()


def seed(store):
    for namespace in ('default', 'prod'):
        store.create('namespaces', None, {'metadata': {'name': namespace, 'labels': {'kubernetes.io/metadata.name': namespace}}})
    for namespace, name in (('default', 'web-1'), ('prod', 'api-1'), ('prod', 'api-2')):
        app = name.rsplit('-', 1)[0]
        store.create('pods', namespace, {
            'metadata': {'name': name, 'labels': {'app': app}},
            'spec': {'containers': [{'name': app, 'image': f'registry.example/{app}:1.0'}], 'nodeName': 'node-1'},
        })
    data = {'password': b64(SECRET_MARKER), 'user': b64('app')}
    # What `kubectl apply` leaves behind: the whole applied secret, data included, in an
    # annotation. A gateway that masks `data` but not this annotation leaks the password.
    applied = {'apiVersion': 'v1', 'data': data, 'kind': 'Secret',
               'metadata': {'annotations': {}, 'name': 'db-credentials', 'namespace': 'prod'}, 'type': 'Opaque'}
    store.create('secrets', 'prod', {
        'metadata': {'name': 'db-credentials', 'annotations': {
            'kubectl.kubernetes.io/last-applied-configuration': json.dumps(applied, sort_keys=True, separators=(',', ':')) + '\n'}},
        'type': 'Opaque', 'data': dict(data),
    })
    store.create('configmaps', 'prod', {'metadata': {'name': 'app-config'}, 'data': {'LOG_LEVEL': 'info'}})


STORE = Store()
seed(STORE)
SEEN = []
SEEN_LOCK = threading.Lock()

# Table columns per resource: (name, type, cell from object).
COLUMNS = {
    'pods': [('Name', 'string', lambda o: o['metadata']['name']),
             ('Ready', 'string', lambda o: '%d/%d' % (sum(1 for c in o['status'].get('containerStatuses', []) if c.get('ready')),
                                                       len(o['spec'].get('containers', [])))),
             ('Status', 'string', lambda o: o['status'].get('phase', 'Unknown')),
             ('Age', 'string', lambda o: age(o['metadata'].get('creationTimestamp')))],
    'secrets': [('Name', 'string', lambda o: o['metadata']['name']),
                ('Type', 'string', lambda o: o.get('type', 'Opaque')),
                ('Data', 'integer', lambda o: len(o.get('data', {}))),
                ('Age', 'string', lambda o: age(o['metadata'].get('creationTimestamp')))],
    'configmaps': [('Name', 'string', lambda o: o['metadata']['name']),
                   ('Data', 'integer', lambda o: len(o.get('data', {}))),
                   ('Age', 'string', lambda o: age(o['metadata'].get('creationTimestamp')))],
    'namespaces': [('Name', 'string', lambda o: o['metadata']['name']),
                   ('Status', 'string', lambda o: o['status'].get('phase', '')),
                   ('Age', 'string', lambda o: age(o['metadata'].get('creationTimestamp')))],
}


def table(resource, objects, resource_version, with_columns=True):
    columns = COLUMNS[resource]
    result = {'kind': 'Table', 'apiVersion': 'meta.k8s.io/v1', 'metadata': {'resourceVersion': resource_version}, 'rows': [
        {'cells': [cell(o) for _, _, cell in columns],
         'object': {'kind': 'PartialObjectMetadata', 'apiVersion': 'meta.k8s.io/v1', 'metadata': o['metadata']}}
        for o in objects]}
    if with_columns:
        result['columnDefinitions'] = [
            {'name': name, 'type': kind, 'format': 'name' if name == 'Name' else '', 'description': name, 'priority': 0}
            for name, kind, _ in columns]
    return result


def version_info():
    return {'major': '1', 'minor': '32', 'gitVersion': 'v1.32.0-witness-standin', 'gitCommit': '0' * 40, 'gitTreeState': 'clean',
            'buildDate': '2025-01-01T00:00:00Z', 'goVersion': 'go1.23.0', 'compiler': 'gc', 'platform': 'linux/amd64'}


def api_resource_list():
    resources = []
    for name, (kind, namespaced, short) in RESOURCES.items():
        entry = {'name': name, 'singularName': kind.lower(), 'namespaced': namespaced, 'kind': kind, 'verbs': OBJECT_VERBS}
        if short:
            entry['shortNames'] = short
        resources.append(entry)
    for name, (kind, verbs) in SUBRESOURCES.items():
        resources.append({'name': name, 'singularName': '', 'namespaced': True, 'kind': kind, 'verbs': verbs})
    return {'kind': 'APIResourceList', 'apiVersion': 'v1', 'groupVersion': 'v1', 'resources': resources}


def openapi_v3_root():
    return {'paths': {'api/v1': {'serverRelativeURL': '/openapi/v3/api/v1'}}}


def openapi_v3_core():
    """Just what kubectl reads before `create -f`: whether a kind's PATCH takes the fieldValidation
    parameter. It does, so kubectl leaves validation to the server (which does none) instead of
    validating against schemas this stand-in does not have."""
    paths = {}
    for name, (kind, namespaced, _) in RESOURCES.items():
        path = f'/api/v1/namespaces/{{namespace}}/{name}/{{name}}' if namespaced else f'/api/v1/{name}/{{name}}'
        paths[path] = {'patch': {
            'x-kubernetes-group-version-kind': {'group': '', 'version': 'v1', 'kind': kind},
            'parameters': [{'name': 'fieldValidation', 'in': 'query', 'schema': {'type': 'string', 'uniqueItems': True}}],
            'responses': {'200': {'description': 'OK'}},
        }}
    return {'openapi': '3.0.0', 'info': {'title': 'Kubernetes', 'version': 'v1.32.0'}, 'paths': paths}


def parse_selector(text):
    """`a=b,c!=d` (also `a==b`) as [(key, equal?, value)]; the set forms are not supported."""
    terms = []
    for term in filter(None, (t.strip() for t in (text or '').split(','))):
        match = re.fullmatch(r'([^=!]+?)\s*(==|=|!=)\s*(.*)', term)
        if not match:
            raise ApiError(400, 'BadRequest', f'unable to parse requirement: {term!r} (only = and != are supported here)')
        terms.append((match.group(1), match.group(2) != '!=', match.group(3)))
    return terms


def field_value(obj, path):
    value = obj
    for part in path.split('.'):
        value = value.get(part, '') if isinstance(value, dict) else ''
    return str(value)


def matches(obj, labels, fields):
    meta_labels = obj['metadata'].get('labels', {})
    return (all((meta_labels.get(k) == v) == equal for k, equal, v in labels)
            and all((field_value(obj, k) == v) == equal for k, equal, v in fields))


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch; strategic merge patches are taken as merge patches too (lists are replaced)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def go_duration_seconds(text):
    """client-go's `timeout` parameter is a Go duration such as 5s, 1m0s or 500ms."""
    units = {'h': 3600, 'm': 60, 's': 1, 'ms': 0.001, 'us': 1e-6, 'µs': 1e-6, 'ns': 1e-9}
    parts = re.findall(r'([0-9.]+)(h|ms|m|s|us|µs|ns)', text or '')
    return sum(float(n) * units[u] for n, u in parts) if parts else None


# Protocol Buffers: client-go's typed clients (kubectl create secret|configmap|namespace) send
# `application/vnd.kubernetes.protobuf` and do not fall back to JSON. Their bodies are read with
# the field numbers of k8s.io/api's generated.proto, for the fields this stand-in keeps; others
# are dropped. Values: 'string', 'bytes' (base64 in JSON, as the API shows them), 'bool',
# 'strings' (repeated), ('map', 'string'|'bytes') or a nested field table.
PROTO_OBJECT_META = {1: ('name', 'string'), 2: ('generateName', 'string'), 3: ('namespace', 'string'),
                     11: ('labels', ('map', 'string')), 12: ('annotations', ('map', 'string')), 14: ('finalizers', 'strings')}
PROTO_KINDS = {
    'Secret': {1: ('metadata', PROTO_OBJECT_META), 2: ('data', ('map', 'bytes')), 3: ('type', 'string'),
               4: ('stringData', ('map', 'string')), 5: ('immutable', 'bool')},
    'ConfigMap': {1: ('metadata', PROTO_OBJECT_META), 2: ('data', ('map', 'string')), 3: ('binaryData', ('map', 'bytes')),
                  4: ('immutable', 'bool')},
    'Namespace': {1: ('metadata', PROTO_OBJECT_META), 2: ('spec', {1: ('finalizers', 'strings')})},
}
PROTO_MAGIC = b'k8s\x00'
# runtime.Unknown, the envelope after the magic: typeMeta (apiVersion 1, kind 2) and raw (the object).
PROTO_UNKNOWN = {1: ('typeMeta', {1: ('apiVersion', 'string'), 2: ('kind', 'string')}), 2: ('raw', 'raw')}


def proto_fields(data):
    """(field number, wire type, value) of one message: varints as ints, length-delimited as bytes."""
    at = 0

    def varint():
        nonlocal at
        value = shift = 0
        while True:
            if at >= len(data):
                raise ValueError('truncated varint')
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while at < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, varint()
        elif wire == 2:
            length = varint()
            if at + length > len(data):
                raise ValueError('truncated field')
            yield number, wire, data[at:at + length]
            at += length
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise ValueError(f'wire type {wire} is not supported')


def proto_decode(data, fields):
    result = {}
    for number, wire, value in proto_fields(data):
        if number not in fields:
            continue
        name, kind = fields[number]
        if kind == 'raw':
            result[name] = value
        elif kind == 'string' and wire == 2:
            if value:
                result[name] = value.decode('utf-8')
        elif kind == 'bytes' and wire == 2:
            result[name] = base64.b64encode(value).decode()
        elif kind == 'bool' and wire == 0:
            result[name] = bool(value)
        elif kind == 'strings' and wire == 2:
            result.setdefault(name, []).append(value.decode('utf-8'))
        elif isinstance(kind, tuple) and wire == 2:
            entry = proto_decode(value, {1: ('key', 'string'), 2: ('value', kind[1])})
            result.setdefault(name, {})[entry.get('key', '')] = entry.get('value', '')
        elif isinstance(kind, dict) and wire == 2:
            result[name] = proto_decode(value, kind)
    return result


def proto_object(body):
    """A protobuf-encoded object as the dict its JSON form would give."""
    if not body.startswith(PROTO_MAGIC):
        raise ValueError('no k8s protobuf magic')
    envelope = proto_decode(body[len(PROTO_MAGIC):], PROTO_UNKNOWN)
    type_meta = envelope.get('typeMeta', {})
    kind = type_meta.get('kind', '')
    if kind not in PROTO_KINDS:
        raise ValueError(f'protobuf bodies of kind {kind!r} are not supported by this stand-in')
    obj = proto_decode(envelope.get('raw', b''), PROTO_KINDS[kind])
    obj['apiVersion'], obj['kind'] = type_meta.get('apiVersion', 'v1'), kind
    return obj


def log_lines(pod):
    return [f'{pod} starting', f'{pod} listening on 0.0.0.0:8080', f'{pod} GET /healthz 200', f'{pod} GET /orders 200',
            f'{pod} ready']


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    # ---- plumbing ------------------------------------------------------------------------

    def read_body(self):
        if 'chunked' in self.headers.get('transfer-encoding', '').lower():
            body = b''
            while True:
                size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get('content-length') or 0))

    def send_body(self, code, body, content_type='application/json'):
        data = body if isinstance(body, bytes) else (json.dumps(body) + '\n').encode()
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        self.send_header('Cache-Control', 'no-cache, private')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)

    def send_status(self, error):
        self.send_body(error.status['code'], error.status)

    def start_chunked(self, content_type):
        self.send_response(200)
        self.send_header('Content-Type', content_type)
        self.send_header('Transfer-Encoding', 'chunked')
        self.send_header('Cache-Control', 'no-cache, private')
        self.end_headers()

    def send_chunk(self, data):
        if data:
            self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
            self.wfile.flush()

    def end_chunked(self):
        self.wfile.write(b'0\r\n\r\n')
        self.wfile.flush()

    def header_list(self, name):
        """A header's comma-separated values, over all its lines."""
        return [value.strip() for line in self.headers.get_all(name) or [] for value in line.split(',')]

    def wants_table(self):
        return 'as=Table' in self.headers.get('accept', '')

    # ---- dispatch ------------------------------------------------------------------------

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        body = self.read_body()
        if url.path.startswith('/__'):
            return self.control(url.path)
        plain_on_tls_port = TLS is not None and not isinstance(self.connection, ssl.SSLSocket)
        headers = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        # Taken before the request is listed: a test that saw it listed and then ended the
        # watches has ended this one too, even if it has not reached watch() yet.
        self.watch_epoch = STORE.watch_epoch
        # Kept, for a port-forward to add the connections it forwarded to its entry.
        self.seen = {'method': self.command, 'path': url.path, 'query': url.query, 'headers': headers,
                     'body_length': len(body), 'body_sha256': hashlib.sha256(body).hexdigest()}
        with SEEN_LOCK:
            SEEN.append(self.seen)
        try:
            if plain_on_tls_port:
                raise ApiError(400, 'BadRequest', 'Client sent an HTTP request to an HTTPS server.')
            if self.headers.get_all('authorization') != [f'Bearer {TOKEN}']:
                raise ApiError(401, 'Unauthorized', 'Unauthorized')
            self.route(url.path.rstrip('/') or '/', body)
        except ApiError as error:
            self.send_status(error)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def control(self, path):
        if path == '/__seen' and self.command == 'GET':
            with SEEN_LOCK:
                return self.send_body(200, list(SEEN))
        if path == '/__end-watches' and self.command == 'POST':
            STORE.end_watches()
            return self.send_body(200, {'ended': True})
        self.send_status(ApiError(404, 'NotFound', f'no control path {path}'))

    def route(self, path, body):
        parts = path.strip('/').split('/')
        if path == '/version':
            return self.send_body(200, version_info())
        if path == '/api':
            return self.send_body(200, {'kind': 'APIVersions', 'versions': ['v1'],
                                        'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': '127.0.0.1'}]})
        if path == '/apis':
            return self.send_body(200, {'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': []})
        if path == '/api/v1':
            return self.send_body(200, api_resource_list())
        if path == '/openapi/v3':
            return self.send_body(200, openapi_v3_root())
        if path == '/openapi/v3/api/v1':
            return self.send_body(200, openapi_v3_core())
        if path in ('/healthz', '/livez', '/readyz'):
            return self.send_body(200, b'ok', 'text/plain')
        if parts[:2] != ['api', 'v1'] or len(parts) < 3:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        rest = parts[2:]
        # /api/v1/namespaces/NS/RESOURCE[/NAME[/SUBRESOURCE]]
        if rest[0] == 'namespaces' and len(rest) >= 3:
            namespace, resource, name, sub = rest[1], rest[2], (rest[3:4] or [None])[0], (rest[4:5] or [None])[0]
            if len(rest) > 5 or resource not in RESOURCES or not RESOURCES[resource][1]:
                raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        else:
            # /api/v1/RESOURCE[/NAME]: cluster-scoped objects, or namespaced ones across all namespaces
            resource, name, sub = rest[0], (rest[1:2] or [None])[0], None
            namespace = None
            if len(rest) > 2 or resource not in RESOURCES or (RESOURCES[resource][1] and name is not None):
                raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if sub is not None:
            return self.subresource(resource, namespace, name, sub)
        if name is None:
            return self.collection(resource, namespace, body)
        return self.single(resource, namespace, name, body)

    # ---- objects -------------------------------------------------------------------------

    def collection(self, resource, namespace, body):
        kind, namespaced, _ = RESOURCES[resource]
        if self.command in ('GET', 'HEAD') and self.query.get('watch', [''])[0] in ('true', '1'):
            return self.watch(resource, namespace)
        if self.command in ('GET', 'HEAD'):
            labels = parse_selector(self.query.get('labelSelector', [''])[0])
            fields = parse_selector(self.query.get('fieldSelector', [''])[0])
            objects, version = STORE.list(resource, namespace)
            objects = [o for o in objects if matches(o, labels, fields)]
            if self.wants_table():
                return self.send_body(200, table(resource, objects, version), 'application/json;as=Table;v=v1;g=meta.k8s.io')
            return self.send_body(200, {'kind': kind + 'List', 'apiVersion': 'v1', 'metadata': {'resourceVersion': version},
                                        'items': objects})
        if self.command == 'POST':
            obj = self.parse_object(body, kind)
            if namespaced and namespace is None:
                raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
            if namespaced and obj.get('metadata', {}).get('namespace', namespace) != namespace:
                raise ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request')
            if self.query.get('dryRun'):
                return self.send_body(201, obj)
            return self.send_body(201, STORE.create(resource, namespace, obj))
        if self.command == 'DELETE':
            objects, version = STORE.list(resource, namespace)
            labels = parse_selector(self.query.get('labelSelector', [''])[0])
            gone = [STORE.delete(resource, namespace, o['metadata']['name']) for o in objects if matches(o, labels, [])]
            return self.send_body(200, {'kind': kind + 'List', 'apiVersion': 'v1', 'metadata': {'resourceVersion': version},
                                        'items': gone})
        raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')

    def single(self, resource, namespace, name, body):
        if self.command in ('GET', 'HEAD'):
            obj = STORE.get(resource, namespace, name)
            if self.wants_table():
                return self.send_body(200, table(resource, [obj], obj['metadata']['resourceVersion']),
                                      'application/json;as=Table;v=v1;g=meta.k8s.io')
            return self.send_body(200, obj)
        if self.command == 'DELETE':
            return self.send_body(200, STORE.delete(resource, namespace, name))
        if self.command == 'PUT':
            return self.send_body(200, STORE.replace(resource, namespace, name, self.parse_object(body, RESOURCES[resource][0])))
        if self.command == 'PATCH':
            if 'json-patch' in self.headers.get('content-type', ''):
                raise ApiError(415, 'UnsupportedMediaType', 'JSON patches (RFC 6902) are not supported by this stand-in')
            patched = merge_patch(json.loads(json.dumps(STORE.get(resource, namespace, name))), self.parse_object(body, None))
            return self.send_body(200, STORE.replace(resource, namespace, name, patched))
        raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')

    def parse_object(self, body, kind):
        content_type = self.headers.get('content-type', 'application/json')
        try:
            if content_type.startswith('application/vnd.kubernetes.protobuf'):
                obj = proto_object(body)
            else:
                obj = json.loads(body or b'{}')
        except ValueError as error:
            raise ApiError(400, 'BadRequest', f'the body of the request was in an unknown format: {error}')
        if not isinstance(obj, dict):
            raise ApiError(400, 'BadRequest', 'the body of the request must be a JSON object')
        if kind is not None and obj.get('kind', kind) != kind:
            raise ApiError(400, 'BadRequest', f'the body is a {obj.get("kind")}, not a {kind}')
        return obj

    # ---- watch ---------------------------------------------------------------------------

    def watch(self, resource, namespace):
        if self.headers.get('upgrade', '').lower() == 'websocket':
            return self.watch_over_websocket(resource, namespace)
        labels = parse_selector(self.query.get('labelSelector', [''])[0])
        fields = parse_selector(self.query.get('fieldSelector', [''])[0])
        seconds = None
        if self.query.get('timeoutSeconds', [''])[0]:
            seconds = float(self.query['timeoutSeconds'][0])
        elif go_duration_seconds(self.query.get('timeout', [''])[0]) is not None:
            # kubectl's own timer ends the request at `timeout`: end the stream a little earlier,
            # so that it ends cleanly (its last chunk sent) rather than cut off by the client.
            timeout = go_duration_seconds(self.query['timeout'][0])
            seconds = max(timeout - 1, timeout / 2)
        deadline = time.monotonic() + (seconds if seconds is not None else DEFAULT_WATCH_SECONDS)
        since = self.query.get('resourceVersion', [''])[0]
        as_table = self.wants_table()

        def wanted(event_resource, obj):
            return (event_resource == resource and (namespace is None or obj['metadata'].get('namespace') == namespace)
                    and matches(obj, labels, fields))

        epoch = self.watch_epoch
        with STORE.changed:
            if since in ('', '0'):
                # Without a version to start from, a watch begins with the current state.
                objects, _ = STORE.list(resource, namespace)
                pending = [('ADDED', o) for o in objects if wanted(resource, o)]
            else:
                pending = [(kind, o) for version, res, kind, o in STORE.events if version > int(since) and wanted(res, o)]
            cursor = len(STORE.events)
        self.start_chunked('application/json;as=Table;v=v1;g=meta.k8s.io' if as_table else 'application/json')
        first = True
        while True:
            for kind, obj in pending:
                shown = table(resource, [obj], obj['metadata']['resourceVersion'], first) if as_table else obj
                first = False
                self.send_chunk((json.dumps({'type': kind, 'object': shown}) + '\n').encode())
            with STORE.changed:
                while len(STORE.events) == cursor and STORE.watch_epoch == epoch and time.monotonic() < deadline:
                    STORE.changed.wait(deadline - time.monotonic())
                pending = [(kind, o) for _, res, kind, o in STORE.events[cursor:] if wanted(res, o)]
                cursor = len(STORE.events)
                ended = STORE.watch_epoch != epoch or time.monotonic() >= deadline
            if ended:
                break
        for kind, obj in pending:
            shown = table(resource, [obj], obj['metadata']['resourceVersion'], first) if as_table else obj
            first = False
            self.send_chunk((json.dumps({'type': kind, 'object': shown}) + '\n').encode())
        self.end_chunked()

    def switch_to_websocket(self, subprotocol):
        """Answers the upgrade request with 101; the connection carries WebSocket frames from here."""
        key = self.headers.get('sec-websocket-key', '')
        accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
        self.send_response(101, 'Switching Protocols')
        self.send_header('Upgrade', 'websocket')
        self.send_header('Connection', 'Upgrade')
        self.send_header('Sec-WebSocket-Accept', accept)
        if subprotocol:
            self.send_header('Sec-WebSocket-Protocol', subprotocol)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def watch_over_websocket(self, resource, namespace):
        """A watch over WebSocket, as the API server serves one to a client that asks for it: the
        current objects as ADDED events, one text message each, then a close."""
        with STORE.changed:
            objects, _ = STORE.list(resource, namespace)
        self.switch_to_websocket(None)
        frames = ExecSession(self.rfile, self.wfile, False, False)
        for obj in objects:
            frames.write_frame(0x1, json.dumps({'type': 'ADDED', 'object': obj}).encode())
        frames.write_frame(0x8, (1000).to_bytes(2, 'big'))
        self.wfile.flush()

    # ---- pods/log, pods/exec, pods/attach and pods/portforward ------------------------------

    def subresource(self, resource, namespace, name, sub):
        if resource != 'pods' or sub not in ('log', 'exec', 'attach', 'portforward'):
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        pod = STORE.get('pods', namespace, name)
        containers = [c.get('name') for c in pod['spec'].get('containers', [])]
        container = self.query.get('container', [''])[0]
        if container and container not in containers:
            raise ApiError(400, 'BadRequest', f'container {container} is not valid for pod {name}')
        if sub == 'log' and self.command == 'GET':
            return self.logs(name)
        if sub == 'exec' and self.command in ('GET', 'POST'):
            return self.exec(pod)
        if sub == 'attach' and self.command in ('GET', 'POST'):
            return self.attach()
        if sub == 'portforward' and self.command in ('GET', 'POST'):
            return self.port_forward(pod)
        raise ApiError(400, 'BadRequest', f'pods/{sub} is not supported by this stand-in')

    def logs(self, pod):
        lines = log_lines(pod)
        tail = self.query.get('tailLines', [''])[0]
        if tail:
            lines = lines[len(lines) - min(int(tail), len(lines)):]
        if self.query.get('timestamps', [''])[0] == 'true':
            lines = [f'{now_rfc3339()} {line}' for line in lines]
        if self.query.get('follow', [''])[0] != 'true':
            return self.send_body(200, ''.join(line + '\n' for line in lines).encode(), 'text/plain')
        # Followed: the lines so far, then a few more one by one (each its own chunk, as a
        # running container's would come), then the container "exits" and the stream ends.
        self.start_chunked('text/plain')
        for line in lines:
            self.send_chunk((line + '\n').encode())
        for tick in range(1, 4):
            time.sleep(0.1)  # pacing only: what the client sees is chunks arriving over time
            self.send_chunk(f'{pod} tick {tick}\n'.encode())
        self.end_chunked()

    def open_channel_session(self, what):
        """Upgrades an exec or attach request to WebSocket with the channel protocol; its session."""
        upgrade = self.headers.get('upgrade', '').lower()
        if upgrade != 'websocket':
            # kubectl falls back to SPDY only when the WebSocket upgrade fails; refusing SPDY
            # here makes a test notice if the WebSocket path is not the one taken.
            raise ApiError(400, 'BadRequest', f'this stand-in {what} over WebSocket only (upgrade asked: {upgrade or "none"})')
        offered = self.header_list('sec-websocket-protocol')
        chosen = next((p for p in EXEC_SUBPROTOCOLS if p in offered), None)
        if chosen is None:
            raise ApiError(400, 'BadRequest', f'none of the offered subprotocols {offered} is supported')
        self.switch_to_websocket(chosen)
        tty = self.query.get('tty', [''])[0] == 'true'
        stdin = self.query.get('stdin', [''])[0] == 'true'
        return ExecSession(self.rfile, self.wfile, tty, stdin)

    def exec(self, pod):
        session = self.open_channel_session('executes')
        command = self.query.get('command', [])
        try:
            session.run(command)
        except (BrokenPipeError, ConnectionResetError, ConnectionClosed):
            pass
        session.finish()

    def attach(self):
        """`kubectl attach`: the same channels as exec, to the container's main process, which here
        is a `cat` (stdin back on stdout until stdin ends; on a terminal, line by line as typed)."""
        session = self.open_channel_session('attaches')
        try:
            session.attached()
        except (BrokenPipeError, ConnectionResetError, ConnectionClosed):
            pass
        session.finish()

    def port_forward(self, pod):
        """`kubectl port-forward`: a SPDY/3.1 session, tunnelled in WebSocket binary messages (what
        kubectl 1.32 asks first) or on the upgraded connection itself (its fallback, and what
        KUBECTL_PORT_FORWARD_WEBSOCKETS=false asks)."""
        upgrade = self.headers.get('upgrade', '').lower()
        if upgrade == 'websocket':
            offered = self.header_list('sec-websocket-protocol')
            if PORT_FORWARD_TUNNEL not in offered:
                raise ApiError(400, 'BadRequest', f'none of the offered subprotocols {offered} is supported')
            self.switch_to_websocket(PORT_FORWARD_TUNNEL)
            transport = WebSocketByteStream(self.rfile, self.wfile)
        elif upgrade == 'spdy/3.1':
            offered = self.header_list('x-stream-protocol-version')
            if PORT_FORWARD_PROTOCOL not in offered:
                raise ApiError(403, 'Forbidden', f'none of the offered protocols {offered} is supported')
            self.send_response(101, 'Switching Protocols')
            self.send_header('Connection', 'Upgrade')
            self.send_header('Upgrade', 'SPDY/3.1')
            self.send_header('X-Stream-Protocol-Version', PORT_FORWARD_PROTOCOL)
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            transport = RawByteStream(self.rfile, self.wfile)
        else:
            raise ApiError(400, 'BadRequest', 'Upgrade request required')
        with SEEN_LOCK:
            self.seen['forwarded'] = []
        PortForwardSession(transport, pod, self.seen['forwarded']).serve()


class ConnectionClosed(Exception):
    pass


class WebSocket:
    """RFC 6455 frames on an upgraded connection, server side: the client's come masked, ours not.
    Several threads may write, so a lock keeps each frame whole."""

    def __init__(self, rfile, wfile):
        self.rfile, self.wfile = rfile, wfile
        self.write_lock = threading.Lock()

    def read_exact(self, n):
        data = self.rfile.read(n)
        if len(data) < n:
            raise ConnectionClosed()
        return data

    def read_frame(self):
        first, second = self.read_exact(2)
        opcode, length = first & 0x0F, second & 0x7F
        if length == 126:
            length = int.from_bytes(self.read_exact(2), 'big')
        elif length == 127:
            length = int.from_bytes(self.read_exact(8), 'big')
        mask = self.read_exact(4) if second & 0x80 else None
        payload = self.read_exact(length)
        if mask:
            key = (mask * (length // 4 + 1))[:length]
            payload = (int.from_bytes(payload, 'little') ^ int.from_bytes(key, 'little')).to_bytes(length, 'little')
        return bool(first & 0x80), opcode, payload

    def write_frame(self, opcode, payload):
        length = len(payload)
        if length < 126:
            header = bytes([0x80 | opcode, length])
        elif length < 65536:
            header = bytes([0x80 | opcode, 126]) + length.to_bytes(2, 'big')
        else:
            header = bytes([0x80 | opcode, 127]) + length.to_bytes(8, 'big')
        with self.write_lock:
            self.wfile.write(header + payload)
            self.wfile.flush()


class ExecSession(WebSocket):
    """One `kubectl exec` or `kubectl attach` over WebSocket: the fake container's processes and
    the channel framing.

    Every message is a binary frame whose first byte is the channel: 0 stdin, 1 stdout,
    2 stderr, 3 the final Status (JSON), 4 terminal size; v5 adds 255 [channel] to close one."""

    def __init__(self, rfile, wfile, tty, stdin):
        super().__init__(rfile, wfile)
        self.tty = tty
        self.stdin_closed = not stdin  # without stdin, a command reading it sees its end at once
        # A thread of its own reads the client's frames, so that pings are answered (and a
        # close seen) whatever the fake command is doing; messages wait here, None for the end.
        self.inbox = queue.Queue()
        self.held = []  # messages taken from the inbox early, to be handled first
        self.reader = threading.Thread(target=self.read_messages, daemon=True)
        self.reader.start()

    def send(self, channel, data=b''):
        if channel == STDERR and self.tty:
            channel = STDOUT  # a terminal has one output stream
        self.write_frame(2, bytes([channel]) + data)

    def read_messages(self):
        message, message_opcode = b'', None
        try:
            while True:
                fin, opcode, payload = self.read_frame()
                if opcode == 8:
                    break
                if opcode == 9:
                    self.write_frame(10, payload)
                    continue
                if opcode == 10:
                    continue
                if opcode != 0:
                    message_opcode = opcode
                message += payload
                if fin:
                    if message_opcode in (1, 2) and message:
                        self.inbox.put((message[0], message[1:]))
                    message, message_opcode = b'', None
        except (ConnectionClosed, OSError):
            pass
        self.inbox.put(None)

    def receive(self):
        """The next (channel, data) the client sent; None once it closed."""
        if self.held:
            return self.held.pop(0)
        received = self.inbox.get()
        if received is None:
            self.inbox.put(None)  # the end stays the end for later calls
        return received

    def await_client_streams(self):
        """client-go starts reading the connection before it has set up its streams, and drops
        what arrives for a stream not set up yet ("Unknown stream id"), so nothing may be sent
        before they are. Its first message (stdin data or stdin's end, or a terminal's size) says
        they are. With a terminal, wait for the size itself: a command that ended before it
        arrived would close the connection under kubectl's size writer ("websocket: close sent").
        Without stdin or a terminal the client sends nothing, and a short pause stands in, as a
        real process's start-up would. Waits are bounded: a client that sends nothing gets its
        output after a few seconds all the same."""
        if not self.tty and self.stdin_closed:
            time.sleep(0.1)
            return
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                received = self.inbox.get(timeout=max(0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if received is None:
                self.inbox.put(None)
                return
            self.held.append(received)
            if not self.tty or received[0] == RESIZE:
                return

    def stdin_chunks(self):
        """Data the client sends on stdin, until it closes stdin (v5) or the connection."""
        while not self.stdin_closed:
            received = self.receive()
            if received is None:
                self.stdin_closed = True
                return
            channel, data = received
            if channel == STDIN:
                yield data
            elif channel == CLOSE and data[:1] == bytes([STDIN]):
                self.stdin_closed = True

    # the fake container

    def run(self, command):
        self.await_client_streams()
        if self.tty and command in (['sh'], ['bash'], ['/bin/sh'], ['/bin/bash']):
            code = self.terminal_shell()
        elif command in (['sh'], ['bash'], ['/bin/sh'], ['/bin/bash']):
            code = 0
            for line in self.lines():
                if line.strip() == 'exit':
                    break
                code = self.run_simple(line.split())
        else:
            code = self.run_simple(command)
        self.finish_with(code, command)

    def lines(self):
        pending = b''
        for chunk in self.stdin_chunks():
            pending += chunk
            while b'\n' in pending:
                line, pending = pending.split(b'\n', 1)
                yield line.decode('utf-8', 'replace')
        if pending:
            yield pending.decode('utf-8', 'replace')

    def run_simple(self, command):
        """echo, cat, true, false and `sh -c 'ONE COMMAND'`; the exit code."""
        if not command:
            return 0
        if command[0] in ('sh', 'bash', '/bin/sh', '/bin/bash') and command[1:2] == ['-c'] and len(command) >= 3:
            return self.run_simple(command[2].split())
        program, args = command[0].rsplit('/', 1)[-1], command[1:]
        if program == 'echo':
            self.output(' '.join(args) + '\n')
            return 0
        if program == 'cat' and not args:
            for chunk in self.stdin_chunks():
                self.output(chunk)
            return 0
        if program == 'true':
            return 0
        if program == 'false':
            return 1
        self.send(STDERR, f'sh: {command[0]}: not found\n'.encode())
        return 127

    def output(self, data):
        data = data.encode() if isinstance(data, str) else data
        if self.tty:
            data = data.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
        self.send(STDOUT, data)

    def attached(self):
        """The container's main process as `kubectl attach` meets it: a `cat`, that ends (exit code
        0) when stdin does; on a terminal (the pod's container asked for one) a ^D ends it too."""
        self.await_client_streams()
        if self.tty:
            for line in self.terminal_lines(b''):
                if line is None:
                    break
                self.output(line + '\n')
        else:
            for chunk in self.stdin_chunks():
                self.output(chunk)
        self.finish_with(0, ['cat'])

    def terminal_lines(self, prompt):
        """Lines as typed on a terminal: its line discipline echoes each byte, erases on backspace
        and ends a line on Enter; `prompt` comes first and after each line. None stands for a ^D
        on an empty line, which ends the input as stdin's own end does."""
        if prompt:
            self.send(STDOUT, prompt)
        line = b''
        for chunk in self.stdin_chunks():
            for byte in chunk:
                if byte in (0x0D, 0x0A):
                    self.send(STDOUT, b'\r\n')
                    yield line.decode('utf-8', 'replace')
                    line = b''
                    if prompt:
                        self.send(STDOUT, prompt)
                elif byte == 0x04 and not line:
                    yield None
                    return
                elif byte in (0x7F, 0x08):
                    if line:
                        line = line[:-1]
                        self.send(STDOUT, b'\b \b')
                else:
                    line += bytes([byte])
                    self.send(STDOUT, bytes([byte]))

    def terminal_shell(self):
        """A shell on a terminal: the terminal echoes what is typed, `$ ` prompts, `exit` (or ^D) ends."""
        code = 0
        for line in self.terminal_lines(b'$ '):
            if line is None:
                self.send(STDOUT, b'exit\r\n')
                return code
            if line.strip() == 'exit':
                return 0
            code = self.run_simple(line.split())
        return code

    def finish_with(self, code, command):
        if code == 0:
            status = {'metadata': {}, 'status': 'Success'}
        else:
            status = {'metadata': {}, 'status': 'Failure',
                      'message': f'command terminated with non-zero exit code: error executing command {command}, exit code {code}',
                      'reason': 'NonZeroExitCode', 'details': {'causes': [{'reason': 'ExitCode', 'message': str(code)}]}}
        self.send(ERROR, json.dumps(status).encode())

    def finish(self):
        """Closes as RFC 6455 asks: a close frame, then the client's frames read until its own close
        (or the connection's end), so that the kernel never resets a connection with unread data
        in it. (No shutdown of our half: on a TLS socket that would drop the TLS layer.)"""
        try:
            self.write_frame(8, (1000).to_bytes(2, 'big'))
        except OSError:
            pass
        self.reader.join(timeout=10)


class WebSocketByteStream(WebSocket):
    """The byte stream that kubectl tunnels in WebSocket binary messages. Message boundaries mean
    nothing: kubectl's SPDY framer writes a frame field by field, each write its own message (a
    DATA frame comes as three: stream id, flags and length, data; an empty one for no data), and
    a real API server passes on what it reads from the kubelet as it comes. Fragmented messages
    are taken too. This side sends each SPDY frame as one message."""

    def __init__(self, rfile, wfile):
        super().__init__(rfile, wfile)
        self.pending = bytearray()
        self.close_sent = False

    def read_bytes(self, n):
        while len(self.pending) < n:
            _, opcode, payload = self.read_frame()
            if opcode == 8:
                self.close()
                raise ConnectionClosed()
            if opcode == 9:
                self.write_frame(10, payload)
            elif opcode in (0, 2):  # continuation or binary; a text message has no place in the tunnel
                self.pending += payload
            elif opcode != 10:
                raise ConnectionClosed()
        data = bytes(self.pending[:n])
        del self.pending[:n]
        return data

    def send_bytes(self, data):
        self.write_frame(2, data)

    def close(self):
        """A close frame, once; the caller returns and the connection is closed after it."""
        if not self.close_sent:
            self.close_sent = True
            try:
                self.write_frame(8, (1000).to_bytes(2, 'big'))
            except OSError:
                pass


class RawByteStream:
    """The upgraded connection itself, for port-forward over plain SPDY. (Its one writer, the
    session, holds a lock of its own while it writes.)"""

    def __init__(self, rfile, wfile):
        self.rfile, self.wfile = rfile, wfile

    def read_bytes(self, n):
        data = self.rfile.read(n)
        if len(data) < n:
            raise ConnectionClosed()
        return data

    def send_bytes(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def close(self):
        pass


class SpdyStream:
    """One SPDY stream that the client opened: its headers, and what it sent, chunk by chunk in
    `received`, None once it finished sending (FIN), reset the stream or the session ended."""

    def __init__(self, stream_id, headers):
        self.id, self.headers = stream_id, headers
        self.received = queue.Queue()
        self.finished = False  # the client's half
        self.closed = False  # our half: FIN sent, or the stream reset

    def chunks(self):
        while not self.finished:
            chunk = self.received.get()
            if chunk is None:
                self.finished = True
                return
            yield chunk


class PortForwardSession:
    """One `kubectl port-forward` connection: a SPDY/3.1 session whose streams come in pairs, one
    pair for each connection made to kubectl's local port. Both carry the headers `port` (the
    pod's port) and `requestid` (the pair's number); `streamtype: error` is for the message of a
    failure, `streamtype: data` for the connection's bytes both ways. As a kubelet does, each
    stream is answered (SYN_REPLY) at once, and once both of a pair are there the connection is
    made to the fake container's port; when it ends, the error stream gets the failure's text if
    there was one, then both streams are finished (FIN).

    The fake container listens on HTTP_PORT (an HTTP/1.0 server answering every request with a
    greeting) and ECHO_PORT (every byte back until the client finishes sending); connecting to any
    other port fails as a kubelet reports it."""

    HTTP_PORT, ECHO_PORT = 8080, 9000

    def __init__(self, transport, pod, forwarded):
        self.transport = transport
        self.pod = pod
        self.forwarded = forwarded  # the request's /__seen entry lists each connection here
        self.write_lock = threading.Lock()
        # Each direction's header blocks are one zlib stream over the whole session.
        self.compressor = zlib.compressobj(zdict=SPDY_DICTIONARY)
        self.decompressor = zlib.decompressobj(zdict=SPDY_DICTIONARY)
        self.streams = {}  # stream id -> SpdyStream
        self.pairs = {}  # requestid -> {streamtype: SpdyStream}
        self.connections = []  # threads, one for each forwarded connection

    # frames

    def send_control(self, kind, flags, body):
        with self.write_lock:
            self.send_frame_locked(self.control_word(kind), flags, body)

    @staticmethod
    def control_word(kind):
        """A control frame's first 32 bits: the control bit, the version and the frame's type."""
        return (0x8000 | SPDY_VERSION).to_bytes(2, 'big') + kind.to_bytes(2, 'big')

    def send_frame_locked(self, first_word, flags, body):
        """One frame, as one write (one WebSocket message in the tunnel); the caller holds the write lock."""
        frame = first_word + bytes([flags]) + len(body).to_bytes(3, 'big') + body
        try:
            self.transport.send_bytes(frame)
        except OSError:
            pass  # the client is gone; the reading side sees that and ends the session

    def send_data(self, stream, data=b'', fin=False):
        """Data on one of our streams, in chunks; with `fin`, our half of the stream ends."""
        with self.write_lock:
            if stream.closed:
                return
            while True:
                chunk, data = data[:SPDY_DATA_CHUNK], data[SPDY_DATA_CHUNK:]
                last = not data
                self.send_frame_locked(stream.id.to_bytes(4, 'big'), FLAG_FIN if fin and last else 0, chunk)
                if last:
                    break
            stream.closed = fin

    def reset(self, stream_id, status):
        self.send_control(RST_STREAM, 0, stream_id.to_bytes(4, 'big') + status.to_bytes(4, 'big'))

    def header_block(self, headers):
        """Compressed under the write lock by the caller: blocks must be sent in the order the
        shared zlib stream made them."""
        block = len(headers).to_bytes(4, 'big')
        for name, value in headers.items():
            block += len(name).to_bytes(4, 'big') + name.encode() + len(value).to_bytes(4, 'big') + value.encode()
        return self.compressor.compress(block) + self.compressor.flush(zlib.Z_SYNC_FLUSH)

    def parse_header_block(self, data):
        """Header names lowercased, and several values of one name (NUL-separated) kept as one text."""
        block = self.decompressor.decompress(data)
        headers, at = {}, 4
        for _ in range(int.from_bytes(block[:4], 'big')):
            length = int.from_bytes(block[at:at + 4], 'big')
            name = block[at + 4:at + 4 + length].decode('utf-8', 'replace').lower()
            at += 4 + length
            length = int.from_bytes(block[at:at + 4], 'big')
            headers[name] = block[at + 4:at + 4 + length].decode('utf-8', 'replace')
            at += 4 + length
        return headers

    # the session

    def serve(self):
        """Reads the client's frames until it closes the connection; returns once every
        forwarded connection has ended."""
        try:
            while True:
                head = self.transport.read_bytes(8)
                flags, length = head[4], int.from_bytes(head[5:8], 'big')
                payload = self.transport.read_bytes(length)
                if head[0] & 0x80:
                    self.control_frame(int.from_bytes(head[2:4], 'big'), flags, payload)
                else:
                    stream = self.streams.get(int.from_bytes(head[:4], 'big') & 0x7FFFFFFF)
                    if stream is not None and not stream.finished:
                        if payload:
                            stream.received.put(payload)
                        if flags & FLAG_FIN:
                            stream.received.put(None)
        except (ConnectionClosed, OSError, ValueError, zlib.error):
            pass
        for stream in self.streams.values():
            stream.received.put(None)
        for connection in self.connections:
            connection.join(timeout=10)
        self.transport.close()

    def control_frame(self, kind, flags, payload):
        if kind == SYN_STREAM:
            stream_id = int.from_bytes(payload[:4], 'big') & 0x7FFFFFFF
            # Decompressed even when the stream is refused: the zlib stream goes on in the next block.
            self.open_stream(SpdyStream(stream_id, self.parse_header_block(payload[10:])), flags)
        elif kind in (SYN_REPLY, HEADERS):
            self.parse_header_block(payload[4:])  # for the zlib stream's sake; the client opens no streams of ours
        elif kind == RST_STREAM:
            stream = self.streams.get(int.from_bytes(payload[:4], 'big') & 0x7FFFFFFF)
            if stream is not None:
                stream.closed = True
                stream.received.put(None)
        elif kind == PING:
            # Client pings have odd ids (client-go sends them every few seconds); answered as sent.
            if int.from_bytes(payload[:4], 'big') % 2 == 1:
                self.send_control(PING, 0, payload)
        # SETTINGS, WINDOW_UPDATE and GOAWAY need nothing here: kubectl's SPDY library does no flow
        # control, and after GOAWAY the client closes the connection once its streams are done.

    def open_stream(self, stream, flags):
        streamtype, requestid = stream.headers.get('streamtype'), stream.headers.get('requestid')
        port = stream.headers.get('port', '')
        if streamtype not in ('error', 'data') or requestid is None or not port.isdigit():
            return self.reset(stream.id, RST_PROTOCOL_ERROR)
        self.streams[stream.id] = stream
        if flags & FLAG_FIN:
            stream.received.put(None)
        with self.write_lock:
            self.send_frame_locked(self.control_word(SYN_REPLY), 0, stream.id.to_bytes(4, 'big') + self.header_block({}))
        pair = self.pairs.setdefault(requestid, {})
        pair[streamtype] = stream
        if len(pair) == 2:
            del self.pairs[requestid]
            connection = threading.Thread(target=self.forward, args=(int(port), requestid, pair['error'], pair['data']),
                                          daemon=True)
            self.connections.append(connection)
            connection.start()

    # the fake container

    def forward(self, port, requestid, error_stream, data_stream):
        counts = {'received': 0, 'sent': 0}

        def received():
            for chunk in data_stream.chunks():
                counts['received'] += len(chunk)
                yield chunk

        def send(data):
            counts['sent'] += len(data)
            self.send_data(data_stream, data)

        error = None
        if port == self.HTTP_PORT:
            self.http_hello(port, received(), send)
        elif port == self.ECHO_PORT:
            for chunk in received():
                send(chunk)
        else:
            # A kubelet's words (containerd's, as kind and most clusters run it), the pod's sandbox
            # and network namespace made up.
            sandbox = hashlib.sha256(self.pod['metadata']['uid'].encode()).hexdigest()
            netns = uuid.UUID(self.pod['metadata']['uid'])
            error = (f'error forwarding port {port} to pod {sandbox}, uid : failed to execute portforward in network '
                     f'namespace "/var/run/netns/cni-{netns}": failed to connect to localhost:{port} inside namespace '
                     f'"{sandbox}", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 '
                     f'[::1]:{port}: connect: connection refused ')
            self.send_data(error_stream, error.encode())
        self.send_data(error_stream, fin=True)
        self.send_data(data_stream, fin=True)
        with SEEN_LOCK:
            self.forwarded.append({'requestid': requestid, 'port': port, 'received': counts['received'],
                                   'sent': counts['sent'], 'error': error})

    def http_hello(self, port, received, send):
        """An HTTP/1.0 server: reads a request's head, answers `hello from POD:PORT` and closes."""
        request = b''
        for chunk in received:
            request += chunk
            if b'\r\n\r\n' in request or b'\n\n' in request:
                break
        if not request:
            return  # the client connected and finished without asking anything
        body = f'hello from {self.pod["metadata"]["name"]}:{port}\n'.encode()
        head = (f'HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n'
                f'Connection: close\r\n\r\n').encode()
        send(head + (b'' if request.startswith(b'HEAD ') else body))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def finish_request(self, request, client_address):
        # On a connection's own thread: a TLS handshake record (0x16) first means HTTPS.
        if TLS is not None:
            try:
                request.settimeout(10)
                if request.recv(1, socket.MSG_PEEK) == b'\x16':
                    request = TLS.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except OSError:
                return  # a failed handshake (a client that does not trust the certificate, say)
        self.RequestHandlerClass(request, client_address, self)


server = Server(('127.0.0.1', 0), Handler)
print('ready', server.server_address[1], flush=True)
server.serve_forever()
