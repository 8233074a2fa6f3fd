//! Request extractors that answer with problem+json instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::AppState;
use super::problem::{AppError, types};
use crate::services::Principal;

/// A JSON body. Malformed JSON → 400, wrong or missing fields → 422 naming the field,
/// too large → 413, not JSON → 415. An empty body is read as `{}`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    types::PAYLOAD_TOO_LARGE,
                    "Payload too large",
                    "the request body is larger than this server accepts (max_body_bytes)",
                )
            } else {
                AppError::malformed_json(format!("the request body could not be read: {rejection}"))
            }
        })?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            match content_type.as_deref() {
                Some(ct) if ct == "application/json" || ct.ends_with("+json") => {}
                _ => {
                    return Err(AppError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        types::UNSUPPORTED_MEDIA_TYPE,
                        "Unsupported media type",
                        "send the body as JSON with `Content-Type: application/json`",
                    ));
                }
            }
            &bytes
        };
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| AppError::malformed_json(format!("the body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(AppError::validation("", "the body must be a JSON object"));
        }
        if let Some(field) = nul_at(&value, "") {
            return Err(AppError::validation(
                &field,
                format!("{field}: must not contain a NUL (control) character"),
            ));
        }
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|e| {
                let field = e.path().to_string();
                let inner = e.into_inner().to_string();
                let detail = if field.is_empty() || field == "." {
                    inner
                } else {
                    format!("{field}: {inner}")
                };
                AppError::validation(&field, detail)
            })
    }
}

/// The dotted path of the first string (or key) in `value` holding a NUL character: no
/// stored text may hold one (PostgreSQL refuses it), so it is refused on both engines.
fn nul_at(value: &serde_json::Value, at: &str) -> Option<String> {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(at.to_string()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, &format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(join(&k.replace('\0', "\\0")))
            } else {
                nul_at(v, &join(k))
            }
        }),
        _ => None,
    }
}

/// Query parameters. An unknown parameter (the params struct denies unknown fields) or a
/// bad value → 400 with the problem type of a bad body field, naming the parameter: a
/// typo'd filter must not quietly list everything.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        parse_query(query).map(ApiQuery)
    }
}

/// Parses a query string into `T`, naming the parameter at fault.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, AppError> {
    // No stored value holds a NUL character, and PostgreSQL refuses one in text.
    if let Some((name, _)) = form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| name.contains('\0') || value.contains('\0'))
    {
        let name = name.replace('\0', "\\0");
        return Err(AppError::bad_query(
            &name,
            format!("{name}: must not contain a NUL (control) character"),
        ));
    }
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // An unknown field's error comes before its name is a path segment.
        let field = match inner.strip_prefix("unknown field `") {
            Some(rest) => rest.split('`').next().unwrap_or_default().to_string(),
            None if path != "." => path,
            None => String::new(),
        };
        let detail = match inner.strip_prefix("unknown field ") {
            Some(rest) => format!("unknown query parameter {rest}"),
            None if field.is_empty() => inner,
            None => format!("{field}: {inner}"),
        };
        AppError::bad_query(&field, detail)
    })
}

/// The caller, from `Authorization: Bearer <api key>`.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| AppError::unauthorized("missing `Authorization: Bearer <api key>`"))?;
        let text = header
            .to_str()
            .map_err(|_| AppError::unauthorized("malformed Authorization header"))?;
        let (scheme, key) = text
            .split_once(' ')
            .ok_or_else(|| AppError::unauthorized("expected `Authorization: Bearer <api key>`"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AppError::unauthorized(
                "expected `Authorization: Bearer <api key>`",
            ));
        }
        let principal = state.services.authenticate(key).await?;
        Ok(Auth(principal))
    }
}
