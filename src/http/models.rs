//! Request and response bodies of the token listener.
//!
//! Requests are parsed by hand from a `serde_json::Value` rather than derived,
//! so every wrong shape gets a message naming the field and what it should be.
//!
//! `POST /{namespace}/{name}/token` takes a JSON object (an empty body means `{}`):
//!
//! | member | type | default |
//! |---|---|---|
//! | `sub` | string | absent |
//! | `aud` | string or list of strings | the policy's `audiences` |
//! | `ttl` | whole seconds (number, e.g. `300`) or a Go duration string (`"5m"`, `"1h30m"`) | the policy's `maxTokenTTL` |
//! | `claims` | object of extra claims (not `iss`, `sub`, `aud`, `iat`, `nbf`, `exp`, `jti`) | none |
//!
//! Unknown members are refused (a typo such as `audience` would otherwise be
//! silently ignored). `POST /{namespace}/{name}/verify` takes `{"token": "<compact JWS>"}`.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

use super::errors::ApiError;
use crate::api;
use crate::keys::token::TokenRequest;

/// Answer of a successful mint.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse<'a> {
    /// The compact JWS.
    pub token: &'a str,
    /// The kid it was signed with.
    pub kid: &'a str,
    /// Its `exp`, RFC 3339.
    pub expires_at: Timestamp,
}

/// Answer of a verification that succeeded.
#[derive(Serialize, Debug)]
pub struct VerifiedResponse<'a> {
    /// Always `true`.
    pub valid: bool,
    /// The kid of the key that signed it.
    pub kid: &'a str,
    /// The token's claims.
    pub claims: &'a Map<String, Value>,
}

/// Answer of a verification that failed (status 401).
#[derive(Serialize, Debug)]
pub struct InvalidResponse<'a> {
    /// Always `false`.
    pub valid: bool,
    /// Stable code (see `TokenError::code`).
    pub error: &'a str,
    /// What failed, for a person.
    pub message: &'a str,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message.into())
}

/// Parses the body as a JSON object; an empty (or all-whitespace) body is `{}`
/// when `empty_ok`.
fn object(body: &[u8], empty_ok: bool) -> Result<Map<String, Value>, ApiError> {
    if empty_ok && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid("the request body must be a JSON object")),
        // serde_json's syntax errors give a position, never the content.
        Err(e) => Err(ApiError::bad_request(
            "invalid_json",
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

fn reject_unknown(map: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        let shown: String = k.chars().take(64).collect();
        return Err(invalid(format!(
            "unknown member {shown:?}; expected {}",
            known.join(", ")
        )));
    }
    Ok(())
}

/// Parses a `ttl`: a whole number of seconds or a Go duration string.
pub fn parse_ttl(v: &Value) -> Result<Duration, ApiError> {
    const HINT: &str = "ttl must be a whole number of seconds (300) or a duration string such as \"5m\" or \"1h30m\"";
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| invalid(HINT)),
        Value::String(s) => {
            let d: api::Duration = s.parse().map_err(|_| invalid(HINT))?;
            if d.is_negative() {
                return Err(invalid(HINT));
            }
            Ok(d.into())
        }
        _ => Err(invalid(HINT)),
    }
}

/// Parses the body of `POST .../token`.
pub fn parse_token_request(body: &[u8]) -> Result<TokenRequest, ApiError> {
    let mut map = object(body, true)?;
    reject_unknown(&map, &["sub", "aud", "ttl", "claims"])?;
    let sub = match map.remove("sub") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(invalid("sub must be a string")),
    };
    let aud = match map.remove("aud") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s]),
        Some(Value::Array(items)) => Some(
            items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(invalid("aud must be a string or a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(invalid("aud must be a string or a list of strings")),
    };
    let ttl = match map.remove("ttl") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_ttl(&v)?),
    };
    let claims = match map.remove("claims") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(c)) => c,
        Some(_) => return Err(invalid("claims must be a JSON object")),
    };
    Ok(TokenRequest {
        sub,
        aud,
        ttl,
        claims,
    })
}

/// Parses the body of `POST .../verify` and returns the token.
pub fn parse_verify_request(body: &[u8]) -> Result<String, ApiError> {
    let mut map = object(body, false)?;
    reject_unknown(&map, &["token"])?;
    match map.remove("token") {
        Some(Value::String(t)) => Ok(t),
        None | Some(Value::Null) => Err(invalid("token is required")),
        Some(_) => Err(invalid("token must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_takes_seconds_or_go_durations() {
        assert_eq!(parse_ttl(&300.into()).unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_ttl(&"1h30m".into()).unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_ttl(&"90s".into()).unwrap(), Duration::from_secs(90));
        for bad in [
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!("-5m"),
            serde_json::json!("soon"),
            serde_json::json!(true),
            serde_json::json!([60]),
        ] {
            let e = parse_ttl(&bad).unwrap_err();
            assert_eq!(e.code(), "invalid_request", "{bad}");
        }
    }

    #[test]
    fn token_request_fields() {
        let r = parse_token_request(
            br#"{"sub":"alice","aud":["a","b"],"ttl":"5m","claims":{"role":"admin"}}"#,
        )
        .unwrap();
        assert_eq!(r.sub.as_deref(), Some("alice"));
        assert_eq!(r.aud, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(r.ttl, Some(Duration::from_secs(300)));
        assert_eq!(r.claims["role"], "admin");
        let r = parse_token_request(b"").unwrap();
        assert_eq!(r, TokenRequest::default());
        let r = parse_token_request(br#"{"aud":"x"}"#).unwrap();
        assert_eq!(r.aud, Some(vec!["x".to_string()]));
    }

    #[test]
    fn token_request_refuses_wrong_shapes() {
        for (body, code) in [
            (&br#"{"sub":1}"#[..], "invalid_request"),
            (br#"{"aud":[1]}"#, "invalid_request"),
            (br#"{"aud":{}}"#, "invalid_request"),
            (br#"{"claims":[]}"#, "invalid_request"),
            (br#"{"audience":"x"}"#, "invalid_request"),
            (br#"[]"#, "invalid_request"),
            (br#""x""#, "invalid_request"),
            (br#"{"sub":"#, "invalid_json"),
            (b"\xff\xfe", "invalid_json"),
        ] {
            let e = parse_token_request(body).unwrap_err();
            assert_eq!(e.code(), code, "{}", String::from_utf8_lossy(body));
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn verify_request_needs_a_token_string() {
        assert_eq!(
            parse_verify_request(br#"{"token":"a.b.c"}"#).unwrap(),
            "a.b.c"
        );
        for body in [
            &b""[..],
            b"{}",
            br#"{"token":1}"#,
            br#"{"token":null}"#,
            br#"{"jwt":"x"}"#,
        ] {
            assert_eq!(parse_verify_request(body).unwrap_err().status(), 400);
        }
    }
}
