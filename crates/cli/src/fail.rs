//! How a command fails: bad usage (exit 2) or a failed request (exit 1).

use wulf_api::ApiError;

/// A failure and its exit code.
pub(crate) enum Fail {
    Usage(String),
    Request(anyhow::Error),
}

impl From<anyhow::Error> for Fail {
    fn from(e: anyhow::Error) -> Fail {
        Fail::Request(e)
    }
}

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Fail {
        Fail::Request(explain(e))
    }
}

/// The head's error, with what to do about the common ones.
pub(crate) fn explain(e: ApiError) -> anyhow::Error {
    if let Some(ended) = crate::login::explain(&e) {
        return ended;
    }
    match &e {
        ApiError::Status { status: 401, .. } => anyhow::anyhow!(
            "{e}. Log in with `wulf login NAME`, or give a token with --token or WULF_TOKEN (on \
             the head, the bootstrap token in DATA_DIR/admin.token is used)"
        ),
        ApiError::Transport { message, url }
            if wulf_api::tls::certificate_problem(message).is_some() =>
        {
            let why = wulf_api::tls::certificate_problem(message).unwrap_or_default();
            let ca = match crate::conn::ca_used() {
                Some(p) => format!("checked against the CA in {}", p.display()),
                None => "checked against no CA file".to_string(),
            };
            anyhow::anyhow!(
                "the certificate of the head at {url} was refused ({ca}): {why}. If this head \
                 belongs to another cluster or its CA was replaced, compare the fingerprint \
                 with the head's DATA_DIR/tls/ca.pem and trust it with `wulf trust {url}`, or \
                 give the right CA with --ca FILE"
            )
        }
        ApiError::Transport { .. } => {
            anyhow::anyhow!("{e}. Is wulfd running? Point at it with --url or WULF_URL")
        }
        _ => anyhow::anyhow!(e),
    }
}

pub(crate) fn usage(msg: impl Into<String>) -> Fail {
    Fail::Usage(msg.into())
}
