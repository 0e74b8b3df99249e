"""A loopback Grafana HTTP API that checks every request against Grafana's contract.

No Grafana server can run here, so the publisher is tested against this small
threaded server. It keeps real state (folders, dashboards and their versions,
ids, version numbers) and answers like Grafana 11: 404 for unknown uids, 401
without the right credentials, 409 for folder clashes, 412 when a save without
``overwrite`` carries a stale version.

Every request is first checked against Grafana's Swagger 2.0 contract
(``../shared/grafana/openapi/``): the method and path must be an operation of
the contract, query parameters must be declared and well typed, and a body
must validate against a *strict* copy of the definitions, where
``additionalProperties: false`` is added wherever ``properties`` exist, so a
mistyped key such as ``folderUID`` is caught (Grafana itself would silently
ignore it). Null-valued keys are dropped first, as Go's JSON decoder ignores
them. The dashboard inside a save is checked against the foundation SDK's
dashboard schema (Draft 7). A request that breaks the contract is answered 400
and recorded in :attr:`GrafanaApiServer.violations`; the server's own answers
are checked against the (non-strict) contract too and recorded in
:attr:`GrafanaApiServer.answer_violations`, so the emulation stays honest.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jsonschema import Draft4Validator, Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.conftest import SHARED as SHARED_DIR

SHARED = SHARED_DIR / "grafana"
SPEC_FILE = SHARED / "openapi" / "grafana-11.4.0-api-merged.swagger2.json"
DASHBOARD_SCHEMA_FILE = SHARED / "schemas" / "foundation-sdk-main" / "dashboard.jsonschema.json"
STRICT_URN = "urn:grafana-api:strict"
LOOSE_URN = "urn:grafana-api:loose"
UID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")

Json = dict[str, Any]


# ---------------------------------------------------------------- the contract


def drop_nulls(value: Any) -> Any:
    """The value without null-valued object keys, at every depth."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def strict_copy(node: Any) -> Any:
    """A copy of a schema tree refusing unknown keys wherever ``properties`` are listed."""
    if isinstance(node, list):
        return [strict_copy(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: strict_copy(sub) for name, sub in value.items()}
        else:
            out[key] = strict_copy(value)
    if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


def pointer(*parts: str | int) -> str:
    """A JSON pointer to ``parts`` (escaping ``~`` and ``/``)."""
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass(frozen=True)
class Operation:
    """One operation of the contract: where it lives in the spec and how to match it."""

    method: str
    template: str
    regex: re.Pattern[str]
    names: tuple[str, ...]
    spec: Json

    @property
    def parameters(self) -> list[Json]:
        """The operation's declared parameters."""
        params: list[Json] = self.spec.get("parameters", [])
        return params


def _compile(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A regex matching a path template such as ``/folders/{folder_uid}``."""
    names = tuple(re.findall(r"\{([^}]+)\}", template))
    pattern = re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template))
    return re.compile(f"^{pattern}$"), names


def _scalar_ok(value: str, param: Json) -> bool:
    """True when a query or path string fits the parameter's declared type and enum."""
    kind = param.get("type", "string")
    if "enum" in param and value not in [str(v) for v in param["enum"]]:
        return False
    if kind == "integer":
        return re.fullmatch(r"-?\d+", value) is not None
    if kind == "number":
        return re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value) is not None
    if kind == "boolean":
        return value in ("true", "false")
    return True


class Contract:
    """Grafana's HTTP API contract, with a strict copy for request bodies."""

    def __init__(self, spec_file: Path = SPEC_FILE, dashboard_file: Path = DASHBOARD_SCHEMA_FILE):
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
        self.base: str = spec["basePath"]
        self.consumes: list[str] = spec.get("consumes", ["application/json"])
        self.registry: Registry[Any] = Registry().with_resources(
            [
                (STRICT_URN, Resource.from_contents(strict_copy(spec), DRAFT4)),
                (LOOSE_URN, Resource.from_contents(spec, DRAFT4)),
            ]
        )
        self.responses: Json = spec.get("responses", {})
        ops = [
            Operation(method.upper(), template, *_compile(template), op)
            for template, item in spec["paths"].items()
            for method, op in item.items()
        ]
        # Literal segments win over parameters: /folders/id/{id} before /folders/{uid}.
        self.operations = sorted(ops, key=lambda o: (len(o.names), o.template))
        dashboard_schema = json.loads(dashboard_file.read_text(encoding="utf-8"))
        self.dashboard = Draft7Validator(dashboard_schema)

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation serving ``method path`` (path under the base path), and its values."""
        for op in self.operations:
            if op.method != method:
                continue
            found = op.regex.match(path)
            if found:
                return op, dict(zip(op.names, found.groups(), strict=True))
        return None

    def validator(self, urn: str, *where: str | int) -> Draft4Validator:
        """A Draft 4 validator for the schema at ``where`` in the strict or loose spec."""
        return Draft4Validator({"$ref": f"{urn}#{pointer(*where)}"}, registry=self.registry)

    def body_errors(self, op: Operation, body: Any) -> list[str]:
        """Why a decoded request body breaks the strict contract of ``op`` (empty: it fits)."""
        for i, param in enumerate(op.parameters):
            if param.get("in") == "body":
                where = ("paths", op.template, op.method.lower(), "parameters", i, "schema")
                check = self.validator(STRICT_URN, *where)
                return [
                    f"body{_where(e.absolute_path)}: {e.message}"
                    for e in check.iter_errors(drop_nulls(body))
                ]
        return ["the operation takes no body"]

    def check_request(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[Operation | None, list[str]]:
        """The matching operation and every way this request breaks the contract."""
        parts = urlsplit(target)
        if not parts.path.startswith(self.base + "/"):
            return None, [f"{method} {parts.path}: outside the API base path {self.base}"]
        found = self.match(method, parts.path[len(self.base) :])
        if found is None:
            return None, [f"{method} {parts.path}: no such operation in Grafana's API contract"]
        op, values = found
        label = f"{method} {op.template}"
        problems = [f"{label}: {p}" for p in self._parameter_errors(op, values, parts.query)]
        if not _header(headers, "authorization"):
            problems.append(f"{label}: no Authorization header (the contract needs basic or token)")
        problems += [f"{label}: {p}" for p in self._body_problems(op, headers, raw)]
        return op, problems

    def _parameter_errors(self, op: Operation, values: dict[str, str], query: str) -> list[str]:
        """Undeclared, missing or mistyped path and query parameters."""
        declared = {p["name"]: p for p in op.parameters if p.get("in") == "query"}
        given = parse_qs(query, keep_blank_values=True)
        problems = [
            f"query parameter {k!r} is not in the contract" for k in given if k not in declared
        ]
        for name, param in declared.items():
            if param.get("required") and name not in given:
                problems.append(f"query parameter {name!r} is required")
            each = param.get("items", param) if param.get("type") == "array" else param
            wrong = [v for v in given.get(name, []) if not _scalar_ok(v, each)]
            problems += [f"query parameter {name}={v!r} is not a {each.get('type')}" for v in wrong]
        for param in op.parameters:
            if param.get("in") == "path" and not _scalar_ok(values[param["name"]], param):
                problems.append(f"path parameter {param['name']} is not a {param.get('type')}")
        return problems

    def _body_problems(self, op: Operation, headers: dict[str, str], raw: bytes) -> list[str]:
        """A missing, undecodable or invalid body, or one the operation does not take."""
        takes = [p for p in op.parameters if p.get("in") == "body"]
        if not raw:
            return ["the body is required"] if takes and takes[0].get("required") else []
        if not takes:
            return ["sends a body the operation does not take"]
        kind = _header(headers, "content-type").split(";")[0].strip()
        if kind not in self.consumes:
            return [f"content type {kind!r} is not one of {self.consumes}"]
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return [f"the body is not JSON ({exc})"]
        problems = self.body_errors(op, body)
        if op.spec.get("operationId") == "postDashboard" and isinstance(body, dict):
            problems += self.dashboard_errors(body.get("dashboard"))
        return problems

    def dashboard_errors(self, dashboard: Any) -> list[str]:
        """Why the dashboard model breaks the SDK's dashboard schema (Draft 7)."""
        return [
            f"dashboard{_where(e.absolute_path)}: {e.message}"
            for e in self.dashboard.iter_errors(dashboard)
        ]

    def check_answer(self, op: Operation, status: int, body: Any) -> list[str]:
        """Every way an answer breaks the (non-strict) contract of ``op``."""
        label = f"{op.method} {op.template} answered {status}"
        answer = op.spec.get("responses", {}).get(str(status))
        if answer is None:
            return [f"{label}: status not in the contract"]
        if "$ref" in answer:
            name = answer["$ref"].rsplit("/", 1)[-1]
            where: tuple[str | int, ...] = ("responses", name, "schema")
            has_schema = "schema" in self.responses.get(name, {})
        else:
            where = ("paths", op.template, op.method.lower(), "responses", str(status), "schema")
            has_schema = "schema" in answer
        if not has_schema:
            return []
        check = self.validator(LOOSE_URN, *where)
        return [f"{label}{_where(e.absolute_path)}: {e.message}" for e in check.iter_errors(body)]


def _where(path: Any) -> str:
    """``.a.b[2]`` for a jsonschema error path."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _header(headers: dict[str, str], name: str) -> str:
    """A request header, case-insensitively; empty when absent."""
    return next((v for k, v in headers.items() if k.lower() == name), "")


@functools.cache
def load_contract() -> Contract:
    """The contract, loaded once per test session."""
    return Contract()


# ---------------------------------------------------------------- Grafana's state


@dataclass
class StoredBoard:
    """A dashboard as Grafana keeps it: the model, its folder and its version history."""

    id: int
    dashboard: Json
    folder_uid: str
    created: str
    versions: list[Json] = field(default_factory=list)
    provisioned: bool = False

    @property
    def version(self) -> int:
        """The current version number."""
        return int(self.dashboard["version"])


class Answer(Exception):
    """An HTTP answer raised from deep inside a handler."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(status)


def now() -> str:
    """An RFC 3339 timestamp, as Grafana writes them."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slug(title: str) -> str:
    """Grafana's URL slug of a title."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "-"


def error(status: int, message: str, kind: str = "") -> Answer:
    """Grafana's error answer."""
    body = {"message": message, **({"status": kind} if kind else {})}
    return Answer(status, body)


class Grafana:
    """Folders and dashboards of one Grafana organisation, modelled on Grafana 11."""

    def __init__(self) -> None:
        self.folders: dict[str, Json] = {}
        self.boards: dict[str, StoredBoard] = {}
        self.reject: dict[str, Answer] = {}
        self._ids = iter(range(1, 1_000_000))

    def folder_list(self) -> list[Json]:
        """GET /api/folders."""
        return [
            {"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in self.folders.values()
        ]

    def folder(self, uid: str) -> Json:
        """GET /api/folders/{uid}."""
        if uid not in self.folders:
            raise error(404, "folder not found", "not-found")
        return self.folders[uid]

    def create_folder(self, cmd: Json) -> Json:
        """POST /api/folders."""
        uid = cmd.get("uid") or f"f{next(self._ids)}"
        title = str(cmd.get("title", "")).strip()
        if not title:
            raise error(400, "folder title cannot be empty")
        if not UID_PATTERN.match(uid):
            raise error(400, "uid contains illegal characters")
        if uid in self.folders or uid in self.boards:
            raise error(409, "a dashboard or folder with the same uid already exists")
        self._title_free(title, uid)
        stamp = now()
        folder = {
            "id": next(self._ids),
            "uid": uid,
            "orgId": 1,
            "title": title,
            "url": f"/dashboards/f/{uid}/{slug(title)}",
            "hasAcl": False,
            "canSave": True,
            "canEdit": True,
            "canAdmin": True,
            "canDelete": True,
            "createdBy": "admin",
            "created": stamp,
            "updatedBy": "admin",
            "updated": stamp,
            "version": 1,
        }
        self.folders[uid] = folder
        return folder

    def update_folder(self, uid: str, cmd: Json) -> Json:
        """PUT /api/folders/{uid}."""
        folder = self.folder(uid)
        if not cmd.get("overwrite") and cmd.get("version", folder["version"]) != folder["version"]:
            raise error(409, "the folder has been changed by someone else", "version-mismatch")
        if "title" in cmd:
            self._title_free(cmd["title"], uid)
            folder["title"] = cmd["title"]
            folder["url"] = f"/dashboards/f/{uid}/{slug(cmd['title'])}"
        folder["version"] += 1
        folder["updated"] = now()
        return folder

    def _title_free(self, title: str, uid: str) -> None:
        """Refuse a title another folder already has."""
        if any(f["title"] == title and f["uid"] != uid for f in self.folders.values()):
            raise error(409, "a folder with the same name already exists", "name-exists")

    def save(self, cmd: Json) -> Json:
        """POST /api/dashboards/db: create or update, keeping the version history."""
        dash = dict(cmd.get("dashboard") or {})
        folder_uid = cmd.get("folderUid", "")
        overwrite = bool(cmd.get("overwrite"))
        if folder_uid and folder_uid not in self.folders:
            raise error(400, "folder not found", "not-found")
        title = str(dash.get("title", "")).strip()
        if not title:
            raise error(400, "Dashboard title cannot be empty", "empty-name")
        uid = dash.get("uid") or f"d{next(self._ids)}"
        if not UID_PATTERN.match(uid):
            raise error(400, "uid contains illegal characters")
        if uid in self.reject:
            raise self.reject[uid]
        if uid in self.folders:
            raise error(400, "a folder with this uid already exists")
        stored = self.boards.get(uid)
        if stored and stored.provisioned:
            raise error(400, "Cannot save provisioned dashboard", "provisioned")
        if stored and not overwrite and dash.get("version") != stored.version:
            raise error(412, "The dashboard has been changed by someone else", "version-mismatch")
        twin = next(
            (
                b
                for b in self.boards.values()
                if b.dashboard["title"] == title and b.folder_uid == folder_uid and b is not stored
            ),
            None,
        )
        if twin and not overwrite:
            raise error(
                412, "A dashboard with the same name in the folder already exists", "name-exists"
            )
        return self._store(uid, dash, folder_uid, str(cmd.get("message", "")), stored)

    def _store(
        self, uid: str, dash: Json, folder_uid: str, message: str, stored: StoredBoard | None
    ) -> Json:
        """Keep a new version of the board and answer like Grafana does."""
        version = stored.version + 1 if stored else 1
        board_id = stored.id if stored else next(self._ids)
        stamp = now()
        model = {**dash, "id": board_id, "uid": uid, "version": version}
        if stored is None:
            stored = StoredBoard(board_id, model, folder_uid, stamp)
            self.boards[uid] = stored
        stored.dashboard, stored.folder_uid = model, folder_uid
        stored.versions.append(
            {
                "id": next(self._ids),
                "dashboardId": board_id,
                "uid": uid,
                "parentVersion": version - 1,
                "restoredFrom": 0,
                "version": version,
                "created": stamp,
                "createdBy": "admin",
                "message": message,
            }
        )
        name = slug(model["title"])
        return {
            "id": board_id,
            "uid": uid,
            "url": f"/d/{uid}/{name}",
            "status": "success",
            "version": version,
            "title": name,
            "slug": name,
            "folderUid": folder_uid,
        }

    def board(self, uid: str) -> Json:
        """GET /api/dashboards/uid/{uid}."""
        stored = self.boards.get(uid)
        if stored is None:
            raise error(404, "Dashboard not found", "not-found")
        folder = self.folders.get(stored.folder_uid, {})
        name = slug(stored.dashboard["title"])
        return {
            "dashboard": stored.dashboard,
            "meta": {
                "type": "db",
                "canSave": True,
                "canEdit": True,
                "canAdmin": True,
                "canStar": True,
                "canDelete": True,
                "slug": name,
                "url": f"/d/{uid}/{name}",
                "expires": "0001-01-01T00:00:00Z",
                "created": stored.created,
                "updated": stored.versions[-1]["created"],
                "updatedBy": "admin",
                "createdBy": "admin",
                "version": stored.version,
                "hasAcl": False,
                "isFolder": False,
                "folderId": folder.get("id", 0),
                "folderUid": stored.folder_uid,
                "folderTitle": folder.get("title", "General"),
                "folderUrl": folder.get("url", ""),
                "provisioned": stored.provisioned,
                "provisionedExternalId": f"{uid}.json" if stored.provisioned else "",
            },
        }

    def versions(self, uid: str) -> list[Json]:
        """GET /api/dashboards/uid/{uid}/versions: newest first."""
        if uid not in self.boards:
            raise error(404, "Dashboard not found", "not-found")
        return list(reversed(self.boards[uid].versions))


# ---------------------------------------------------------------- the HTTP server


class GrafanaApiServer:
    """The loopback Grafana: ``with GrafanaApiServer(token="t") as grafana: grafana.url``."""

    def __init__(
        self,
        token: str = "campus-test-token",
        *,
        basic: tuple[str, str] | None = None,
        viewer_token: str | None = None,
    ) -> None:
        self.contract = load_contract()
        self.grafana = Grafana()
        self.credentials = {f"Bearer {token}"}
        # A Viewer's token: it may read, every write is 403 as in Grafana's RBAC.
        self.viewers = {f"Bearer {viewer_token}"} if viewer_token else set()
        if basic:
            pair = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            self.credentials.add(f"Basic {pair}")
        self.violations: list[str] = []
        self.answer_violations: list[str] = []
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.api = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """The server's base URL (Grafana's root, not /api)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> GrafanaApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        """Check one request, then answer it from the state."""
        with self.lock:
            self.requests.append(f"{method} {urlsplit(target).path}")
            op, problems = self.contract.check_request(method, target, headers, raw)
            if problems:
                self.violations.extend(problems)
                return error(400, "; ".join(problems), "bad-request")
            assert op is not None
            try:
                who = _header(headers, "authorization")
                if who not in self.credentials | self.viewers:
                    raise error(401, "Invalid API key", "unauthorized")
                if who in self.viewers and method != "GET":
                    raise error(403, "You'll need additional permissions to perform this action.")
                answer = Answer(200, self._route(op, target, raw))
            except Answer as exc:
                answer = exc
            self.answer_violations.extend(
                self.contract.check_answer(op, answer.status, answer.body)
            )
            return answer

    def _route(self, op: Operation, target: str, raw: bytes) -> Any:
        """Call the state's method for this operation."""
        path = urlsplit(target).path[len(self.contract.base) :]
        values = dict(zip(op.names, op.regex.match(path).groups(), strict=True))  # type: ignore[union-attr]
        body = json.loads(raw) if raw else {}
        g = self.grafana
        routes: dict[str, Any] = {
            "getFolders": lambda: g.folder_list(),
            "createFolder": lambda: g.create_folder(body),
            "getFolderByUID": lambda: g.folder(values["folder_uid"]),
            "updateFolder": lambda: g.update_folder(values["folder_uid"], body),
            "postDashboard": lambda: g.save(body),
            "getDashboardByUID": lambda: g.board(values["uid"]),
            "getDashboardVersionsByUID": lambda: g.versions(values["uid"]),
        }
        run = routes.get(op.spec.get("operationId", ""))
        if run is None:
            self.violations.append(f"{op.method} {op.template}: in the contract but not emulated")
            raise error(500, "not emulated")
        return run()


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the GrafanaApiServer and writes its JSON answer."""

    server_version = "Grafana-loopback"

    def _serve(self) -> None:
        api: GrafanaApiServer = self.server.api  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        answer = api.handle(self.command, self.path, dict(self.headers.items()), raw)
        data = json.dumps(answer.body).encode()
        self.send_response(answer.status, HTTPStatus(answer.status).phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read :attr:`GrafanaApiServer.requests` instead."""
