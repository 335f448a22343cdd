//! JSON errors: every failure is `{"error": <code>, "message": <text>}` with
//! the right status, whether a handler produced it or a filter rejected the
//! request. [`handle_rejection`] is the one place rejections become responses.

use std::borrow::Cow;
use std::convert::Infallible;

use bytes::Bytes;
use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reject::Reject;
use warp::reply::Response;
use warp::{Rejection, Reply};

/// `Content-Type` of every JSON answer.
pub(crate) const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// `Cache-Control` of every answer that must not be cached (errors, tokens).
pub(crate) const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// Seconds a client is asked to wait before retrying a policy that is not ready.
pub const RETRY_AFTER_SECS: u32 = 5;

/// An error answer: status, stable code, message for a person.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    allow: Option<&'static str>,
    retry_after: Option<u32>,
    www_authenticate: Option<&'static str>,
}

impl Reject for ApiError {}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

/// Serializes `value` as a JSON response with `status`.
pub(crate) fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    // Most answers (a minted token, an error) fit: no regrowing while writing.
    let mut body = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => json_bytes(status, Bytes::from(body)),
        Err(e) => {
            tracing::error!(error = %e, "a response does not serialize");
            ApiError::internal("the response could not be serialized").into_response()
        }
    }
}

/// A JSON response from pre-serialized bytes, not to be cached.
pub(crate) fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut res = Response::new(body.into());
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, JSON);
    h.insert(header::CACHE_CONTROL, NO_STORE);
    res
}

// === impl ApiError ===

impl ApiError {
    /// An error with any status and code.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405 `method_not_allowed`, with the `Allow` header.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        ApiError {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this path only answers {allow}"),
            )
        }
    }

    /// 401 `unauthorized`, with `WWW-Authenticate: Bearer`: the token
    /// listener's client credential is missing or wrong.
    pub fn unauthorized() -> Self {
        ApiError {
            www_authenticate: Some("Bearer"),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this listener requires a client credential: send Authorization: Bearer <token>",
            )
        }
    }

    /// 400 with a specific code.
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds {} KiB", limit / 1024),
        )
    }

    /// 415 `unsupported_media_type`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
    }

    /// 503 `not_ready`, with `Retry-After`: a server condition, not the client's fault.
    pub fn not_ready(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            retry_after: Some(RETRY_AFTER_SECS),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
        }
    }

    /// 503 `key_revoked`, with `Retry-After`: the policy's active key is
    /// revoked and its replacement is not stored yet (SPEC invariant 9: a
    /// revoked key never signs). A server condition, not the client's fault.
    pub fn key_revoked(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            retry_after: Some(RETRY_AFTER_SECS),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "key_revoked", message)
        }
    }

    /// 503 with `code` and `Retry-After`: a server condition the client
    /// can only wait out.
    pub fn unavailable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            retry_after: Some(RETRY_AFTER_SECS),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// 500 `internal`: the server failed (never caused by client input).
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code (the `error` member).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message (the `message` member).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let mut res = json_response(
            self.status,
            &ErrorBody {
                error: self.code,
                message: &self.message,
            },
        );
        if let Some(allow) = self.allow {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(scheme) = self.www_authenticate {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// Turns any rejection into a JSON error. Our own [`ApiError`]s win over
/// warp's "not found" (a path that matched but failed later); warp's
/// built-in rejections map to their 4xx; anything unexpected is logged and
/// answered 500 (it would be a bug: no client input should get there).
pub async fn handle_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    Ok(rejection_to_error(&rejection).into_response())
}

pub(crate) fn rejection_to_error(rejection: &Rejection) -> ApiError {
    use warp::reject as r;
    if let Some(e) = rejection.find::<ApiError>() {
        return e.clone();
    }
    if rejection.is_not_found() {
        return ApiError::not_found("no such route");
    }
    if rejection.find::<r::MethodNotAllowed>().is_some() {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        );
    }
    if rejection.find::<r::PayloadTooLarge>().is_some() {
        return ApiError::payload_too_large(super::BODY_LIMIT);
    }
    if rejection.find::<r::UnsupportedMediaType>().is_some() {
        return ApiError::unsupported_media_type();
    }
    if let Some(e) = rejection.find::<r::InvalidHeader>() {
        return ApiError::bad_request("invalid_header", e.to_string());
    }
    if let Some(e) = rejection.find::<r::MissingHeader>() {
        return ApiError::bad_request("missing_header", e.to_string());
    }
    if rejection.find::<r::InvalidQuery>().is_some() {
        return ApiError::bad_request("invalid_query", "the query string is not valid");
    }
    if rejection.find::<r::LengthRequired>().is_some() {
        return ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "a Content-Length header is required",
        );
    }
    if rejection
        .find::<warp::filters::body::BodyDeserializeError>()
        .is_some()
    {
        return ApiError::bad_request("invalid_json", "the request body is not valid JSON");
    }
    tracing::error!(?rejection, "unhandled rejection");
    ApiError::internal("unexpected error")
}
