//! Every admin error becomes a response here, and only here.
//!
//! Owns: [`ApiError`] (a status and an operator-safe message, answered as
//! `{"error": "<message>"}`), the mapping from [`StoreError`] kinds to statuses, and the
//! shared `{"success": true, "message": ...}` answer of deletes. Must not touch: secrets —
//! a message never contains a credential.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use llmur_core::{StoreError, StoreErrorKind};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every admin error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// The answer of a successful delete or revoke.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteResponse {
    /// Always `true`.
    pub success: bool,
    /// Names what was deleted.
    pub message: String,
}

impl DeleteResponse {
    /// `{"success": true, "message": message}`.
    pub(crate) fn new(message: impl Into<String>) -> Json<Self> {
        Json(Self {
            success: true,
            message: message.into(),
        })
    }
}

/// An admin API error: a status and a message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

/// Result of admin handlers.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401. One message for every credential failure, so nothing leaks.
    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing, invalid or expired credentials",
        )
    }

    /// 403.
    pub(crate) fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "you are not allowed to do this")
    }

    /// 404 naming what was not found.
    pub(crate) fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// 409.
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 422.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 500 with a generic message; the detail goes to the log only.
    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "admin API internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    /// The status.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err.kind() {
            StoreErrorKind::NotFound => Self::new(StatusCode::NOT_FOUND, err.message()),
            StoreErrorKind::Conflict => Self::new(StatusCode::CONFLICT, err.message()),
            StoreErrorKind::Invalid => Self::new(StatusCode::UNPROCESSABLE_ENTITY, err.message()),
            StoreErrorKind::Unavailable => {
                tracing::warn!(error = %err, "admin API: store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable",
                )
            }
            _ => Self::internal(err),
        }
    }
}

/// Maps a store `NotFound` to 404 naming `what` (the same answer as for a row the caller
/// may not see, so the two cannot be told apart); other errors as usual.
pub(crate) fn not_found_as(what: impl std::fmt::Display) -> impl FnOnce(StoreError) -> ApiError {
    move |e| {
        if e.kind() == StoreErrorKind::NotFound {
            ApiError::not_found(what)
        } else {
            e.into()
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_kinds_map_to_statuses() {
        for (kind, status) in [
            (StoreErrorKind::NotFound, StatusCode::NOT_FOUND),
            (StoreErrorKind::Conflict, StatusCode::CONFLICT),
            (StoreErrorKind::Invalid, StatusCode::UNPROCESSABLE_ENTITY),
            (StoreErrorKind::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (StoreErrorKind::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            assert_eq!(ApiError::from(StoreError::new(kind, "x")).status(), status);
        }
    }
}
