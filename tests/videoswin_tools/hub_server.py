"""A loopback stand-in for the Hugging Face Hub HTTP API, for tests.

It serves, on 127.0.0.1 and a free port, the endpoints `huggingface_hub` uses to publish a
folder and to download it back:

- `POST /api/repos/create`, `POST /api/models/{repo}/branch/{branch}`
- `POST /api/validate-yaml` (model-card metadata checks, see `validate_card_metadata`)
- `POST /api/models/{repo}/preupload/{rev}`: upload mode per file (`lfs` for binary or large
  files, else `regular`) and the oid of the file already there, which is what lets the client
  drop unchanged files and skip an empty commit
- `POST /{repo}.git/info/lfs/objects/batch`, `PUT /lfs-upload/{oid}` (the "storage" URL the
  batch answer hands out; no auth, like a signed URL), `POST /{repo}.git/info/lfs/verify`
- `POST /api/models/{repo}/commit/{rev}` (NDJSON: header, inline base64 `file`, `lfsFile`,
  `deletedFile`, `deletedFolder`)
- `GET /api/models/{repo}[/revision/{rev}]` (repo info), `GET /api/models/{repo}/tree/{rev}`
- `HEAD|GET /{repo}/resolve/{rev}/{path}` with `X-Repo-Commit`, `ETag` (git oid, or sha256 of
  LFS files, also as `X-Linked-Etag` / `X-Linked-Size`) and `Content-Length`

No Xet: no response carries Xet headers, so downloads use plain HTTP. Uploads pick Xet on the
client side when `hf_xet` is installed, so tests turn it off (`HF_HUB_DISABLE_XET`) and the
client uses the LFS batch API above.

Repositories keep their whole commit history (`HubServer.commits(repo_id)`); file contents
live under the server's folder, addressed by sha256. Every request is logged
(`HubServer.requests`), failures can be injected (`HubServer.fail`), and the server stops by
itself after `lifetime` seconds so that a crashed test cannot leave it running.
"""

import base64
import datetime
import fnmatch
import hashlib
import http.server
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_THRESHOLD = 10 * 1024 * 1024      # the Hub's limit for regular (non-LFS) files
MAX_BODY = 512 * 1024 * 1024
GITATTRIBUTES = (b"*.h5 filter=lfs diff=lfs merge=lfs -text\n"
                 b"*.keras filter=lfs diff=lfs merge=lfs -text\n")
PIPELINE_TAGS = {"video-classification", "feature-extraction", "image-classification"}


def git_oid(data):
    """The git blob id of `data` (what the Hub reports for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Blob:
    sha256: str
    size: int
    lfs: bool

    def pointer(self):
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
                f"size {self.size}\n").encode()


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    files: dict                          # path -> Blob
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict = field(default_factory=dict)    # oid -> Commit
    branches: dict = field(default_factory=dict)   # name -> oid

    def resolve(self, revision):
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


class HubError(Exception):
    def __init__(self, status, message, code=None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def validate_card_metadata(content):
    """(errors, warnings) for a README's YAML front matter, following the Hub's model-card spec."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
    if not match:
        return [], ["empty or missing yaml metadata in repo card"]
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as e:
        return [f"invalid YAML: {e}"], []
    if not isinstance(meta, dict):
        return ["metadata must be a YAML mapping"], []
    errors = []
    for key in ("license", "library_name", "pipeline_tag"):
        if key in meta and not isinstance(meta[key], str):
            errors.append(f'"{key}" must be a string')
    for key in ("tags", "datasets"):
        if key in meta and not (isinstance(meta[key], list)
                                and all(isinstance(t, str) for t in meta[key])):
            errors.append(f'"{key}" must be a list of strings')
    if meta.get("pipeline_tag") not in (None, *PIPELINE_TAGS):
        errors.append(f'unknown pipeline_tag {meta["pipeline_tag"]!r}')
    index = meta.get("model-index")
    if index is not None:
        if not isinstance(index, list) or not index:
            errors.append('"model-index" must be a non-empty list')
            index = []
        for model in index:
            if not isinstance(model, dict) or not isinstance(model.get("name"), str):
                errors.append('"model-index" entries need a "name"')
                continue
            for result in model.get("results") or [None]:
                ok = (isinstance(result, dict)
                      and isinstance((result.get("task") or {}).get("type"), str)
                      and isinstance((result.get("dataset") or {}).get("type"), str)
                      and isinstance((result.get("dataset") or {}).get("name"), str)
                      and isinstance(result.get("metrics"), list) and result["metrics"]
                      and all(isinstance(m, dict) and isinstance(m.get("type"), str)
                              and "value" in m for m in result["metrics"]))
                if not ok:
                    errors.append(f'"model-index" result of {model["name"]!r} needs task.type, '
                                  "dataset.type, dataset.name and metrics with type and value")
    return errors, []


class HubServer:
    """The stand-in Hub. `with HubServer(tmp_dir) as hub: hub.url ...`."""

    def __init__(self, root, tokens=("hf_write_token",), lifetime=600.0):
        self.root = Path(root)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        self.tokens = set(tokens)
        self.lifetime = lifetime
        self.repos = {}
        self.objects = {}                # sha256 -> size, uploaded or committed content
        self.requests = []               # (method, path) of every request, in order
        self._failures = []              # [pattern, status, remaining]
        self._lock = threading.RLock()
        self._httpd = None

    # -- life cycle -------------------------------------------------------------------------
    def start(self):
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self):
        if self._httpd is not None:
            httpd, self._httpd = self._httpd, None
            httpd.shutdown()
            httpd.server_close()
            self._timer.cancel()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- test helpers -----------------------------------------------------------------------
    def fail(self, pattern, status=500, times=1):
        """Answer the next `times` requests matching glob `pattern` ('METHOD /path') with
        `status`."""
        with self._lock:
            self._failures.append([pattern, status, times])

    def commits(self, repo_id, branch="main"):
        """The commits of a branch, oldest first."""
        repo = self.repos[repo_id]
        out, oid = [], repo.branches[branch]
        while oid is not None:
            out.append(repo.commits[oid])
            oid = repo.commits[oid].parent
        return out[::-1]

    def files(self, repo_id, revision="main"):
        """{path: bytes} at a revision."""
        commit = self.repos[repo_id].resolve(revision)
        return {path: self.read(blob) for path, blob in commit.files.items()}

    def read(self, blob):
        return (self.root / "objects" / blob.sha256).read_bytes()

    # -- storage ----------------------------------------------------------------------------
    def _store(self, data):
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / "objects" / sha
        if not path.exists():
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        self.objects[sha] = len(data)
        return sha

    def _new_commit(self, repo, branch, title, description, files):
        parent = repo.branches.get(branch)
        oid = hashlib.sha1(f"{repo.repo_id}{parent}{title}{uuid.uuid4()}".encode()).hexdigest()
        date = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        repo.commits[oid] = Commit(oid, parent, title, description, files, date)
        repo.branches[branch] = oid
        return oid

    @staticmethod
    def _file_oid(blob, data):
        return blob.sha256 if blob.lfs else git_oid(data)

    # -- request dispatch -------------------------------------------------------------------
    def handle(self, method, raw_path, headers, body):
        """(status, headers, body bytes or None) for one request."""
        parts = urlsplit(raw_path)
        segments = [unquote(s) for s in parts.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append((method, parts.path))
            for rule in self._failures:
                if rule[2] > 0 and fnmatch.fnmatch(f"{method} {parts.path}", rule[0]):
                    rule[2] -= 1
                    return _json(rule[1], {"error": f"injected failure (HTTP {rule[1]})"})
        auth = headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        try:
            return self._route(method, segments, query, headers, body, token)
        except HubError as e:
            extra = {"X-Error-Message": e.message}
            if e.code:
                extra["X-Error-Code"] = e.code
            return _json(e.status, {"error": e.message}, extra)

    def _route(self, method, seg, query, headers, body, token):
        if seg[:1] == ["api"]:
            if method == "POST" and seg[1:] == ["repos", "create"]:
                return self._create_repo(json.loads(body), token)
            if method == "POST" and seg[1:] == ["validate-yaml"]:
                errors, warnings = validate_card_metadata(json.loads(body)["content"])
                payload = {"errors": [{"message": m} for m in errors],
                           "warnings": [{"message": m} for m in warnings]}
                return _json(400 if errors else 200, payload)
            if len(seg) >= 4 and seg[1] == "models":
                repo_id, rest = f"{seg[2]}/{seg[3]}", seg[4:]
                if method == "GET" and not rest:
                    return self._repo_info(repo_id, "main", token)
                if method == "GET" and rest[:1] == ["revision"] and len(rest) == 2:
                    return self._repo_info(repo_id, rest[1], token)
                if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
                    return self._tree(repo_id, rest[1], "/".join(rest[2:]), query, token)
                if method == "POST" and rest[:1] == ["preupload"] and len(rest) == 2:
                    return self._preupload(repo_id, rest[1], json.loads(body), token)
                if method == "POST" and rest[:1] == ["commit"] and len(rest) == 2:
                    return self._commit(repo_id, rest[1], body, token)
                if method == "POST" and rest[:1] == ["branch"] and len(rest) == 2:
                    return self._branch(repo_id, rest[1], json.loads(body or b"{}"), token)
        if method == "PUT" and seg[:1] == ["lfs-upload"] and len(seg) == 2:
            return self._lfs_put(seg[1], body)
        if len(seg) >= 3 and seg[1].endswith(".git") and seg[2:4] == ["info", "lfs"]:
            repo_id = f"{seg[0]}/{seg[1][:-4]}"
            if method == "POST" and seg[4:] == ["objects", "batch"]:
                return self._lfs_batch(repo_id, json.loads(body), token)
            if method == "POST" and seg[4:] == ["verify"]:
                return self._lfs_verify(repo_id, json.loads(body), token)
        if method in ("GET", "HEAD") and len(seg) >= 5 and seg[2] == "resolve":
            return self._resolve(method, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]),
                                 headers, token)
        raise HubError(404, f"no such endpoint: {method} /{'/'.join(seg)}")

    # -- auth -------------------------------------------------------------------------------
    def _check_write(self, token):
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id, token, write=False):
        if write:
            self._check_write(token)
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and token not in self.tokens):
            raise HubError(401 if token is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo, revision):
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # -- endpoints --------------------------------------------------------------------------
    def _create_repo(self, payload, token):
        self._check_write(token)
        if payload.get("type", "model") != "model":
            raise HubError(400, "only model repositories are supported here")
        namespace = payload.get("organization") or "user"
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.url}/{repo_id}"
        with self._lock:
            if repo_id in self.repos:
                return _json(409, {"error": "You already created this model repo", "url": url})
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = self.repos[repo_id] = Repo(repo_id, private)
            sha = self._store(GITATTRIBUTES)
            self._new_commit(repo, "main", "initial commit", "",
                             {".gitattributes": Blob(sha, len(GITATTRIBUTES), lfs=False)})
        return _json(200, {"url": url, "name": repo_id, "id": uuid.uuid4().hex})

    def _branch(self, repo_id, branch, payload, token):
        with self._lock:
            repo = self._repo(repo_id, token, write=True)
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = self._commit_at(repo, payload.get("startingPoint") or "main")
            repo.branches[branch] = start.oid
        return _json(200, {})

    def _repo_info(self, repo_id, revision, token):
        with self._lock:
            repo = self._repo(repo_id, token)
            commit = self._commit_at(repo, revision)
            return _json(200, {
                "id": repo_id, "modelId": repo_id, "sha": commit.oid, "private": repo.private,
                "lastModified": commit.date, "tags": [], "downloads": 0, "likes": 0,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            })

    def _tree(self, repo_id, revision, prefix, query, token):
        with self._lock:
            repo = self._repo(repo_id, token)
            commit = self._commit_at(repo, revision)
            recursive = query.get("recursive", "false").lower() == "true"
            base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
            entries, folders = [], set()
            for path in sorted(commit.files):
                if not path.startswith(base):
                    continue
                rel = path[len(base):]
                if "/" in rel and not recursive:
                    folders.add(base + rel.split("/")[0])
                    continue
                for i, part in enumerate(rel.split("/")[:-1]):
                    folders.add(base + "/".join(rel.split("/")[: i + 1]))
                blob = commit.files[path]
                data = self.read(blob)
                item = {"type": "file", "path": path, "size": blob.size,
                        "oid": git_oid(blob.pointer() if blob.lfs else data)}
                if blob.lfs:
                    item["lfs"] = {"oid": blob.sha256, "size": blob.size,
                                   "pointerSize": len(blob.pointer())}
                entries.append(item)
            if not entries and not folders and base:
                raise HubError(404, f"{prefix} does not exist", "EntryNotFound")
            dirs = [{"type": "directory", "path": f, "oid": git_oid(f.encode())}
                    for f in sorted(folders)]
            return _json(200, dirs + entries)

    def _preupload(self, repo_id, revision, payload, token):
        with self._lock:
            repo = self._repo(repo_id, token, write=True)
            commit = self._commit_at(repo, revision)
            files = []
            for item in payload["files"]:
                sample = base64.b64decode(item["sample"])
                lfs = item["size"] > LFS_THRESHOLD or b"\0" in sample
                existing = commit.files.get(item["path"])
                oid = None
                if existing is not None:
                    oid = self._file_oid(existing, self.read(existing))
                files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular",
                              "shouldIgnore": False, "oid": oid})
            return _json(200, {"files": files, "commitOid": commit.oid})

    def _lfs_batch(self, repo_id, payload, token):
        with self._lock:
            self._repo(repo_id, token, write=True)
            objects = []
            for obj in payload["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in self.objects:
                    entry["actions"] = {
                        "upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}"},
                        "verify": {"href": f"{self.url}/{repo_id}.git/info/lfs/verify"},
                    }
                objects.append(entry)
        return _json(200, {"transfer": "basic", "objects": objects},
                     content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, oid, body):
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match its sha256")
        with self._lock:
            self._store(body)
        return _json(200, {})

    def _lfs_verify(self, repo_id, payload, token):
        with self._lock:
            self._repo(repo_id, token, write=True)
            if self.objects.get(payload["oid"]) != payload["size"]:
                raise HubError(404, f"LFS object {payload['oid']} not found")
        return _json(200, {})

    def _commit(self, repo_id, revision, body, token):
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        with self._lock:
            repo = self._repo(repo_id, token, write=True)
            if revision not in repo.branches:
                raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            head = repo.resolve(revision)
            if header.get("parentCommit") not in (None, head.oid):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(head.files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    data = base64.b64decode(value["content"])
                    files[value["path"]] = Blob(self._store(data), len(data), lfs=False)
                elif key == "lfsFile":
                    if self.objects.get(value["oid"]) != value["size"]:
                        raise HubError(422, f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = Blob(value["oid"], value["size"], lfs=True)
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, "A file with this name doesn't exist",
                                       "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                else:
                    raise HubError(400, f"unknown commit operation {key!r}")
            oid = self._new_commit(repo, revision, header["summary"],
                                   header.get("description", ""), files)
        return _json(200, {"success": True, "commitOid": oid, "pullRequestUrl": None,
                           "commitUrl": f"{self.url}/{repo_id}/commit/{oid}"})

    def _resolve(self, method, repo_id, revision, path, headers, token):
        with self._lock:
            repo = self._repo(repo_id, token)
            commit = self._commit_at(repo, revision)
            blob = commit.files.get(path)
            if blob is None:
                return _json(404, {"error": "Entry not found"},
                             {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit.oid})
            data = self.read(blob)
        out = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes",
               "ETag": f'"{self._file_oid(blob, data)}"'}
        if blob.lfs:
            out.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size)})
        status = 200
        match = re.fullmatch(r"bytes=(\d+)-", headers.get("Range", ""))
        if match:
            data, status = data[int(match.group(1)):], 206
        return status, {**out, "Content-Type": "application/octet-stream"}, data


def _json(status, payload, headers=None, content_type="application/json"):
    return status, {**(headers or {}), "Content-Type": content_type}, json.dumps(payload).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    hub = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if sum(map(len, chunks)) > MAX_BODY:
                    raise HubError(413, "request body too large")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise HubError(413, "request body too large")
        return self.rfile.read(length)

    def _serve(self):
        try:
            body = self._body() if self.command in ("POST", "PUT") else b""
            status, headers, data = self.hub.handle(self.command, self.path, self.headers, body)
        except HubError as e:
            self.close_connection = True
            status, headers, data = _json(e.status, {"error": e.message})
        except Exception as e:                  # a bug in the stand-in: say so to the client
            status, headers, data = _json(500, {"error": f"stand-in Hub crashed: {e!r}"})
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = _serve
