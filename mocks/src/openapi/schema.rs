//! Turns OpenAPI 3.0 Schema Objects into JSON Schema (draft 4) and compiles them.
//!
//! OpenAPI 3.0 schemas are "an extended subset" of JSON Schema draft 4/5: they add `nullable`,
//! `discriminator`, `example` and vendor extensions, and forbid nothing draft 4 needs. The
//! conversion is structural: it only descends through keywords that hold schemas (`properties`
//! values, `items`, `allOf`, ...), because the spec has *properties* named `format`, `minimum` or
//! `example` that must not be mistaken for keywords.
//!
//! `$ref: '#/components/schemas/X'` is kept as is. A compiled validator is built from a document
//! whose root holds the converted `components` beside the schema being checked, so every
//! reference resolves against the spec document itself, exactly as the spec means it.

use jsonschema::{ValidationError, Validator};
use serde_json::{json, Map, Value};

use super::SpecError;

/// Formats whose values are checked. Everything else the spec names (`date`, `double`, ...) is an
/// annotation only: the spec does not promise clients or servers agree on them, and Contabo
/// itself sends `""` for some `format: date` fields.
pub const ASSERTED_FORMATS: &[&str] = &["date-time"];

/// Keywords OpenAPI adds that mean nothing to a JSON Schema validator. Vendor extensions (`x-*`)
/// are dropped as well.
const OPENAPI_ONLY_KEYWORDS: &[&str] = &[
    "example",
    "discriminator",
    "xml",
    "externalDocs",
    "nullable",
    "readOnly",
    "writeOnly",
    "deprecated",
];

/// The prefix every `$ref` in the spec must have; anything else (remote documents, parameter
/// references) is rejected at load time rather than silently not checked.
pub const COMPONENT_SCHEMA_PREFIX: &str = "#/components/schemas/";

/// Converts one OpenAPI Schema Object; `at` is its JSON pointer in the spec, for error messages.
pub fn convert(schema: &Value, at: &str) -> Result<Value, SpecError> {
    let Some(object) = schema.as_object() else {
        return match schema {
            Value::Bool(_) => Ok(schema.clone()),
            _ => Err(SpecError::Invalid {
                pointer: at.to_owned(),
                message: "a schema must be an object".to_owned(),
            }),
        };
    };
    if let Some(reference) = object.get("$ref") {
        return convert_reference(reference, at);
    }

    let mut out = Map::new();
    for (keyword, value) in object {
        if keyword.starts_with("x-") || OPENAPI_ONLY_KEYWORDS.contains(&keyword.as_str()) {
            continue;
        }
        let here = format!("{at}/{}", escape_pointer(keyword));
        let converted = match keyword.as_str() {
            "properties" => convert_map(value, &here)?,
            "items" | "not" => convert(value, &here)?,
            "additionalProperties" if value.is_object() => convert(value, &here)?,
            "allOf" | "oneOf" | "anyOf" => convert_list(value, &here)?,
            "format" => {
                add_format_constraints(value, object, &mut out);
                match value.as_str() {
                    Some(name) if ASSERTED_FORMATS.contains(&name) => value.clone(),
                    _ => continue,
                }
            }
            _ => value.clone(),
        };
        out.insert(keyword.clone(), converted);
    }

    if object.get("nullable").and_then(Value::as_bool) == Some(true) {
        return Ok(allow_null(out));
    }
    Ok(Value::Object(out))
}

fn convert_reference(reference: &Value, at: &str) -> Result<Value, SpecError> {
    match reference.as_str() {
        // OpenAPI 3.0 ignores the siblings of `$ref`, and so does draft 4.
        Some(target) if target.starts_with(COMPONENT_SCHEMA_PREFIX) => {
            Ok(json!({ "$ref": target }))
        }
        _ => Err(SpecError::Invalid {
            pointer: at.to_owned(),
            message: format!(
                "unsupported $ref {reference}: only {COMPONENT_SCHEMA_PREFIX}… is understood"
            ),
        }),
    }
}

fn convert_map(value: &Value, at: &str) -> Result<Value, SpecError> {
    let Some(entries) = value.as_object() else {
        return Err(SpecError::Invalid {
            pointer: at.to_owned(),
            message: "expected a map of schemas".to_owned(),
        });
    };
    let mut out = Map::new();
    for (name, schema) in entries {
        out.insert(
            name.clone(),
            convert(schema, &format!("{at}/{}", escape_pointer(name)))?,
        );
    }
    Ok(Value::Object(out))
}

fn convert_list(value: &Value, at: &str) -> Result<Value, SpecError> {
    let Some(items) = value.as_array() else {
        return Err(SpecError::Invalid {
            pointer: at.to_owned(),
            message: "expected a list of schemas".to_owned(),
        });
    };
    items
        .iter()
        .enumerate()
        .map(|(index, schema)| convert(schema, &format!("{at}/{index}")))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// `int32`/`int64` on an integer become range checks, unless the spec already gives a range
/// (its own bounds are never widened).
fn add_format_constraints(
    format: &Value,
    schema: &Map<String, Value>,
    out: &mut Map<String, Value>,
) {
    if schema.contains_key("minimum") || schema.contains_key("maximum") {
        return;
    }
    let (min, max) = match format.as_str() {
        Some("int32") => (Value::from(i32::MIN), Value::from(i32::MAX)),
        Some("int64") => (Value::from(i64::MIN), Value::from(i64::MAX)),
        _ => return,
    };
    out.insert("minimum".to_owned(), min);
    out.insert("maximum".to_owned(), max);
}

/// OpenAPI 3.0's `nullable: true` adds `null` to the allowed values.
fn allow_null(mut schema: Map<String, Value>) -> Value {
    if let Some(options) = schema.get_mut("enum").and_then(Value::as_array_mut) {
        if !options.contains(&Value::Null) {
            options.push(Value::Null);
        }
    }
    match schema.get("type").cloned() {
        Some(Value::String(kind)) => {
            schema.insert("type".to_owned(), json!([kind, "null"]));
            Value::Object(schema)
        }
        // No single type to extend (e.g. an `allOf`): accept null beside the whole schema.
        _ => json!({ "anyOf": [{ "type": "null" }, Value::Object(schema)] }),
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Whether a converted schema refers to the spec's components (and so needs them beside it).
fn has_reference(schema: &Value) -> bool {
    match schema {
        Value::Object(object) => object.contains_key("$ref") || object.values().any(has_reference),
        Value::Array(items) => items.iter().any(has_reference),
        _ => false,
    }
}

/// Compiles a converted schema. `components` is the converted `#/components` object; it is put at
/// the root of the compiled document only when the schema refers into it, so small parameter
/// schemas stay cheap to compile.
pub fn compile(schema: &Value, components: &Value) -> Result<Validator, String> {
    let document = if has_reference(schema) {
        json!({ "components": components, "allOf": [schema] })
    } else {
        schema.clone()
    };
    jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&document)
        .map_err(|error| error.to_string())
}

/// Names of body fields whose values may be secrets (passwords, keys, cloud-init with join
/// tokens). A violation inside one of them never quotes the value.
const SECRET_FIELD_HINTS: &[&str] = &[
    "password",
    "secret",
    "token",
    "key",
    "value",
    "userdata",
    "credential",
];

/// Longest string value quoted in a violation message; longer ones are summarised.
const MAX_QUOTED_LEN: usize = 80;

/// Renders a schema error for a violation message, quoting the offending value only when it is
/// short and not in a field that may hold a secret.
pub fn describe(error: &ValidationError<'_>) -> String {
    let pointer = error.instance_path().as_str();
    let secretive = pointer.split('/').any(|segment| {
        let segment = segment.to_ascii_lowercase();
        SECRET_FIELD_HINTS.iter().any(|hint| segment.contains(hint))
    });
    let quotable = match error.instance().as_ref() {
        Value::String(text) => text.len() <= MAX_QUOTED_LEN,
        Value::Number(_) | Value::Bool(_) | Value::Null => true,
        Value::Array(_) | Value::Object(_) => {
            // Errors about a container (e.g. a missing required property) name the property, not
            // the contents, so they read the same masked or not; masking keeps them short.
            false
        }
    };
    if quotable && !secretive {
        error.to_string()
    } else {
        error.masked_with("value").to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn properties_named_like_keywords_survive_conversion() {
        let schema = json!({
            "type": "object",
            "example": {"format": "iso"},
            "x-internal": true,
            "properties": {
                "format": {"type": "string", "enum": ["iso", "qcow2"], "example": "iso"},
                "minimum": {"type": "integer", "format": "int64"}
            }
        });
        let converted = convert(&schema, "#").unwrap();
        assert_eq!(
            converted,
            json!({
                "type": "object",
                "properties": {
                    "format": {"type": "string", "enum": ["iso", "qcow2"]},
                    "minimum": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}
                }
            })
        );
    }

    #[test]
    fn nullable_admits_null_and_nothing_else_new() {
        let converted = convert(
            &json!({"type": "string", "enum": ["a"], "nullable": true}),
            "#",
        )
        .unwrap();
        let validator = compile(&converted, &json!({})).unwrap();
        assert!(validator.is_valid(&json!(null)));
        assert!(validator.is_valid(&json!("a")));
        assert!(!validator.is_valid(&json!("b")));

        let composed = convert(
            &json!({"allOf": [{"type": "integer"}], "nullable": true}),
            "#",
        )
        .unwrap();
        let validator = compile(&composed, &json!({})).unwrap();
        assert!(validator.is_valid(&json!(null)));
        assert!(!validator.is_valid(&json!("x")));
    }

    #[test]
    fn date_time_is_asserted_and_date_is_not() {
        let converted = convert(
            &json!({"type": "object", "properties": {
                "at": {"type": "string", "format": "date-time"},
                "on": {"type": "string", "format": "date"}
            }}),
            "#",
        )
        .unwrap();
        let validator = compile(&converted, &json!({})).unwrap();
        assert!(validator.is_valid(&json!({"at": "2026-01-02T03:04:05Z", "on": ""})));
        assert!(!validator.is_valid(&json!({"at": "yesterday"})));
    }

    #[test]
    fn remote_references_are_refused() {
        let error = convert(&json!({"$ref": "other.yaml#/X"}), "#/a").unwrap_err();
        assert!(error.to_string().contains("#/a"), "{error}");
    }

    #[test]
    fn secrets_are_not_quoted() {
        let validator = compile(
            &json!({"type": "object", "properties": {
                "value": {"type": "string", "minLength": 8},
                "name": {"type": "string", "minLength": 8}
            }}),
            &json!({}),
        )
        .unwrap();
        let instance = json!({"value": "hunter2", "name": "short"});
        let messages: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| describe(&e))
            .collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages.iter().all(|m| !m.contains("hunter2")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("\"short\"")),
            "{messages:?}"
        );
    }
}
