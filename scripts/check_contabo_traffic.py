#!/usr/bin/env python3
"""Checks recorded Contabo API traffic against Contabo's OpenAPI spec with openapi-core.

kiwi-infra's Contabo client, the Contabo mock and the project's own validator
(mocks/src/openapi/, `spec-proxy`) are written by the same hands: if they share a
misreading of the spec, the project's tests pass anyway. This script is the
independent check: a third-party OpenAPI 3.0 validator (the `openapi-core`
package, pinned in scripts/requirements-ci.txt) reads the spec and judges every
request and response that `spec-proxy --record FILE` (or `ProxyConfig::record`)
wrote, one JSON object per line.

Usage:
    check_contabo_traffic.py [--spec openapi.yaml] [--min-exchanges N] RECORDING...

The spec defaults to $KIWI_CONTABO_SPEC, else <repo>/../shared/contabo/openapi.yaml.

Output: one `violation:` line per problem (direction, method, path, operationId,
recording file and line, what broke), then a `checked ...` summary line.
Exit status: 0 when nothing broke the spec, 1 when something did (or fewer than
--min-exchanges exchanges were checked), 2 when the check could not run (missing
package, unreadable spec or recording, a line that is not a recorded exchange, a
stale spec correction).

What openapi-core decides: paths and methods, security (the bearer scheme), path,
query and header parameters (presence, style, schema), request bodies (media
type, schema) and responses (documented status, media type, schema, headers).

Checks this script adds, because openapi-core 0.23 lets them pass (see
tests/it/independent_spec_check.rs for a seeded recording of each):
  - a request body on an operation that defines no requestBody (openapi-core
    ignores the body then);
  - a query parameter the operation does not declare;
  - an `x-` header the operation does not declare (standard HTTP headers such as
    Accept or User-Agent are not parameters in OpenAPI and are not checked).

Rules the spec leaves open, decided as the project's own validator decides them:
  - the OAuth token endpoint is not in the spec's paths: it is skipped (and its
    recorded form holds no credential values anyway); so are the mock's `/_mock/`
    control paths;
  - the spec documents no 4xx/5xx responses, yet Contabo sends them (401, 404,
    409, 429, ...): an undocumented error status is counted and listed in the
    summary, not reported as a violation. An undocumented 1xx/2xx/3xx is.
  - one known defect of the spec is corrected before loading, see SPEC_QUIRKS.

Recorded values are already redacted by the proxy (the bearer token, the token
form, secret-looking JSON strings masked to the same length); nothing here
prints more than the recording holds, and long messages are shortened.
"""

import argparse
import base64
import datetime
import json
import os
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

try:
    import yaml
    from openapi_core import OpenAPI
    from openapi_core.templating.paths.exceptions import PathError
    from openapi_core.templating.paths.finders import APICallPathFinder
    from openapi_core.testing import MockRequest, MockResponse
    from openapi_core.validation.request.validators import (
        V30RequestBodyValidator,
        V30RequestParametersValidator,
        V30RequestSecurityValidator,
    )
    from openapi_core.validation.response.validators import V30ResponseValidator
except ImportError as missing:  # pragma: no cover - depends on the environment
    print(
        f"check_contabo_traffic: a Python package is missing ({missing}); install them with "
        "`python3 -m pip install -r scripts/requirements-ci.txt` (see .ci/run)",
        file=sys.stderr,
    )
    sys.exit(2)

EXIT_VIOLATIONS = 1
EXIT_UNUSABLE = 2

TOKEN_PATH = "/auth/realms/contabo/protocol/openid-connect/token"
MOCK_CONTROL_PREFIX = "/_mock/"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Longest message text printed for one problem; jsonschema quotes whole instances.
MAX_MESSAGE = 400

# The spec's one known defect, the instance's cancelDate, corrected as
# mocks/src/openapi/quirks.rs does (keep the two in step). `pattern: yyyy-mm-dd`
# is a placeholder, not a regular expression (as a regex it only matches strings
# that contain the literal text "yyyy-mm-dd"). Contabo sends "" for an instance
# that is not cancelled and a calendar date like 2026-12-31 for one that is, as
# the field's `minLength: 0` says. So:
#   - the pattern becomes "empty, or YYYY-MM-DD" (the same text as quirks.rs);
#   - `format: date` becomes `kiwi-date-or-empty`, checked by
#     date_or_empty(): "" or a real calendar date. openapi-core asserts
#     `format: date`, which refuses ""; the project's own validator asserts only
#     date-time formats, so quirks.rs needs no second entry for it.
# Each entry is (JSON pointer, what the spec says there, what is used instead);
# loading fails when the spec no longer says what an entry expects, so a fixed
# spec cannot drift past a stale correction. Nothing else is loosened.
CANCEL_DATE_PATTERN = "^$|^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
CANCEL_DATE_FORMAT = "kiwi-date-or-empty"
SPEC_QUIRKS = [
    (f"/components/schemas/{schema}/properties/cancelDate/{keyword}", says, instead)
    for schema in ("ListInstancesResponseData", "InstanceResponse")
    for keyword, says, instead in (
        ("pattern", "yyyy-mm-dd", CANCEL_DATE_PATTERN),
        ("format", "date", CANCEL_DATE_FORMAT),
    )
]


def date_or_empty(value):
    """The corrected cancelDate format: "" (not cancelled) or a calendar date."""
    if not isinstance(value, str) or value == "":
        return True
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


EXTRA_FORMATS = {CANCEL_DATE_FORMAT: date_or_empty}


class Unusable(Exception):
    """The check cannot run: bad spec, recording or environment."""


# YAML 1.1 turns `example: 2021-06-03` into a date object; the spec is JSON-shaped
# data, so timestamps stay strings (as the project's own YAML loader keeps them).
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SpecLoader(_BaseLoader):  # pylint: disable=too-many-ancestors
    """A safe YAML loader that leaves timestamps as strings."""


SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def default_spec_path():
    configured = os.environ.get("KIWI_CONTABO_SPEC")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "contabo" / "openapi.yaml"


def pointer_parts(pointer):
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]


def apply_quirks(document):
    for pointer, spec_says, used_instead in SPEC_QUIRKS:
        *parents, last = pointer_parts(pointer)
        node = document
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        found = node.get(last) if isinstance(node, dict) else None
        if found != spec_says:
            raise Unusable(
                f"spec correction at {pointer} is stale: it expects {spec_says!r} there but the "
                f"spec says {found!r}; review SPEC_QUIRKS in scripts/check_contabo_traffic.py "
                "and mocks/src/openapi/quirks.rs"
            )
        node[last] = used_instead


def load_spec(path):
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise Unusable(f"cannot read the Contabo OpenAPI spec at {path}: {error}") from error
    try:
        document = yaml.load(text, Loader=SpecLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise Unusable(f"the Contabo OpenAPI spec at {path} is not valid YAML: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise Unusable(f"the Contabo OpenAPI spec at {path} has no paths")
    apply_quirks(document)
    return document


class Checker:
    """Validates recorded exchanges against one spec."""

    def __init__(self, document):
        self.document = document
        try:
            self.openapi = OpenAPI.from_dict(document)
        except Exception as error:  # openapi-core's own spec validation
            raise Unusable(f"openapi-core refuses the spec: {error}") from error
        servers = document.get("servers") or [{"url": "https://api.contabo.com"}]
        self.host_url = servers[0]["url"].rstrip("/")
        spec = self.openapi.spec
        self.finder = APICallPathFinder(spec)
        self.request_validators = [
            V30RequestSecurityValidator(spec, extra_format_validators=EXTRA_FORMATS),
            V30RequestParametersValidator(spec, extra_format_validators=EXTRA_FORMATS),
            V30RequestBodyValidator(spec, extra_format_validators=EXTRA_FORMATS),
        ]
        self.response_validator = V30ResponseValidator(
            spec, extra_format_validators=EXTRA_FORMATS
        )
        self.violations = []
        self.exchanges = 0
        self.requests = 0
        self.responses = 0
        self.skipped = 0
        self.tolerated_errors = {}

    # -- the spec as plain data, for the checks openapi-core does not make --

    def resolve(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 16:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise Unusable(f"the spec has an external $ref {ref!r}, which is not supported")
            node = self.document
            for part in pointer_parts(ref[1:]):
                node = node.get(part) if isinstance(node, dict) else None
            seen += 1
        return node

    def operation_of(self, method, template):
        item = self.resolve(self.document["paths"][template])
        operation = self.resolve(item[method])
        params = {}
        for param in (item.get("parameters") or []) + (operation.get("parameters") or []):
            param = self.resolve(param)
            location, name = param.get("in"), param.get("name", "")
            # Header names compare case-insensitively; others exactly.
            key = (location, name.lower() if location == "header" else name)
            params[key] = param
        return operation, params

    # -- checking --

    def report(self, where, direction, exchange, operation_id, location, message):
        method = exchange["method"].upper()
        path = urlsplit(exchange["target"]).path
        operation = f" ({operation_id})" if operation_id else ""
        message = " ".join(str(message).split())
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " ...(shortened)"
        self.violations.append(
            f"violation: {direction} {method} {path}{operation} [{where}] at {location}: {message}"
        )

    def check(self, where, exchange):
        method = exchange["method"].lower()
        split = urlsplit(exchange["target"])
        path = split.path
        if path == TOKEN_PATH or path.startswith(MOCK_CONTROL_PREFIX):
            self.skipped += 1
            return
        self.exchanges += 1
        query = parse_qsl(split.query, keep_blank_values=True)
        headers = exchange["request_headers"]
        body = decode_body(exchange["request_body"])
        content_type = header(headers, "content-type") or ""
        request = MockRequest(
            self.host_url,
            method,
            path,
            args=query,
            headers=headers,
            data=body,
            content_type=content_type,
        )

        self.requests += 1
        try:
            found = self.finder.find(method, self.host_url + path)
        except PathError as error:
            self.report(where, "request", exchange, None, "path", describe(error))
            return
        template = found.path_result.pattern
        operation, params = self.operation_of(method, template)
        operation_id = operation.get("operationId")

        def request_problem(location, message):
            self.report(where, "request", exchange, operation_id, location, message)

        for validator in self.request_validators:
            for error in validator.iter_errors(request):
                request_problem(location_of(error), describe(error))
        # What openapi-core lets pass.
        if body and "requestBody" not in operation:
            request_problem(
                "body",
                f"the operation defines no request body, but one was sent ({len(body)} bytes)",
            )
        for name in dict.fromkeys(name for name, _ in query):
            if ("query", name) not in params:
                request_problem(f"query:{name}", f"query parameter `{name}` is not declared")
        for name in dict.fromkeys(name.lower() for name, _ in headers):
            if name.startswith("x-") and ("header", name) not in params:
                request_problem(f"header:{name}", f"header `{name}` is not declared")

        status = exchange.get("status")
        if status is None:
            return  # the upstream never answered; the client saw its connection closed
        self.responses += 1
        if status >= 400 and not documented(operation, status):
            key = f"{status} {method.upper()} {template}"
            self.tolerated_errors[key] = self.tolerated_errors.get(key, 0) + 1
            return
        response_headers = exchange.get("response_headers") or []
        response = MockResponse(
            decode_body(exchange.get("response_body")),
            status_code=status,
            headers=response_headers,
            content_type=header(response_headers, "content-type") or "",
        )
        for error in self.response_validator.iter_errors(request, response):
            self.report(where, "response", exchange, operation_id, location_of(error), describe(error))


def documented(operation, status):
    responses = operation.get("responses") or {}
    family = f"{status // 100}XX"
    return any(key in responses for key in (str(status), family, family.lower(), "default"))


def header(headers, name):
    for candidate, value in headers:
        if candidate.lower() == name:
            return value
    return None


def decode_body(body):
    if body is None:
        return b""
    if "text" in body:
        return body["text"].encode("utf-8")
    return base64.b64decode(body["base64"], validate=True)


def location_of(error):
    """Where an openapi-core error points: the parameter, the body, the status, ..."""
    name = getattr(error, "name", None)
    location = getattr(error, "location", None)
    if name and location:
        return f"{location}:{name}"
    kind = type(error).__name__
    if "Body" in kind or "Data" in kind:
        return "body"
    if "Security" in kind:
        return "security"
    if "Header" in kind:
        return "header"
    if "Response" in kind:
        return "status"
    return kind


def describe(error):
    """The error and the schema errors behind it, as one line."""
    schema_errors, others = [], []
    cause, depth = error.__cause__, 0
    while cause is not None and depth < 8:
        for schema_error in getattr(cause, "schema_errors", None) or []:
            at = "/".join(str(step) for step in schema_error.absolute_path)
            schema_errors.append(f"at /{at}: {schema_error.message}")
        if not getattr(cause, "schema_errors", None) and str(cause):
            others.append(str(cause))
        cause, depth = cause.__cause__, depth + 1
    if schema_errors:
        # The error's own text repeats the whole offending value; the schema errors say where.
        return "; ".join([type(error).__name__] + schema_errors)
    parts = [str(error) or type(error).__name__]
    parts += [text for text in others if not any(text in part for part in parts)]
    return "; ".join(parts)


def read_exchanges(path):
    """Yields (where, exchange) for each line of a recording."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as error:
        raise Unusable(f"cannot read the recording {path}: {error}") from error
    with handle:
        for number, line in enumerate(handle, start=1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                exchange = json.loads(line)
                valid = (
                    isinstance(exchange, dict)
                    and isinstance(exchange.get("method"), str)
                    and isinstance(exchange.get("target"), str)
                    and exchange["target"].startswith("/")
                    and isinstance(exchange.get("request_headers"), list)
                    and all(
                        isinstance(pair, list)
                        and len(pair) == 2
                        and all(isinstance(part, str) for part in pair)
                        for pair in exchange["request_headers"] + (exchange.get("response_headers") or [])
                    )
                    and (exchange.get("status") is None or isinstance(exchange["status"], int))
                    and all(
                        body is None
                        or (isinstance(body, dict) and len(body) == 1 and isinstance(next(iter(body.values())), str)
                            and next(iter(body)) in ("text", "base64"))
                        for body in (exchange.get("request_body"), exchange.get("response_body"))
                    )
                )
            except (ValueError, AttributeError) as error:
                raise Unusable(f"{where}: not a JSON line ({error})") from error
            if not valid:
                raise Unusable(
                    f"{where}: not a recorded exchange (expected an object with method, target, "
                    "request_headers as [name, value] pairs, status, and bodies as "
                    '{"text": ...} or {"base64": ...})'
                )
            yield where, exchange


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("recordings", nargs="+", type=Path, help="JSON-lines traffic recordings")
    parser.add_argument("--spec", type=Path, default=None, help="the Contabo OpenAPI spec")
    parser.add_argument(
        "--min-exchanges",
        type=int,
        default=1,
        help="fail when fewer exchanges than this were checked (default 1: an empty recording fails)",
    )
    args = parser.parse_args(argv)
    spec_path = args.spec or default_spec_path()
    try:
        checker = Checker(load_spec(spec_path))
        for recording in args.recordings:
            for where, exchange in read_exchanges(recording):
                try:
                    checker.check(where, exchange)
                except (ValueError, KeyError, TypeError) as error:
                    raise Unusable(f"{where}: cannot check this exchange: {error!r}") from error
    except Unusable as error:
        print(f"check_contabo_traffic: {error}", file=sys.stderr)
        return EXIT_UNUSABLE

    for line in checker.violations:
        print(line)
    for key, count in sorted(checker.tolerated_errors.items()):
        print(f"tolerated: {count} x undocumented error status {key} (the spec documents no 4xx/5xx)")
    print(
        f"checked {checker.exchanges} exchanges ({checker.requests} requests, "
        f"{checker.responses} responses) against {spec_path} with openapi-core; "
        f"skipped {checker.skipped} (token endpoint, mock control); "
        f"{len(checker.violations)} violations"
    )
    if checker.violations:
        return EXIT_VIOLATIONS
    if checker.exchanges < args.min_exchanges:
        print(
            f"check_contabo_traffic: only {checker.exchanges} exchanges checked, "
            f"expected at least {args.min_exchanges}",
            file=sys.stderr,
        )
        return EXIT_VIOLATIONS
    return 0


if __name__ == "__main__":
    sys.exit(main())
