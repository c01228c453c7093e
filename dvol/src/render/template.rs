//! `--format` templates: text with `{{.FIELD}}` placeholders, FIELD a field of the REST
//! answer (`{{.name}}`, `{{.size_bytes}}`); case and underscores do not matter, so Docker's
//! `{{.Name}}` and `{{.SizeBytes}}` work too. Values print as the REST API sends them
//! (strings bare, numbers in bytes, `null` as empty); `\t` and `\n` are a tab and a newline.

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::Value;

/// A parsed template: literal text and the fields between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

impl Template {
    /// Parses `template`; fails on an unclosed `{{` or a placeholder that is not `{{.FIELD}}`.
    pub fn parse(template: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            parts.push(Part::Text(unescape(&rest[..start])));
            let Some(len) = rest[start..].find("}}") else {
                bail!("--format {template:?} opens {{{{ without closing it: write {{{{.name}}}}");
            };
            let inner = rest[start + 2..start + len].trim();
            let Some(field) = inner.strip_prefix('.').filter(|f| {
                !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }) else {
                bail!("--format {template:?}: {{{{{inner}}}}} is not a field; write {{{{.name}}}}");
            };
            parts.push(Part::Field(field.to_string()));
            rest = &rest[start + len + 2..];
        }
        parts.push(Part::Text(unescape(rest)));
        Ok(Template { parts })
    }

    /// Fills the template with the fields of `value` (a JSON object as the REST API sends
    /// it); fails naming the fields there are when one is unknown.
    pub fn render<T: Serialize>(&self, value: &T) -> Result<String> {
        let value = serde_json::to_value(value)?;
        let Value::Object(fields) = &value else {
            bail!("--format fills in the fields of an object, and this answer is {value}");
        };
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(name) => {
                    let key = comparable(name);
                    let Some((_, v)) = fields.iter().find(|(k, _)| comparable(k) == key) else {
                        let known: Vec<&str> = fields.keys().map(String::as_str).collect();
                        bail!(
                            "--format names no field {name}: use one of {}",
                            known.join(", ")
                        );
                    };
                    match v {
                        Value::String(s) => out.push_str(s),
                        Value::Null => {}
                        other => out.push_str(&other.to_string()),
                    }
                }
            }
        }
        Ok(out)
    }
}

fn comparable(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn unescape(text: &str) -> String {
    text.replace("\\t", "\t").replace("\\n", "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_fill_in_by_rest_name_or_docker_case() {
        let volume = json!({"name": "db", "profile": "gold", "size_bytes": 1024, "problem": null});
        let t = Template::parse("{{.Name}} {{ .profile }}\\t{{.SizeBytes}}|{{.problem}}").unwrap();
        assert_eq!(t.render(&volume).unwrap(), "db gold\t1024|");
        assert_eq!(
            Template::parse("plain").unwrap().render(&volume).unwrap(),
            "plain"
        );
    }

    #[test]
    fn bad_templates_and_fields_are_refused() {
        let volume = json!({"name": "db"});
        let err = Template::parse("{{.name").unwrap_err().to_string();
        assert!(err.contains("without closing"), "{err}");
        let err = Template::parse("{{name}}").unwrap_err().to_string();
        assert!(err.contains("{{name}} is not a field"), "{err}");
        let t = Template::parse("{{.nosuch}}").unwrap();
        let err = t.render(&volume).unwrap_err().to_string();
        assert!(err.contains("no field nosuch: use one of name"), "{err}");
    }
}
