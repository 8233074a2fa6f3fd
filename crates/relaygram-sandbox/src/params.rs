//! Bot API parameters, however they arrive: a query string, a JSON body, a urlencoded form or
//! multipart form data. Telegram accepts all four and so must we; in forms every value is a
//! string and structured values are JSON inside it.

use std::collections::HashMap;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::Value;

use crate::reply::ApiError;

#[derive(Debug, Clone)]
pub struct Upload {
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub size: usize,
}

#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, Value>,
    /// Multipart file parts, by field name.
    pub files: HashMap<String, Upload>,
}

impl Params {
    pub async fn parse(
        query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Params, ApiError> {
        let mut params = Params::default();
        if let Some(q) = query {
            for (k, v) in serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .map_err(|_| ApiError::bad_request("can't parse query string"))?
            {
                params.values.insert(k, Value::String(v));
            }
        }
        let content_type = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if body.is_empty() {
            return Ok(params);
        }
        if content_type.starts_with("application/json") {
            let v: Value = serde_json::from_slice(&body)
                .map_err(|_| ApiError::bad_request("can't parse JSON object"))?;
            match v {
                Value::Object(map) => params.values.extend(map),
                _ => return Err(ApiError::bad_request("can't parse JSON object")),
            }
        } else if content_type.starts_with("multipart/form-data") {
            let boundary = multer::parse_boundary(&content_type)
                .map_err(|_| ApiError::bad_request("can't parse multipart form data"))?;
            let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
            let mut multipart = multer::Multipart::new(stream, boundary);
            while let Some(field) = multipart
                .next_field()
                .await
                .map_err(|_| ApiError::bad_request("can't parse multipart form data"))?
            {
                let name = field.name().unwrap_or_default().to_string();
                let file_name = field.file_name().map(str::to_string);
                let mime_type = field.content_type().map(|m| m.to_string());
                let data = field
                    .bytes()
                    .await
                    .map_err(|_| ApiError::bad_request("can't parse multipart form data"))?;
                if file_name.is_some() {
                    params.files.insert(
                        name,
                        Upload {
                            file_name,
                            mime_type,
                            size: data.len(),
                        },
                    );
                } else {
                    params.values.insert(
                        name,
                        Value::String(String::from_utf8_lossy(&data).into_owned()),
                    );
                }
            }
        } else {
            // Telegram reads a body of any other type as a urlencoded form.
            for (k, v) in serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
                .map_err(|_| ApiError::bad_request("can't parse form data"))?
            {
                params.values.insert(k, Value::String(v));
            }
        }
        Ok(params)
    }

    pub fn insert(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
    }

    pub fn to_json(&self) -> Value {
        Value::Object(
            self.values
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    pub fn has(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|v| !v.is_null())
    }

    pub fn raw(&self, name: &str) -> Option<&Value> {
        self.values.get(name).filter(|v| !v.is_null())
    }

    /// A string parameter; numbers are accepted and shown as text, as Telegram does.
    pub fn str(&self, name: &str) -> Option<String> {
        match self.raw(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// An integer parameter, or an error naming it when it is not one.
    pub fn i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid {name} specified"))),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid {name} specified"))),
            Some(_) => Err(ApiError::bad_request(format!("invalid {name} specified"))),
        }
    }

    pub fn bool(&self, name: &str) -> bool {
        match self.raw(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => matches!(s.as_str(), "true" | "True" | "1"),
            Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
            _ => false,
        }
    }

    /// A structured parameter: given as JSON in a JSON body, or as a JSON string in forms.
    pub fn json(&self, name: &str, what: &str) -> Result<Option<Value>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("can't parse {what} JSON object"))),
            Some(v) => Ok(Some(v.clone())),
        }
    }
}
