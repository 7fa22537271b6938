//! Matching request paths to the spec's path templates, and URL decoding.
//!
//! When several templates match, the one with a literal segment at the first place where they
//! differ wins, so `/v1/compute/instances/audits` is the audit list and not instance "audits".
//! OpenAPI says the same ("concrete paths are matched before templated ones").

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A parsed path template such as `/v1/compute/instances/{instanceId}`.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    template: String,
    segments: Vec<Segment>,
}

impl PathTemplate {
    /// Parses a template; a segment is a parameter only when it is entirely `{name}`.
    pub fn parse(template: &str) -> Self {
        let segments = split(template)
            .map(
                |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name.to_owned()),
                    None => Segment::Literal(segment.to_owned()),
                },
            )
            .collect();
        Self {
            template: template.to_owned(),
            segments,
        }
    }

    /// The template text, as written in the spec.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// The decoded values of the path parameters if `path` matches, in template order.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let parts: Vec<&str> = split(path).collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(literal) if *literal == percent_decode(part, false) => {}
                Segment::Literal(_) => return None,
                // An empty segment (`/instances//x`) is not a value for a parameter.
                Segment::Param(_) if part.is_empty() => return None,
                Segment::Param(name) => params.push((name.clone(), percent_decode(part, false))),
            }
        }
        Some(params)
    }

    /// Sort key: literal segments sort before parameters, position by position.
    fn specificity(&self) -> Vec<bool> {
        self.segments
            .iter()
            .map(|segment| matches!(segment, Segment::Param(_)))
            .collect()
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

/// Picks the most specific template matching `path`, with its parameters.
pub fn best_match<'a>(
    templates: impl IntoIterator<Item = &'a PathTemplate>,
    path: &str,
) -> Option<(&'a PathTemplate, Vec<(String, String)>)> {
    templates
        .into_iter()
        .filter_map(|template| template.matches(path).map(|params| (template, params)))
        .min_by_key(|(template, _)| template.specificity())
}

/// Decodes `%XX` escapes (and `+` as a space in form data); invalid escapes are kept verbatim and
/// invalid UTF-8 is replaced, since a validator must describe bad input rather than refuse it.
pub fn percent_decode(text: &str, plus_as_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let escaped = bytes
                    .get(index + 1..index + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                if let Some(byte) = escaped {
                    out.push(byte);
                    index += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_as_space => out.push(b' '),
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `a=1&b=x%20y` into decoded pairs (for query strings and form bodies).
pub fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name, true), percent_decode(value, true))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_over_parameters() {
        let templates = [
            PathTemplate::parse("/v1/compute/instances/{instanceId}"),
            PathTemplate::parse("/v1/compute/instances/audits"),
            PathTemplate::parse("/v1/compute/instances/{instanceId}/cancel"),
            PathTemplate::parse("/v1/compute/instances/actions/audits"),
        ];
        let (found, params) = best_match(&templates, "/v1/compute/instances/audits").unwrap();
        assert_eq!(found.as_str(), "/v1/compute/instances/audits");
        assert!(params.is_empty());

        let (found, params) = best_match(&templates, "/v1/compute/instances/12").unwrap();
        assert_eq!(found.as_str(), "/v1/compute/instances/{instanceId}");
        assert_eq!(params, vec![("instanceId".to_owned(), "12".to_owned())]);

        let (found, _) = best_match(&templates, "/v1/compute/instances/actions/audits").unwrap();
        assert_eq!(found.as_str(), "/v1/compute/instances/actions/audits");
        assert!(best_match(&templates, "/v1/compute/instances/").is_none());
    }

    #[test]
    fn decoding_handles_escapes_plus_and_garbage() {
        assert_eq!(percent_decode("a%20b+c", false), "a b+c");
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(
            parse_pairs("grant_type=password&username=a%40b.c&flag"),
            vec![
                ("grant_type".to_owned(), "password".to_owned()),
                ("username".to_owned(), "a@b.c".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
    }
}
