//! The loaded spec: an index of operations, and the request/response checks.
//!
//! Schemas are converted once at load time and compiled on first use, each into its own cached
//! validator, because a proxy checks thousands of messages against the same few dozen schemas.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::{Map, Value};

use super::paths::{best_match, PathTemplate};
use super::quirks::{apply_quirks, SPEC_QUIRKS};
use super::schema::{compile, convert, describe, escape_pointer, COMPONENT_SCHEMA_PREFIX};
use super::{
    header_value, is_json_media_type, media_essence, token, Direction, RequestParts, SpecError,
    Violation, TOKEN_PATH,
};

/// Environment variable that overrides where [`Spec::load_default`] finds the spec.
pub const SPEC_ENV_VAR: &str = "KIWI_CONTABO_SPEC";

/// Paths the mock uses for its own control API.
const MOCK_CONTROL_PREFIX: &str = "/_mock/";

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A validator compiled on first use; a schema that does not compile keeps its error.
type LazyValidator = OnceLock<Result<Validator, String>>;

/// Contabo's API as the spec describes it, ready to check traffic.
#[derive(Debug)]
pub struct Spec {
    source: String,
    /// Converted `#/components` (only `schemas` matters), the root every `$ref` resolves against.
    components: Value,
    paths: Vec<PathItem>,
    operations: Vec<Operation>,
}

#[derive(Debug)]
struct PathItem {
    template: PathTemplate,
    /// Indexes into `Spec::operations`.
    operations: Vec<usize>,
}

#[derive(Debug)]
struct Operation {
    method: String,
    template: String,
    id: Option<String>,
    requires_bearer: bool,
    params: Vec<Parameter>,
    body: Option<RequestBody>,
    /// Status key as the spec writes it (`200`, `2XX`, `default`).
    responses: BTreeMap<String, Vec<Media>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamIn {
    Path,
    Query,
    Header,
    Cookie,
}

#[derive(Debug)]
struct Parameter {
    name: String,
    location: ParamIn,
    required: bool,
    /// `explode: false` on an array means comma-separated values.
    explode: bool,
    /// The JSON type strings are coerced to (`integer`, `array`, ...).
    kind: Option<String>,
    /// For arrays, the type of the items.
    item_kind: Option<String>,
    schema: Value,
    validator: LazyValidator,
}

#[derive(Debug)]
struct RequestBody {
    required: bool,
    media: Vec<Media>,
}

#[derive(Debug)]
struct Media {
    media_type: String,
    schema: Option<Value>,
    validator: LazyValidator,
}

/// A summary of one operation, for callers that want to list what the spec covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationInfo {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path template as written in the spec.
    pub path_template: String,
    /// The spec's `operationId`.
    pub operation_id: Option<String>,
    /// Documented status codes (as the spec writes them).
    pub statuses: Vec<String>,
}

/// Reads the spec as a plain JSON value, *without* the corrections in [`SPEC_QUIRKS`].
pub fn load_document(path: &Path) -> Result<Value, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_norway::from_str(&text).map_err(|source| SpecError::Parse {
        path: path.to_owned(),
        source,
    })
}

impl Spec {
    /// Where the spec is expected: `$KIWI_CONTABO_SPEC`, else `<workspace>/../shared/contabo/openapi.yaml`.
    pub fn default_path() -> PathBuf {
        match std::env::var_os(SPEC_ENV_VAR) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("..")
                .join("shared")
                .join("contabo")
                .join("openapi.yaml"),
        }
    }

    /// Loads the spec from [`Spec::default_path`].
    pub fn load_default() -> Result<Self, SpecError> {
        Self::load(&Self::default_path())
    }

    /// Loads and indexes the spec at `path`, applying [`SPEC_QUIRKS`].
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let document = load_document(path)?;
        Self::from_document(document, &path.display().to_string())
    }

    /// Indexes an already parsed spec document, applying [`SPEC_QUIRKS`]; `source` names it in
    /// messages.
    pub fn from_document(mut document: Value, source: &str) -> Result<Self, SpecError> {
        apply_quirks(&mut document, SPEC_QUIRKS)?;
        let components = convert_components(&document)?;
        let mut spec = Self {
            source: source.to_owned(),
            components,
            paths: Vec::new(),
            operations: Vec::new(),
        };
        let bearer_schemes = bearer_schemes(&document);
        let global_security = document.get("security").cloned();
        let Some(paths) = document.get("paths").and_then(Value::as_object) else {
            return Err(invalid("/paths", "the spec has no paths"));
        };
        for (template, item) in paths {
            let at = format!("/paths/{}", escape_pointer(template));
            let parsed = PathTemplate::parse(template);
            let mut indexes = Vec::new();
            for method in METHODS {
                let Some(operation) = item.get(*method) else {
                    continue;
                };
                let security = operation.get("security").or(global_security.as_ref());
                let built = spec.build_operation(
                    template,
                    method,
                    item,
                    operation,
                    &format!("{at}/{method}"),
                    requires_bearer(security, &bearer_schemes),
                )?;
                indexes.push(spec.operations.len());
                spec.operations.push(built);
            }
            spec.paths.push(PathItem {
                template: parsed,
                operations: indexes,
            });
        }
        Ok(spec)
    }

    /// Where this spec was loaded from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every operation in the spec.
    pub fn operations(&self) -> Vec<OperationInfo> {
        self.operations
            .iter()
            .map(|operation| OperationInfo {
                method: operation.method.clone(),
                path_template: operation.template.clone(),
                operation_id: operation.id.clone(),
                statuses: operation.responses.keys().cloned().collect(),
            })
            .collect()
    }

    /// The `operationId` a request with this method and path (no query) would reach.
    pub fn operation_id(&self, method: &str, path: &str) -> Option<&str> {
        self.find(method, path)
            .ok()
            .and_then(|(operation, _)| operation.id.as_deref())
    }

    /// Compiles every schema now instead of on first use; returns how many there are. Fails with
    /// the first schema that does not compile.
    pub fn compile_all(&self) -> Result<usize, SpecError> {
        let mut count = 0;
        for operation in &self.operations {
            let bodies = operation.body.iter().flat_map(|body| body.media.iter());
            let responses = operation.responses.values().flatten();
            for media in bodies.chain(responses) {
                if let Some(schema) = &media.schema {
                    self.validator(&media.validator, schema)
                        .map_err(|message| invalid(&operation.template, &message))?;
                    count += 1;
                }
            }
            for param in &operation.params {
                self.validator(&param.validator, &param.schema)
                    .map_err(|message| invalid(&operation.template, &message))?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Checks a request against the spec.
    pub fn validate_request(&self, request: &RequestParts) -> Vec<Violation> {
        if request.path.starts_with(MOCK_CONTROL_PREFIX) {
            return Vec::new();
        }
        if request.path == TOKEN_PATH {
            return token::validate_request(request);
        }
        let method = request.method.to_ascii_uppercase();
        let mut report = Reporter::new(Direction::Request, &method, &request.path);
        let (operation, path_params) = match self.find(&method, &request.path) {
            Ok(found) => found,
            Err(problem) => {
                report.add(problem.location(), problem.message(&method, &request.path));
                return report.found;
            }
        };
        report.operation_id = operation.id.clone();

        for param in operation
            .params
            .iter()
            .filter(|p| p.location == ParamIn::Path)
        {
            let value = path_params
                .iter()
                .find(|(name, _)| *name == param.name)
                .map(|(_, value)| value.as_str());
            self.check_param(param, value.into_iter().collect(), &mut report);
        }
        for param in operation
            .params
            .iter()
            .filter(|p| p.location == ParamIn::Header)
        {
            let values: Vec<&str> = request
                .headers
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(&param.name))
                .map(|(_, value)| value.as_str())
                .collect();
            self.check_param(param, values, &mut report);
        }
        check_extension_headers(operation, &request.headers, &mut report);
        self.check_query(operation, &request.query, &mut report);
        if operation.requires_bearer {
            check_bearer(request.header("authorization"), &mut report);
        }
        self.check_request_body(operation, request, &mut report);
        report.found
    }

    /// Checks a response whose body is given as raw bytes: a non-empty body must be JSON (for
    /// every status, errors included), then [`Spec::validate_response`] applies.
    pub fn validate_response_bytes(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Vec<Violation> {
        if path.starts_with(MOCK_CONTROL_PREFIX) {
            return Vec::new();
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return self.validate_response(method, path, status, headers, None);
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(parsed) => self.validate_response(method, path, status, headers, Some(&parsed)),
            Err(error) => {
                let method = method.to_ascii_uppercase();
                let mut report = Reporter::new(Direction::Response, &method, path);
                report.operation_id = self.operation_id(&method, path).map(str::to_owned);
                report.add(
                    "body:",
                    format!(
                        "the {status} response body ({} bytes) is not JSON: {error}",
                        body.len()
                    ),
                );
                report.found
            }
        }
    }

    /// Checks a response to `method path` (no query). A documented status must carry the
    /// documented body; an undocumented 1xx/2xx/3xx is a violation; 4xx/5xx are allowed because
    /// the spec documents none (their body, if any, must be JSON: see
    /// [`Spec::validate_response_bytes`]).
    pub fn validate_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &[(String, String)],
        body: Option<&Value>,
    ) -> Vec<Violation> {
        if path.starts_with(MOCK_CONTROL_PREFIX) {
            return Vec::new();
        }
        if path == TOKEN_PATH {
            return token::validate_response(method, status, headers, body);
        }
        let method = method.to_ascii_uppercase();
        let mut report = Reporter::new(Direction::Response, &method, path);
        let is_error = (400..600).contains(&status);
        let operation = match self.find(&method, path) {
            Ok((operation, _)) => operation,
            Err(problem) => {
                if !is_error {
                    report.add(
                        "status",
                        format!(
                            "a {status} answer to a request the spec has no operation for ({})",
                            problem.message(&method, path)
                        ),
                    );
                }
                return report.found;
            }
        };
        report.operation_id = operation.id.clone();
        let Some(media) = documented_response(operation, status) else {
            if !is_error {
                let documented: Vec<&str> =
                    operation.responses.keys().map(String::as_str).collect();
                report.add(
                    "status",
                    format!(
                        "status {status} is not documented (documented: {})",
                        documented.join(", ")
                    ),
                );
            }
            return report.found;
        };
        self.check_response_body(media, headers, body, status, &mut report);
        report.found
    }

    fn check_response_body(
        &self,
        media: &[Media],
        headers: &[(String, String)],
        body: Option<&Value>,
        status: u16,
        report: &mut Reporter,
    ) {
        let Some(expected) = media
            .iter()
            .find(|m| m.media_type == "application/json")
            .or(media.first())
        else {
            if body.is_some() {
                report.add(
                    "body:",
                    format!("status {status} is documented without a body, but one was sent"),
                );
            }
            return;
        };
        let content_type = header_value(headers, "content-type");
        if content_type.is_none_or(|value| media_essence(value) != expected.media_type) {
            report.add(
                "header:content-type",
                format!(
                    "expected {}, got {}",
                    expected.media_type,
                    content_type.unwrap_or("no Content-Type")
                ),
            );
        }
        let Some(schema) = &expected.schema else {
            return;
        };
        match body {
            None => report.add(
                "body:",
                format!("status {status} is documented with a JSON body, but none was sent"),
            ),
            Some(body) => self.check_schema(&expected.validator, schema, body, "body:", report),
        }
    }

    fn build_operation(
        &self,
        template: &str,
        method: &str,
        item: &Value,
        operation: &Value,
        at: &str,
        requires_bearer: bool,
    ) -> Result<Operation, SpecError> {
        // Path-level parameters apply unless the operation redefines the same name and place.
        let mut raw_params: Vec<(String, &Value)> = Vec::new();
        let path_level = item
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        let op_level = operation
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for (index, param) in path_level.enumerate() {
            raw_params.push((
                format!("/paths/{}/parameters/{index}", escape_pointer(template)),
                param,
            ));
        }
        for (index, param) in op_level.enumerate() {
            let key = (param.get("name"), param.get("in"));
            raw_params.retain(|(_, earlier)| (earlier.get("name"), earlier.get("in")) != key);
            raw_params.push((format!("{at}/parameters/{index}"), param));
        }
        let params = raw_params
            .into_iter()
            .map(|(pointer, param)| self.build_parameter(param, &pointer))
            .collect::<Result<Vec<_>, _>>()?;

        for segment in template.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if !params
                    .iter()
                    .any(|p| p.location == ParamIn::Path && p.name == name)
                {
                    return Err(invalid(
                        at,
                        &format!("path parameter `{name}` is not declared"),
                    ));
                }
            }
        }

        let body = match operation.get("requestBody") {
            None => None,
            Some(body) => {
                if body.get("$ref").is_some() {
                    return Err(invalid(at, "requestBody $ref is not supported"));
                }
                Some(RequestBody {
                    required: body
                        .get("required")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    media: build_media(body.get("content"), &format!("{at}/requestBody/content"))?,
                })
            }
        };

        let mut responses = BTreeMap::new();
        if let Some(documented) = operation.get("responses").and_then(Value::as_object) {
            for (status, response) in documented {
                let here = format!("{at}/responses/{status}");
                if response.get("$ref").is_some() {
                    return Err(invalid(&here, "response $ref is not supported"));
                }
                responses.insert(
                    status.clone(),
                    build_media(response.get("content"), &format!("{here}/content"))?,
                );
            }
        }

        Ok(Operation {
            method: method.to_ascii_uppercase(),
            template: template.to_owned(),
            id: operation
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            requires_bearer,
            params,
            body,
            responses,
        })
    }

    fn build_parameter(&self, param: &Value, at: &str) -> Result<Parameter, SpecError> {
        if param.get("$ref").is_some() {
            return Err(invalid(at, "parameter $ref is not supported"));
        }
        let Some(name) = param.get("name").and_then(Value::as_str) else {
            return Err(invalid(at, "parameter without a name"));
        };
        let location = match param.get("in").and_then(Value::as_str) {
            Some("path") => ParamIn::Path,
            Some("query") => ParamIn::Query,
            Some("header") => ParamIn::Header,
            Some("cookie") => ParamIn::Cookie,
            other => {
                return Err(invalid(
                    at,
                    &format!("parameter `{name}` has an unknown `in`: {other:?}"),
                ))
            }
        };
        let Some(raw_schema) = param.get("schema") else {
            return Err(invalid(
                at,
                &format!("parameter `{name}` has no schema (content is not supported)"),
            ));
        };
        let schema = convert(raw_schema, &format!("{at}/schema"))?;
        let kind = self.type_of(&schema);
        let item_kind = schema.get("items").and_then(|items| self.type_of(items));
        Ok(Parameter {
            name: name.to_owned(),
            location,
            // Path parameters are always required, whatever the spec says.
            required: location == ParamIn::Path
                || param
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            explode: param
                .get("explode")
                .and_then(Value::as_bool)
                .unwrap_or(matches!(location, ParamIn::Query | ParamIn::Cookie)),
            kind,
            item_kind,
            schema,
            validator: OnceLock::new(),
        })
    }

    /// The `type` of a converted schema, following `$ref`s into the components.
    fn type_of(&self, schema: &Value) -> Option<String> {
        let mut current = schema;
        for _ in 0..16 {
            if let Some(kind) = current.get("type").and_then(Value::as_str) {
                return Some(kind.to_owned());
            }
            let target = current
                .get("$ref")?
                .as_str()?
                .strip_prefix("#/components")?;
            current = self.components.pointer(target)?;
        }
        None
    }

    /// Finds the operation for a request; literal path segments win over templated ones.
    fn find(&self, method: &str, path: &str) -> Result<Found<'_>, Unmatched> {
        let Some((template, params)) =
            best_match(self.paths.iter().map(|item| &item.template), path)
        else {
            return Err(Unmatched::Path);
        };
        let item = self
            .paths
            .iter()
            .find(|item| std::ptr::eq(&item.template, template))
            .ok_or(Unmatched::Path)?;
        let candidates: Vec<&Operation> = item
            .operations
            .iter()
            .filter_map(|&i| self.operations.get(i))
            .collect();
        match candidates
            .iter()
            .find(|operation| operation.method.eq_ignore_ascii_case(method))
        {
            Some(operation) => Ok((operation, params)),
            None => Err(Unmatched::Method {
                template: template.as_str().to_owned(),
                allowed: candidates
                    .iter()
                    .map(|operation| operation.method.clone())
                    .collect(),
            }),
        }
    }

    fn validator<'a>(
        &self,
        slot: &'a LazyValidator,
        schema: &Value,
    ) -> Result<&'a Validator, String> {
        slot.get_or_init(|| compile(schema, &self.components))
            .as_ref()
            .map_err(|message| format!("the spec's schema does not compile: {message}"))
    }

    fn check_schema(
        &self,
        slot: &LazyValidator,
        schema: &Value,
        instance: &Value,
        prefix: &str,
        report: &mut Reporter,
    ) {
        match self.validator(slot, schema) {
            Ok(validator) => {
                for error in validator.iter_errors(instance) {
                    report.add(
                        &format!("{prefix}{}", error.instance_path().as_str()),
                        describe(&error),
                    );
                }
            }
            Err(message) => report.add(prefix, message),
        }
    }

    fn check_param(&self, param: &Parameter, values: Vec<&str>, report: &mut Reporter) {
        let location = match param.location {
            ParamIn::Path => format!("path:{}", param.name),
            ParamIn::Query => format!("query:{}", param.name),
            ParamIn::Header => format!("header:{}", param.name),
            ParamIn::Cookie => format!("cookie:{}", param.name),
        };
        let is_array = param.kind.as_deref() == Some("array");
        let instance = match values.as_slice() {
            [] => {
                if param.required {
                    report.add(
                        &location,
                        format!("required parameter `{}` is missing", param.name),
                    );
                }
                return;
            }
            [single] if !is_array => coerce(single, param.kind.as_deref()),
            _ if !is_array => {
                report.add(
                    &location,
                    format!("parameter `{}` is given {} times", param.name, values.len()),
                );
                return;
            }
            _ => {
                let items: Vec<Value> = values
                    .iter()
                    .flat_map(|value| {
                        if param.explode {
                            vec![*value]
                        } else {
                            value.split(',').collect()
                        }
                    })
                    .map(|value| coerce(value, param.item_kind.as_deref()))
                    .collect();
                Value::Array(items)
            }
        };
        self.check_schema(
            &param.validator,
            &param.schema,
            &instance,
            &location,
            report,
        );
    }

    fn check_query(
        &self,
        operation: &Operation,
        query: &[(String, String)],
        report: &mut Reporter,
    ) {
        for param in operation
            .params
            .iter()
            .filter(|p| p.location == ParamIn::Query)
        {
            let values: Vec<&str> = query
                .iter()
                .filter(|(name, _)| *name == param.name)
                .map(|(_, value)| value.as_str())
                .collect();
            self.check_param(param, values, report);
        }
        let mut reported = Vec::new();
        for (name, _) in query {
            let declared = operation
                .params
                .iter()
                .any(|p| p.location == ParamIn::Query && p.name == *name);
            if !declared && !reported.contains(name) {
                // Servers ignore unknown filters, so a typo silently widens a list.
                report.add(
                    &format!("query:{name}"),
                    format!("query parameter `{name}` is not declared"),
                );
                reported.push(name.clone());
            }
        }
    }

    fn check_request_body(
        &self,
        operation: &Operation,
        request: &RequestParts,
        report: &mut Reporter,
    ) {
        let Some(declared) = &operation.body else {
            if request.has_body() {
                report.add(
                    "body:",
                    "the operation declares no request body, but one was sent".to_owned(),
                );
            }
            return;
        };
        if !request.has_body() {
            if declared.required {
                report.add("body:", "the request body is required".to_owned());
            }
            return;
        }
        let content_type = request.content_type();
        let Some(media) = declared
            .media
            .iter()
            .find(|m| content_type.is_some_and(|value| media_essence(value) == m.media_type))
        else {
            let accepted: Vec<&str> = declared
                .media
                .iter()
                .map(|m| m.media_type.as_str())
                .collect();
            report.add(
                "header:content-type",
                format!(
                    "content type {} is not accepted (accepted: {})",
                    content_type.unwrap_or("(none)"),
                    accepted.join(", ")
                ),
            );
            return;
        };
        let Some(schema) = &media.schema else { return };
        if !is_json_media_type(Some(&media.media_type)) {
            return;
        }
        match &request.body {
            Some(body) => self.check_schema(&media.validator, schema, body, "body:", report),
            None => report.add("body:", "the request body is not valid JSON".to_owned()),
        }
    }
}

/// The operation a request reaches, with its decoded path parameters.
type Found<'a> = (&'a Operation, Vec<(String, String)>);

/// Why a request matched no operation.
enum Unmatched {
    Path,
    Method {
        template: String,
        allowed: Vec<String>,
    },
}

impl Unmatched {
    fn location(&self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Method { .. } => "method",
        }
    }

    fn message(&self, method: &str, path: &str) -> String {
        match self {
            Self::Path => format!("no path in the spec matches {path}"),
            Self::Method { template, allowed } => {
                format!(
                    "{template} has no {method} operation (it has {})",
                    allowed.join(", ")
                )
            }
        }
    }
}

/// Collects violations for one message.
struct Reporter {
    direction: Direction,
    method: String,
    path: String,
    operation_id: Option<String>,
    found: Vec<Violation>,
}

impl Reporter {
    fn new(direction: Direction, method: &str, path: &str) -> Self {
        Self {
            direction,
            method: method.to_owned(),
            path: path.to_owned(),
            operation_id: None,
            found: Vec::new(),
        }
    }

    fn add(&mut self, location: &str, message: String) {
        self.found.push(Violation {
            direction: self.direction,
            method: self.method.clone(),
            path: self.path.clone(),
            operation_id: self.operation_id.clone(),
            location: location.to_owned(),
            message,
        });
    }
}

/// Every `x-` header a request sends must be one the operation declares: the spec names the
/// extension headers Contabo reads (`x-request-id`, `x-trace-id`), and an undeclared one is a
/// request part the spec does not define (a server ignores it, so whatever it was meant to do
/// silently does not happen). Standard HTTP headers (`accept`, `user-agent`, ...) are not
/// parameters in OpenAPI and are not checked here. Values are never quoted.
fn check_extension_headers(
    operation: &Operation,
    headers: &[(String, String)],
    report: &mut Reporter,
) {
    let mut reported: Vec<String> = Vec::new();
    for (name, _) in headers {
        let lower = name.to_ascii_lowercase();
        if !lower.starts_with("x-") || reported.contains(&lower) {
            continue;
        }
        let declared = operation
            .params
            .iter()
            .any(|p| p.location == ParamIn::Header && p.name.eq_ignore_ascii_case(&lower));
        if !declared {
            report.add(
                &format!("header:{lower}"),
                format!("header `{lower}` is not declared by the operation"),
            );
            reported.push(lower);
        }
    }
}

/// Checks the `Authorization: Bearer <token>` header without ever quoting it.
fn check_bearer(header: Option<&str>, report: &mut Reporter) {
    let well_formed = header.is_some_and(|value| {
        let mut words = value.split_whitespace();
        matches!(
            (words.next(), words.next(), words.next()),
            (Some(scheme), Some(_), None) if scheme.eq_ignore_ascii_case("bearer")
        )
    });
    match (header, well_formed) {
        (None, _) => report.add(
            "header:authorization",
            "the Authorization header is missing".to_owned(),
        ),
        (Some(_), false) => report.add(
            "header:authorization",
            "the Authorization header is not of the form `Bearer <token>` (value not shown)"
                .to_owned(),
        ),
        (Some(_), true) => {}
    }
}

/// Turns a parameter string into the JSON value its schema type expects; a string that does not
/// parse stays a string so the schema reports the type mismatch.
fn coerce(raw: &str, kind: Option<&str>) -> Value {
    match kind {
        Some("integer") => raw
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| raw.parse::<u64>().map(Value::from))
            .unwrap_or_else(|_| Value::from(raw)),
        Some("number") => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::from(raw), Value::Number),
        Some("boolean") => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::from(raw),
        },
        _ => Value::from(raw),
    }
}

/// The documented media for a status: exact code first, then `2XX`-style ranges, then `default`.
fn documented_response(operation: &Operation, status: u16) -> Option<&[Media]> {
    let exact = status.to_string();
    let range = format!("{}XX", status / 100);
    operation
        .responses
        .get(&exact)
        .or_else(|| operation.responses.get(&range))
        .or_else(|| operation.responses.get(&range.to_ascii_lowercase()))
        .or_else(|| operation.responses.get("default"))
        .map(Vec::as_slice)
}

fn build_media(content: Option<&Value>, at: &str) -> Result<Vec<Media>, SpecError> {
    let Some(content) = content else {
        return Ok(Vec::new());
    };
    let Some(entries) = content.as_object() else {
        return Err(invalid(at, "content must be a map of media types"));
    };
    entries
        .iter()
        .map(|(media_type, media)| {
            let here = format!("{at}/{}", escape_pointer(media_type));
            Ok(Media {
                media_type: media_essence(media_type),
                schema: media
                    .get("schema")
                    .map(|schema| convert(schema, &format!("{here}/schema")))
                    .transpose()?,
                validator: OnceLock::new(),
            })
        })
        .collect()
}

/// Converts `#/components/schemas` into JSON Schema, keeping the `components/schemas` shape so
/// `$ref`s written against the spec resolve unchanged.
fn convert_components(document: &Value) -> Result<Value, SpecError> {
    let mut schemas = Map::new();
    if let Some(declared) = document
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        for (name, schema) in declared {
            let at = format!("/components/schemas/{}", escape_pointer(name));
            schemas.insert(name.clone(), convert(schema, &at)?);
        }
    }
    let components = serde_json::json!({ "schemas": schemas });
    check_references(&components, &components)?;
    Ok(components)
}

/// Every `$ref` must name a schema that exists, so a typo in the spec is a load error rather than
/// a validator that fails on first use.
fn check_references(value: &Value, components: &Value) -> Result<(), SpecError> {
    match value {
        Value::Object(object) => {
            if let Some(target) = object.get("$ref").and_then(Value::as_str) {
                let name = target
                    .strip_prefix(COMPONENT_SCHEMA_PREFIX)
                    .unwrap_or(target);
                if components
                    .pointer(&format!("/schemas/{}", escape_pointer(name)))
                    .is_none()
                {
                    return Err(invalid(
                        target,
                        "$ref names a schema the spec does not define",
                    ));
                }
            }
            object
                .values()
                .try_for_each(|inner| check_references(inner, components))
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|inner| check_references(inner, components)),
        _ => Ok(()),
    }
}

/// Names of security schemes that are HTTP bearer schemes.
fn bearer_schemes(document: &Value) -> Vec<String> {
    document
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
        .map(|schemes| {
            schemes
                .iter()
                .filter(|(_, scheme)| {
                    scheme.get("type").and_then(Value::as_str) == Some("http")
                        && scheme
                            .get("scheme")
                            .and_then(Value::as_str)
                            .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
                })
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// A bearer token is required when every alternative security requirement names a bearer scheme.
fn requires_bearer(security: Option<&Value>, bearer_schemes: &[String]) -> bool {
    let Some(alternatives) = security.and_then(Value::as_array) else {
        return false;
    };
    !alternatives.is_empty()
        && alternatives.iter().all(|requirement| {
            requirement
                .as_object()
                .is_some_and(|names| names.keys().any(|name| bearer_schemes.contains(name)))
        })
}

fn invalid(pointer: &str, message: &str) -> SpecError {
    SpecError::Invalid {
        pointer: pointer.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_coerced_by_schema_type() {
        assert_eq!(coerce("12", Some("integer")), Value::from(12));
        assert_eq!(coerce("twelve", Some("integer")), Value::from("twelve"));
        assert_eq!(coerce("true", Some("boolean")), Value::Bool(true));
        assert_eq!(coerce("yes", Some("boolean")), Value::from("yes"));
        assert_eq!(coerce("1.5", Some("number")), serde_json::json!(1.5));
        assert_eq!(coerce("12", Some("string")), Value::from("12"));
    }

    #[test]
    fn bearer_header_must_be_scheme_and_token() {
        for (header, ok) in [
            (Some("Bearer abc"), true),
            (Some("bearer abc"), true),
            (Some("Bearer"), false),
            (Some("Basic abc"), false),
            (Some("Bearer a b"), false),
            (None, false),
        ] {
            let mut report = Reporter::new(Direction::Request, "GET", "/x");
            check_bearer(header, &mut report);
            assert_eq!(report.found.is_empty(), ok, "{header:?}");
            assert!(report.found.iter().all(|v| !v.message.contains("abc")));
        }
    }
}
