//! `key=value` and `key=@file` arguments: object fields and attributes.

use std::path::PathBuf;

use serde_json::Value;
use wulf_model::{field_type, field_value, has_attributes, FieldType, Kind};

use crate::fail::{usage, Fail};

/// Split `key=value`; `key=@file` reads the file (for file fields, the caller uploads it).
pub(crate) fn split_pair(p: &str) -> Result<(&str, &str), Fail> {
    p.split_once('=')
        .filter(|(k, _)| !k.trim().is_empty())
        .map(|(k, v)| (k.trim(), v))
        .ok_or_else(|| usage(format!("'{p}' is not key=value")))
}

pub(crate) fn read_value(v: &str) -> Result<String, Fail> {
    match v.strip_prefix('@') {
        Some(path) => {
            let s = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read {path}: {e}")))?;
            Ok(s.strip_suffix('\n').unwrap_or(&s).to_string())
        }
        None => Ok(v.to_string()),
    }
}

/// Fields for create/update, and file fields to upload afterwards.
pub(crate) type Fields = (serde_json::Map<String, Value>, Vec<(String, PathBuf)>);

pub(crate) fn parse_fields(kind: Kind, pairs: &[String]) -> Result<Fields, Fail> {
    let mut fields = serde_json::Map::new();
    let mut files = Vec::new();
    for p in pairs {
        let (k, v) = split_pair(p)?;
        if field_type(kind, k) == Some(FieldType::File) {
            let path = v
                .strip_prefix('@')
                .ok_or_else(|| usage(format!("{k} is a file: give {k}=@PATH")))?;
            if !std::path::Path::new(path).is_file() {
                return Err(usage(format!("{k}: {path} is not a readable file")));
            }
            files.push((k.to_string(), PathBuf::from(path)));
            continue;
        }
        if k.starts_with('_') && has_attributes(kind) {
            return Err(usage(format!(
                "'{k}' is an attribute: use 'wulf {kind} set {k}=…'"
            )));
        }
        let value = field_value(kind, k, &read_value(v)?).map_err(|e| usage(e.to_string()))?;
        fields.insert(k.to_string(), value);
    }
    Ok((fields, files))
}
