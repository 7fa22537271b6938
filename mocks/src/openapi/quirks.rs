//! The few places where Contabo's published spec is wrong, and what is checked instead.
//!
//! Each correction names the exact spot (a JSON pointer into the spec document), the value the
//! spec has there, and the value used instead. Loading the spec fails if the spec no longer says
//! what a correction expects, so a fixed or changed spec cannot drift past a stale correction.
//! Nothing outside this list is loosened.
//!
//! `scripts/check_contabo_traffic.py` (the independent check built on `openapi-core`) applies the
//! same corrections to the spec it loads, keep the two in step; it also relaxes `cancelDate`'s
//! `format: date` to "empty or a calendar date", because openapi-core asserts that format and
//! this validator does not ([`super::ASSERTED_FORMATS`]).

use serde_json::Value;

use super::SpecError;

/// One correction of the published spec.
#[derive(Debug, Clone, Copy)]
pub struct SpecQuirk {
    /// JSON pointer (RFC 6901) into the spec document.
    pub pointer: &'static str,
    /// The value the spec has at `pointer`, as JSON text.
    pub spec_says: &'static str,
    /// The value used instead, as JSON text.
    pub used_instead: &'static str,
    /// Why the spec's value cannot be used.
    pub why: &'static str,
}

/// `yyyy-mm-dd` is a placeholder, not a regular expression: as a pattern it only matches strings
/// containing the literal text "yyyy-mm-dd". The field has `minLength: 0` and `format: date`, and
/// Contabo sends `""` for an instance that is not cancelled and `2026-12-31` for one that is.
const CANCEL_DATE_WHY: &str = "pattern `yyyy-mm-dd` is a placeholder, not a regex; Contabo sends \"\" \
     (not cancelled) or a calendar date like 2026-12-31, which is what minLength 0 / format date say";

/// What the placeholder meant: empty, or a calendar date.
const CANCEL_DATE_PATTERN: &str = r#""^$|^[0-9]{4}-[0-9]{2}-[0-9]{2}$""#;

/// Every correction applied to the loaded spec.
pub const SPEC_QUIRKS: &[SpecQuirk] = &[
    SpecQuirk {
        pointer: "/components/schemas/ListInstancesResponseData/properties/cancelDate/pattern",
        spec_says: r#""yyyy-mm-dd""#,
        used_instead: CANCEL_DATE_PATTERN,
        why: CANCEL_DATE_WHY,
    },
    SpecQuirk {
        pointer: "/components/schemas/InstanceResponse/properties/cancelDate/pattern",
        spec_says: r#""yyyy-mm-dd""#,
        used_instead: CANCEL_DATE_PATTERN,
        why: CANCEL_DATE_WHY,
    },
];

/// Parses a quirk's JSON text; the texts are constants, so failure is a programming error that
/// the quirk tests catch, but it is still reported rather than panicking.
fn parse(quirk: &SpecQuirk, text: &str) -> Result<Value, SpecError> {
    serde_json::from_str(text).map_err(|error| SpecError::Quirk {
        pointer: quirk.pointer.to_owned(),
        message: format!("the correction's JSON text {text} does not parse: {error}"),
    })
}

/// Checks that `document` still says what each quirk expects, without changing it.
pub fn check_quirks(document: &Value, quirks: &[SpecQuirk]) -> Result<(), SpecError> {
    for quirk in quirks {
        let expected = parse(quirk, quirk.spec_says)?;
        parse(quirk, quirk.used_instead)?;
        match document.pointer(quirk.pointer) {
            Some(found) if *found == expected => {}
            found => {
                return Err(SpecError::Quirk {
                    pointer: quirk.pointer.to_owned(),
                    message: format!(
                        "the correction expects the spec to say {} here but it says {}; \
                         review the correction in openapi/quirks.rs",
                        quirk.spec_says,
                        found.map_or_else(|| "nothing".to_owned(), Value::to_string)
                    ),
                })
            }
        }
    }
    Ok(())
}

/// Applies the corrections to `document`, after checking each still matches the spec.
pub fn apply_quirks(document: &mut Value, quirks: &[SpecQuirk]) -> Result<(), SpecError> {
    check_quirks(document, quirks)?;
    for quirk in quirks {
        let replacement = parse(quirk, quirk.used_instead)?;
        if let Some(slot) = document.pointer_mut(quirk.pointer) {
            *slot = replacement;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quirk_texts_are_json_and_differ_from_the_spec() {
        for quirk in SPEC_QUIRKS {
            let said: Value = serde_json::from_str(quirk.spec_says).unwrap();
            let used: Value = serde_json::from_str(quirk.used_instead).unwrap();
            assert_ne!(said, used, "{}", quirk.pointer);
            assert!(!quirk.why.is_empty());
        }
    }

    #[test]
    fn cancel_date_correction_accepts_what_contabo_sends_and_nothing_odd() {
        let pattern: Value = serde_json::from_str(CANCEL_DATE_PATTERN).unwrap();
        let re = regex::Regex::new(pattern.as_str().unwrap()).unwrap();
        assert!(re.is_match(""));
        assert!(re.is_match("2026-12-31"));
        assert!(!re.is_match("yyyy-mm-dd"));
        assert!(!re.is_match("2026-12-31T00:00:00Z"));
    }

    #[test]
    fn a_quirk_that_no_longer_matches_fails_loudly() {
        let mut document = json!({"components": {"schemas": {"InstanceResponse": {"properties": {
            "cancelDate": {"pattern": "^fixed$"}}}}}});
        let error = apply_quirks(&mut document, &SPEC_QUIRKS[1..]).unwrap_err();
        assert!(error.to_string().contains("cancelDate"), "{error}");
        // Nothing was changed.
        assert_eq!(
            document.pointer("/components/schemas/InstanceResponse/properties/cancelDate/pattern"),
            Some(&json!("^fixed$"))
        );
    }
}
